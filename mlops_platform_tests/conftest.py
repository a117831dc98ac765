"""Fixtures: small real datasets (a slice of Adult and a generated one), settings, instances."""

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

from mlops_platform.settings import Settings
from mlops_platform_tests.datasets import write_adult_spec, write_sensor_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def adult_settings(tmp_path: Path) -> Settings:
    """The shipped Adult spec with small days: 4 reference days of 150 rows."""
    spec = write_adult_spec(tmp_path / "specs", rows_per_day=150, reference_days=4)
    return Settings(home=tmp_path / "home", dataset_spec_path=spec)


@pytest.fixture
def sensor_settings(tmp_path: Path) -> Settings:
    """A generated dataset whose columns share nothing with Adult, with its own ids and times."""
    spec = write_sensor_dataset(tmp_path / "sensors")
    return Settings(home=tmp_path / "home", dataset_spec_path=spec)


@pytest.fixture(scope="session")
def landed_home(tmp_path_factory) -> Path:
    """The data half of a 2,000-row Adult slice (4 days of 500 rows), materialized once per
    session; tests train on copies of it (`pipeline.copy_landed`)."""
    from mlops_platform_tests.pipeline import land_reference, run_pipeline

    root = tmp_path_factory.mktemp("landed")
    settings = Settings(home=root / "home", dataset_spec_path=write_adult_spec(root / "spec", 500, 4))
    days = land_reference(settings)
    with dg.instance_for_test() as instance:
        assert run_pipeline(settings, instance, days[0], days[-1]).success
    return settings.home


@pytest.fixture(scope="session")
def model_registry(tmp_path_factory) -> Settings:
    """An MLflow registry with real versions of the small Adult model: v1 (alias champion) and
    v2 are good; v3 fails on every request; v4 is v2's network burning ~50 ms per model call
    (see registry.py)."""
    from mlops_platform_tests.registry import register_version

    root = tmp_path_factory.mktemp("registry")
    spec = write_adult_spec(root / "specs", rows_per_day=150, reference_days=4)
    settings = Settings(home=root / "home", dataset_spec_path=spec)
    assert register_version(settings, "good", seed=0, alias="champion") == "1"
    assert register_version(settings, "good", seed=1) == "2"
    assert register_version(settings, "failing") == "3"
    assert register_version(settings, "slow", seed=1) == "4"  # v2's network, slowed down
    return settings


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def cli_env(adult_settings: Settings, tmp_path: Path) -> dict[str, str]:
    """Environment for subprocesses: the small Adult spec and a Dagster home with our dagster.yaml."""
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    venv_bin = str(Path(os.sys.executable).parent)
    return {
        **os.environ,
        **adult_settings.to_env(),
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
        "DAGSTER_HOME": str(dagster_home),
    }
