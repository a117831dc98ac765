"""Lineage and reproduction for real: a version trained and registered through `retrain_model`
records its landing files' sha256 in `raw_data_validations`, `training_set`'s record and the
run's `lineage.json`; `reproduce` rebuilds its training set from those files with the real
`data_pipeline` in a scratch directory, retrains on CPU and matches every test metric to 1e-6.
A changed or deleted landing file, an unknown version and a run without lineage fail clearly."""

import hashlib
import json
import os
from pathlib import Path

import dagster as dg
import pytest
import torch

from mlops_platform.definitions import build_definitions
from mlops_platform.defs.ingestion.assets import build_ingestion_assets
from mlops_platform.defs.jobs import RETRAIN_MODEL
from mlops_platform.governance.reproduce import (
    TOLERANCE,
    _retrain_params,
    _warnings,
    as_json,
    render,
    reproduce,
    stretches,
)
from mlops_platform.lib import warehouse
from mlops_platform.lib.ingestion import landing_records
from mlops_platform.lib.landing import landed_days
from mlops_platform.lib.lineage import TrainingLineage, landing_changes, read_lineage
from mlops_platform.lib.model_registry import mlflow_client
from mlops_platform.settings import Settings
from mlops_platform_tests.pipeline import copy_landed, run_pipeline

RAW_DATA = dg.AssetKey("raw_data")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def registered(landed_home, tmp_path_factory) -> tuple[Settings, dict]:
    """v1 of the small Adult model, trained on CPU (a reproduction trains there) and registered
    by `retrain_model`; with the `training_set` metadata of that run."""
    settings = copy_landed(landed_home, tmp_path_factory.mktemp("reproduce"))
    with dg.instance_for_test() as instance:
        result = (
            build_definitions(settings)
            .resolve_job_def(RETRAIN_MODEL)
            .execute_in_process(
                instance=instance, run_config={"ops": {"trained_model": {"config": {"device": "cpu"}}}}
            )
        )
    assert result.success
    (materialization,) = result.asset_materializations_for_node("training_set")
    return settings, {k: v.value for k, v in materialization.metadata.items()}


@pytest.fixture
def landing_file(registered):
    """The first landing day's file, restored byte for byte (and its mtime) after the test."""
    settings, _ = registered
    path = settings.landing_dir / f"{landed_days(settings.landing_dir)[0]}.csv"
    saved, stat = path.read_bytes(), path.stat()
    yield path
    path.write_bytes(saved)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_the_landing_hashes_are_recorded_from_ingestion_to_the_training_run(registered, instance):
    settings, training_set_metadata = registered
    days = landed_days(settings.landing_dir)
    files = {day: settings.landing_dir / f"{day}.csv" for day in days}
    recorded = warehouse.query(
        settings.warehouse_path,
        "SELECT strftime(ingestion_date, '%Y-%m-%d') AS day, landing_sha256, landing_size "
        "FROM raw_data_validations ORDER BY 1",
    )
    assert recorded["day"].tolist() == days
    for row in recorded.itertuples():
        assert row.landing_sha256 == _sha256(files[row.day])
        assert row.landing_size == files[row.day].stat().st_size

    record = warehouse.table_record(settings.warehouse_path, "training_set")
    assert sorted(record["landed_days"]) == sorted(record["days"]) == days
    assert training_set_metadata["landed_days"] == record["landed_days"]
    again = run_pipeline(settings, instance, days[0], days[-1], assets=[dg.AssetKey("training_set")])
    (materialization,) = again.asset_materializations_for_node("training_set")
    assert materialization.metadata["reused"].value is True  # reused: the same record
    assert materialization.metadata["landed_days"].value == record["landed_days"]
    assert warehouse.table_record(settings.warehouse_path, "training_set") == record
    # a record from before landing files were recorded gains them when the table is reused
    with warehouse.connect(settings.warehouse_path) as con:
        old = {k: v for k, v in record.items() if k not in ("version", "inputs", "landed_days")}
        warehouse.set_table_version(con, "training_set", record["version"], record["inputs"], old)
    assert run_pipeline(settings, instance, days[0], assets=[dg.AssetKey("training_set")]).success
    assert warehouse.table_record(settings.warehouse_path, "training_set") == record

    spec = settings.load_spec()
    client = mlflow_client(settings.tracking_uri)
    version = client.get_model_version(spec.registered_model_name, "1")
    lineage = read_lineage(client, version.run_id)
    assert lineage.training_set_version == record["version"] == version.tags["training_set_version"]
    assert lineage.dataset == spec.name
    assert lineage.spec["training"] == spec.training.model_dump(mode="json")
    assert sorted(lineage.days) == days
    for day, entry in lineage.days.items():
        assert set(entry) == {"file", "sha256", "size", "run_id", "raw_version"}
        assert entry["sha256"] == _sha256(files[day])
        assert entry["size"] == files[day].stat().st_size
        assert entry["raw_version"] and entry["run_id"]
    assert lineage.params["seed"] == 0
    assert lineage.params["batch_size"] == 64 and lineage.params["epochs"] == 30  # automatic, filled in
    assert lineage.params["patience"] is not None
    assert lineage.torch_version == torch.__version__ and lineage.torch_threads >= 1
    assert lineage.code_version == version.tags["git_commit"]
    assert TrainingLineage.from_json(lineage.to_json()) == lineage
    assert landing_changes(lineage, settings.landing_dir) == []


def test_reproduce_rebuilds_the_training_set_and_matches_every_test_metric(registered, tmp_path):
    settings, _ = registered
    spec = settings.load_spec()
    client = mlflow_client(settings.tracking_uri)
    version = client.get_model_version(spec.registered_model_name, "1")
    lines: list[str] = []

    result = reproduce(settings, "1", workdir=tmp_path / "scratch", progress=lines.append)

    assert result.rebuilt_training_set_version == result.training_set_version
    assert result.training_set_version == version.tags["training_set_version"]
    assert result.matched, render(result)
    names = [m.name for m in result.metrics]
    assert names[:5] == ["roc_auc", "pr_auc", "accuracy", "f1", "threshold"]
    assert {"log_loss", "brier_score", "expected_calibration_error", "precision", "recall"} <= set(names)
    run_metrics = client.get_run(version.run_id).data.metrics
    for m in result.metrics:
        assert m.registered == run_metrics[f"test_{m.name}"]  # full precision, not the version tags
        assert m.match and abs(m.difference) <= TOLERANCE
    assert result.params["seed"] == 0 and result.params["device"] == "cpu"
    assert result.recorded_code_version == result.code_version and not result.warnings
    assert any("data_pipeline over" in line for line in lines)
    # a scratch data directory of its own, kept because it was asked for
    scratch_home = tmp_path / "scratch" / "home"
    assert sorted(p.name for p in (scratch_home / "landing").iterdir()) == [
        f"{day}.csv" for day in landed_days(settings.landing_dir)
    ]
    assert (
        warehouse.table_version(scratch_home / "warehouse.duckdb", "training_set")
        == result.training_set_version
    )

    text = render(result)
    assert "reproduced: every test metric within 1e-06" in text and "roc_auc" in text
    assert json.loads(as_json(result))["matched"] is True
    tag = json.loads(client.get_model_version(spec.registered_model_name, "1").tags["reproduction"])
    assert tag["matched"] is True and tag["training_set_version"] == result.training_set_version
    assert tag["max_difference"] <= TOLERANCE and tag["at"]


def test_a_landing_file_changed_by_one_byte_stops_reproduction(registered, landing_file):
    settings, _ = registered
    recorded = _sha256(landing_file)
    content = bytearray(landing_file.read_bytes())
    at = content.rindex(b"\n", 0, len(content) - 2) + 1  # the last record
    content[at] = ord("9") if content[at] != ord("9") else ord("8")
    landing_file.write_bytes(bytes(content))

    with pytest.raises(ValueError) as failure:
        reproduce(settings, "1")
    message = str(failure.value)
    assert landing_file.stem in message and str(landing_file) in message
    assert f"sha256 recorded {recorded}, now {_sha256(landing_file)}" in message
    assert "\n" not in message


def test_a_deleted_landing_file_stops_reproduction(registered, landing_file):
    settings, _ = registered
    landing_file.unlink()
    with pytest.raises(ValueError, match=rf"{landing_file.stem}: landing file {landing_file} is missing"):
        reproduce(settings, "1")


def test_an_unknown_version_or_a_run_without_lineage_fails_clearly(registered, tmp_path):
    settings, _ = registered
    spec = settings.load_spec()
    with pytest.raises(LookupError, match=f"{spec.registered_model_name} has no version 99 in the registry"):
        reproduce(settings, "99")
    with pytest.raises(ValueError, match="give a version number"):
        reproduce(settings, "latest")
    client = mlflow_client(settings.tracking_uri)
    old = client.create_run(client.get_experiment_by_name(spec.name).experiment_id)
    with pytest.raises(LookupError, match="trained before lineage was recorded"):
        read_lineage(client, old.info.run_id)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(ValueError, match="is not empty"):
        reproduce(settings, "1", workdir=tmp_path / "busy")


def test_a_warehouse_from_before_landing_hashes_gains_the_column(landed_home, tmp_path, instance):
    """An old data directory: `raw_data_validations` without `landing_sha256`. Re-ingesting a day
    adds the column and hashes that day; the other days stay NULL and show as not checkable."""
    settings = copy_landed(landed_home, tmp_path)
    days = landed_days(settings.landing_dir)
    with warehouse.connect(settings.warehouse_path) as con:
        con.execute("ALTER TABLE raw_data_validations DROP COLUMN landing_sha256")
        assert {d: r["sha256"] for d, r in landing_records(con, days).items()} == dict.fromkeys(days)
    ingestion = build_ingestion_assets(settings, settings.load_spec())
    result = dg.materialize([ingestion], partition_key=days[-1], instance=instance)
    assert result.success
    (materialization,) = [
        m for m in result.asset_materializations_for_node(ingestion.node_def.name) if m.asset_key == RAW_DATA
    ]
    assert materialization.metadata["landing_sha256"].value == {
        days[-1]: _sha256(settings.landing_dir / f"{days[-1]}.csv")
    }
    hashes = warehouse.query(
        settings.warehouse_path,
        "SELECT strftime(ingestion_date, '%Y-%m-%d') AS day, landing_sha256 FROM raw_data_validations "
        "ORDER BY 1",
    )
    assert hashes["landing_sha256"].isna().tolist() == [True] * (len(days) - 1) + [False]

    with warehouse.connect(settings.warehouse_path, read_only=True) as con:
        records = landing_records(con, days)
    lineage = TrainingLineage(
        training_set_version="x",
        dataset="d",
        spec={},
        spec_digest="",
        days=records,
        params={},
        device="cpu",
        code_version="",
        torch_version="",
        torch_threads=1,
    )
    changes = landing_changes(lineage, settings.landing_dir)
    assert len(changes) == len(days) - 1 and all("no sha256 was recorded" in c for c in changes)


def test_a_run_stopped_by_its_time_budget_is_retrained_for_the_epochs_it_ran(registered):
    settings, _ = registered
    client = mlflow_client(settings.tracking_uri)
    run = client.create_run(client.get_experiment_by_name(settings.load_spec().name).experiment_id)
    for epoch in (1, 2, 3):
        client.log_metric(run.info.run_id, "train_loss", 0.5, step=epoch)
    params = {"epochs": 30, "seed": 7, "time_budget_minutes": 0.5, "hidden_sizes": []}
    lineage = TrainingLineage("v", "d", {}, "", {}, params, "cuda", "c", "t", 2)
    tags = {"mlops.stop_reason": "time_budget"}
    warnings = _warnings(lineage, tags)
    assert _retrain_params(client, run.info.run_id, lineage, tags, warnings) == {
        "epochs": 3,
        "seed": 7,
        "hidden_sizes": [],
        "device": "cpu",
    }
    assert any(w.startswith("trained on cuda") for w in warnings)
    assert any("time budget" in w and "cannot be exact" in w for w in warnings)


def test_stretches_of_consecutive_days():
    assert stretches(["2026-01-03", "2026-01-01", "2026-01-02", "2026-01-05", "2026-02-01"]) == [
        ("2026-01-01", "2026-01-03"),
        ("2026-01-05", "2026-01-05"),
        ("2026-02-01", "2026-02-01"),
    ]


def test_landing_changes_name_the_day_the_file_and_both_hashes(tmp_path):
    folder = tmp_path / "landing"
    folder.mkdir()
    (folder / "2026-01-01.csv").write_bytes(b"a,b\n1,2\n")
    (folder / "2026-01-02.csv").write_bytes(b"a,b\n1,3\n")
    recorded = {
        day: {"file": str(folder / f"{day}.csv"), "sha256": _sha256(folder / f"{day}.csv"), "size": 8}
        for day in ("2026-01-01", "2026-01-02")
    }
    recorded["2026-01-03"] = {"file": str(folder / "2026-01-03.csv"), "sha256": "ab" * 32, "size": 8}
    lineage = TrainingLineage("v", "d", {}, "", recorded, {}, "cpu", "c", "t", 1)
    (folder / "2026-01-02.csv").write_bytes(b"a,b\n1,4\n")
    assert landing_changes(lineage, folder) == [
        f"2026-01-02: landing file {folder / '2026-01-02.csv'} changed: sha256 recorded "
        f"{recorded['2026-01-02']['sha256']}, now {_sha256(folder / '2026-01-02.csv')}",
        f"2026-01-03: landing file {folder / '2026-01-03.csv'} is missing (recorded sha256 {'ab' * 32})",
    ]
