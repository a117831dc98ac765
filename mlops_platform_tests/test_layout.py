"""The layout's import rules, read from the source: `datasets/` stands alone, `lib/` is pure
(no Dagster), and the model server never reaches the Dagster wiring."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mlops_platform"

# folder -> module prefixes its files must not import (at any level, lazily included)
FORBIDDEN = {
    "datasets": (
        "mlops_platform.lib",
        "mlops_platform.defs",
        "mlops_platform.resources",
        "mlops_platform.serving",
        "mlops_platform.settings",
        "dagster",
    ),
    "lib": (
        "dagster",
        "mlops_platform.defs",
        "mlops_platform.resources",
        "mlops_platform.serving",
        "mlops_platform.definitions",
    ),
    "serving": ("dagster", "mlops_platform.defs", "mlops_platform.resources", "mlops_platform.definitions"),
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_a_folder_imports_only_what_the_layout_allows(folder):
    broken = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in (PACKAGE / folder).rglob("*.py")
        for name in _imports(path)
        if any(name == prefix or name.startswith(prefix + ".") for prefix in FORBIDDEN[folder])
    }
    assert sorted(broken) == []


def test_the_package_itself_imports_nothing():
    assert _imports(PACKAGE / "__init__.py") == set()
