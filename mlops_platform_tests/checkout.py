"""A folder that looks like a fresh clone's root to `dg` (the project files, the package linked),
and a Dagster dev server (`dg dev`, `dagster dev`) run in it until its UI serves the location."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from mlops_platform_tests.serving import free_port

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


ASSET_NODES = """{ assetNodes { assetKey { path } groupName
  assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }"""


def graphql(port: int, query: str, variables: dict | None = None) -> str:
    """The UI's GraphQL API answer, as text."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


@contextlib.contextmanager
def dev_server(argv: list[str], env: dict[str, str], cwd: Path) -> Iterator[int]:
    """`argv` (a `dg dev` or `dagster dev` without host and port) on a free port, in its own
    process group; yields the port once the UI lists the assets, and stops the whole group."""
    port = free_port()
    server = subprocess.Popen(
        [*argv, "-h", "127.0.0.1", "-p", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if json.loads(graphql(port, ASSET_NODES))["data"]["assetNodes"]:
                    break
            except OSError:
                pass
            assert server.poll() is None, f"{' '.join(argv)} exited early"
            assert time.monotonic() < deadline, f"{' '.join(argv)} did not serve the location in 120 s"
            time.sleep(1)
        yield port
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
