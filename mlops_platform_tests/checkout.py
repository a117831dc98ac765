"""A folder that looks like a fresh clone's root to `dg` (the project files, the package linked)."""

import os
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent


def checkout(tmp_path: Path) -> Path:
    """The repository root's project files in a folder of their own, the package linked: `dg`
    run there behaves as in a fresh clone and writes nothing into this checkout."""
    root = tmp_path / "checkout"
    root.mkdir()
    for name in ("pyproject.toml", ".env", "dagster.yaml"):
        shutil.copy(REPO_ROOT / name, root / name)
    (root / "mlops_platform").symlink_to(REPO_ROOT / "mlops_platform")
    return root


def bare_env(**extra: str) -> dict[str, str]:
    """This environment without any MLOPS_, DAGSTER_ or MLFLOW_ variable; the venv active."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "DAGSTER_", "MLFLOW_"))}
    return {**env, "VIRTUAL_ENV": str(VENV), "PATH": f"{VENV / 'bin'}:{env.get('PATH', '')}", **extra}
