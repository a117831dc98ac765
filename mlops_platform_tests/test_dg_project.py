"""The repository is a dg project: `dg check defs` and `dg launch` from the repository root with
nothing exported, the dagster CLI beside them, and stage folders that assemble themselves."""

import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.instance.ref import InstanceRef

import mlops_platform.defs
from mlops_platform.definitions import build_definitions, stage_names
from mlops_platform.local_processes import CODE_LOCATION
from mlops_platform_tests.checkout import ASSET_NODES, REPO_ROOT, bare_env, checkout, dev_server, graphql


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_dg_check_defs_passes_in_the_repository_root_with_nothing_exported(tmp_path):
    root = checkout(tmp_path)
    done = _run(["dg", "check", "defs"], root, bare_env())
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "All definitions loaded successfully" in done.stdout + done.stderr
    # the instance needs no variable (Dagster's one-time telemetry notice names the file, not a need)
    mentions = [line for line in done.stderr.splitlines() if "DAGSTER_HOME" in line]
    assert all("$DAGSTER_HOME/dagster.yaml, creating that file" in line for line in mentions), mentions
    assert (root / ".mlops").is_dir()  # .env: the data directory beside the code, as `make` keeps it

    broken = _run(["dg", "check", "defs"], root, bare_env(MLOPS_DATASET_SPEC=str(tmp_path / "none.yaml")))
    assert broken.returncode != 0
    assert "none.yaml does not exist" in broken.stdout + broken.stderr


@pytest.mark.slow
def test_dg_launch_and_the_dagster_cli_run_the_same_code_location(tmp_path, adult_settings):
    """`mlops` and `dg launch` as the README shows them, then `dagster asset materialize` and
    `dagster job execute` with `-m mlops_platform.definitions`, on one data directory."""
    root = checkout(tmp_path)
    spec = {"MLOPS_DATASET_SPEC": str(adult_settings.dataset_spec_path)}
    home = root / ".mlops"  # what .env names
    landed = _run(["mlops", "simulate-batches", "--reference"], root, bare_env(**spec))
    assert landed.returncode == 0, landed.stderr[-2000:]
    assert len(list((home / "landing").glob("*.csv"))) == 4  # `mlops` reads .env as dg does

    launched = _run(
        ["dg", "launch", "--assets", "raw_data,quarantined_rows", "--partition", "2026-01-01"],
        root,
        bare_env(**spec),
    )
    assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr[-3000:]

    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = bare_env(MLOPS_HOME=str(home), DAGSTER_HOME=str(dagster_home), **spec)
    module = ["-m", "mlops_platform.definitions"]
    materialized = _run(
        [
            "dagster",
            "asset",
            "materialize",
            *module,
            "--select",
            "raw_data,quarantined_rows",
            "--partition",
            "2026-01-02",
        ],
        tmp_path,
        env,
    )
    assert materialized.returncode == 0, materialized.stderr[-3000:]
    executed = _run(
        [
            "dagster",
            "job",
            "execute",
            *module,
            "-j",
            "data_pipeline",
            "--tags",
            '{"dagster/partition": "2026-01-03"}',
        ],
        tmp_path,
        env,
        timeout=600,
    )
    assert executed.returncode == 0, executed.stderr[-3000:]

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as warehouse:
        days = warehouse.sql(
            "SELECT DISTINCT CAST(CAST(ingestion_date AS DATE) AS VARCHAR) FROM raw_data ORDER BY 1"
        ).fetchall()
    assert [d for (d,) in days] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("raw_data")) == {"2026-01-02", "2026-01-03"}
        assert instance.fetch_materializations(dg.AssetKey("training_set"), limit=1).records


@pytest.mark.slow
def test_dagster_dev_still_serves_the_code_location(tmp_path, cli_env, adult_settings):
    adult_settings.home.mkdir(parents=True)
    with dev_server(["dagster", "dev", "-m", "mlops_platform.definitions"], cli_env, tmp_path) as port:
        nodes = json.loads(graphql(port, ASSET_NODES))["data"]["assetNodes"]
    assert {"/".join(n["assetKey"]["path"]) for n in nodes} >= {"raw_data", "trained_model", "drift_report"}


def test_the_demo_daemon_names_the_code_location_as_dg_does():
    """Sensor cursors are kept per location name: `mlops demo`'s daemon and `make ui` share them."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["dg"]["project"]
    assert project["code_location_name"] == CODE_LOCATION


STAGE = '''
import dagster as dg


def build(project) -> dg.Definitions:
    @dg.asset(group_name="extra", deps=["registered_model_version"])
    def model_report() -> None:
        """A new stage's asset, downstream of the registry."""

    return dg.Definitions(assets=[model_report])
'''


def test_a_new_stage_folder_is_picked_up_with_no_edit_elsewhere(tmp_path, adult_settings, monkeypatch):
    """A folder `defs/<stage>/` with a `definitions.py` joins the code location by itself."""
    folder = tmp_path / "stages"
    (folder / "extra_stage").mkdir(parents=True)
    (folder / "extra_stage" / "__init__.py").write_text("")
    (folder / "extra_stage" / "definitions.py").write_text(STAGE)
    monkeypatch.setattr(mlops_platform.defs, "__path__", [*mlops_platform.defs.__path__, str(folder)])

    assert "extra_stage" in stage_names()
    graph = build_definitions(adult_settings).resolve_asset_graph()
    report = graph.get(dg.AssetKey("model_report"))
    assert report.group_name == "extra"
    assert dg.AssetKey("registered_model_version") in report.parent_keys


def test_every_stage_folder_contributes_definitions(adult_settings):
    assert stage_names() == ["deployment", "features", "ingestion", "monitoring", "registry", "training"]
    graph = build_definitions(adult_settings).resolve_asset_graph()
    groups = {node.group_name for node in graph.asset_nodes}
    assert groups == {"ingestion", "features", "training", "registry", "monitoring"}
