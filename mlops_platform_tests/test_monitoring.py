"""Monitoring for real: traffic from `send_traffic` to the real server, its inference log compacted
by `inference_log`, Evidently's `drift_report` (the same measurement as `drift_sensor`'s, its HTML
in MLflow), and `drift_sensor` requesting one retrain per drift episode. The training split is
written to the warehouse directly (the data half has its own tests)."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlops_platform.datasets.simulation import Shift
from mlops_platform.definitions import build_definitions
from mlops_platform.defs.monitoring.sensors import build_drift_sensor
from mlops_platform.lib import warehouse
from mlops_platform.lib.drift import prune_reports, training_reference
from mlops_platform.lib.ground_truth import deliver_labels, read_ground_truth, source_position
from mlops_platform.lib.inference_records import read_new_records
from mlops_platform.lib.landing import load_source
from mlops_platform.lib.traffic import held_out_instances, send_traffic
from mlops_platform.lib.ui_links import dagster_run_url, mlflow_artifact_url, mlflow_run_url
from mlops_platform.settings import Settings
from mlops_platform_tests.datasets import write_adult_spec
from mlops_platform_tests.registry import write_training_set
from mlops_platform_tests.serving import RunningServer, start_server

MODEL = "adult_income_classifier"
SHIFTS = [
    Shift.parse(text)
    for text in (
        "age=+25",
        "hours_per_week=+30",
        "sex=Female:0.95",
        "relationship=Unmarried:0.9",
        "race=Black:0.8",
    )
]


@pytest.fixture(scope="module")
def monitored(model_registry: Settings, tmp_path_factory):
    root = tmp_path_factory.mktemp("monitoring")
    spec_path = write_adult_spec(
        root / "specs",
        150,
        4,
        monitoring={
            "window_rows": 300,
            "min_window_rows": 200,
            "reference_rows": 1000,
            "retrain_cooldown_minutes": 0,
        },
    )
    settings = Settings(
        home=root / "home",
        dataset_spec_path=spec_path,
        mlflow_tracking_uri=model_registry.tracking_uri,
        drift_reports_kept=2,
    )
    spec = settings.load_spec()
    write_training_set(settings, spec, 3000)
    server = start_server(settings, 1, "--version", "1")
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        yield settings, server, defs, instance
    server.stop()


def _traffic(settings: Settings, server: RunningServer, shifted: bool, rows: int = 300) -> dict:
    instances = held_out_instances(settings.load_spec(), rows, SHIFTS if shifted else None)
    summary = send_traffic(
        server.url, MODEL, instances, rate=300, duration=rows / 300, concurrency=4
    ).summary()
    assert summary["sent"] == rows and summary["statuses"] == {"200": rows}, summary
    time.sleep(1.5)  # the server flushes its inference log every 0.5 s
    return summary


def _mlflow(defs: dg.Definitions) -> dict:
    """The MLflow resource drift_sensor asks for, as the code location binds it."""
    return {"mlflow": defs.resources["mlflow"]}


def _sensor(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None):
    sensor = defs.resolve_sensor_def("drift_sensor")
    return sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=_mlflow(defs)))


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance) -> dict:
    job = defs.resolve_implicit_global_asset_job_def()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    log = job.execute_in_process(
        asset_selection=[dg.AssetKey("inference_log")], partition_key=today, instance=instance
    )
    report = job.execute_in_process(asset_selection=[dg.AssetKey("drift_report")], instance=instance)
    [check] = report.get_asset_check_evaluations()
    return {
        "log": log.asset_materializations_for_node("inference_log")[0].metadata,
        "report": report.output_for_node("drift_report"),
        "metadata": report.asset_materializations_for_node("drift_report")[0].metadata,
        "run_id": report.run_id,
        "check": check,
    }


def _shown_share(skip_message: str) -> str:
    """The drift share a sensor's skip message names, as printed."""
    return skip_message.split("drift share ")[1].split()[0]


def test_traffic_without_drift_is_logged_reported_and_triggers_nothing(monitored):
    settings, server, defs, instance = monitored
    _traffic(settings, server, shifted=False)
    result = _sensor(defs, instance, None)
    assert not result.run_requests and result.skip_reason.skip_message.startswith("no drift: drift share")
    cursor = json.loads(result.cursor)
    assert cursor["in_episode"] is False and sum(cursor["offsets"].values()) > 0
    assert _sensor(defs, instance, result.cursor).skip_reason.skip_message.startswith("no new predictions")

    done = _materialize(defs, instance)
    assert done["log"]["rows"].value == 300 and done["log"]["rows_per_model_version"].value == {"1": 300}
    report = done["report"]
    assert report["drift_share"] <= 0.3 and report["model_version"] == "1"
    assert report["prediction"]["column"] == "probability"
    assert Path(report["report"]).stat().st_size > 10_000  # Evidently's HTML
    assert done["check"].passed and done["check"].metadata["evaluated"].value is True
    # the same window, the same measurement: the sensor and the asset agree
    assert report["current_rows"] == 300 and report["reference_rows"] == 1000  # the spec's sizes
    assert _shown_share(result.skip_reason.skip_message) == f"{report['drift_share']:.2f}"
    assert f"drifted: {report['drifted_columns']}" in result.skip_reason.skip_message


def test_the_drift_report_is_logged_to_mlflow_and_linked(monitored):
    settings, server, defs, instance = monitored
    _traffic(settings, server, shifted=False)
    done = _materialize(defs, instance)
    report, metadata = done["report"], done["metadata"]
    client = MlflowClient(settings.tracking_uri)
    run = client.get_run(report["mlflow_run_id"])
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == f"{settings.load_spec().name}-monitoring"
    assert run.info.status == "FINISHED" and run.data.metrics["drift_share"] == report["drift_share"]
    assert run.data.tags["model_version"] == "1" and run.data.tags["dagster.run_id"] == done["run_id"]
    assert run.data.tags["dagster.run_url"] == dagster_run_url(settings.dagster_ui_url, done["run_id"])
    html = Path(report["report"]).name
    [artifact] = client.list_artifacts(run.info.run_id)
    assert artifact.path == html and artifact.file_size > 10_000
    links = (experiment.experiment_id, run.info.run_id)
    assert metadata["report_url"].value == mlflow_artifact_url(settings.mlflow_ui_url, *links, html)
    assert metadata["mlflow_run_url"].value == mlflow_run_url(settings.mlflow_ui_url, *links)
    assert not [k for k, v in metadata.items() if "file://" in str(getattr(v, "value", v))]


def test_local_drift_reports_keep_only_the_newest(monitored, tmp_path):
    settings, server, defs, instance = monitored
    _traffic(settings, server, shifted=False)
    for _ in range(2):
        _materialize(defs, instance)
    kept = sorted((settings.home / "monitoring" / "drift_report").glob("*.html"))
    assert len(kept) == settings.drift_reports_kept == 2
    newest = _materialize(defs, instance)["report"]["report"]
    after = sorted((settings.home / "monitoring" / "drift_report").glob("*.html"))
    assert len(after) == 2 and Path(newest) in after and kept[0] not in after

    for i in range(5):
        (tmp_path / f"drift-{i}.html").write_text(str(i))
        os.utime(tmp_path / f"drift-{i}.html", (1000 + i, 1000 + i))
    (tmp_path / "notes.txt").write_text("not a report")
    assert [p.name for p in prune_reports(tmp_path, 3)] == ["drift-0.html", "drift-1.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "drift-2.html",
        "drift-3.html",
        "drift-4.html",
        "notes.txt",
    ]


def test_drifted_traffic_requests_one_retrain_per_episode(monitored):
    settings, server, defs, instance = monitored
    _traffic(settings, server, shifted=False)
    cursor = _sensor(defs, instance, None).cursor  # a fresh sensor; a window of unshifted rows: no drift

    _traffic(settings, server, shifted=True)
    result = _sensor(defs, instance, cursor)
    [request] = result.run_requests
    assert request.tags["mlops/trigger"] == "drift" and float(request.tags["mlops/drift_share"]) > 0.3
    assert {"age", "hours_per_week", "sex"} <= set(request.tags["mlops/drifted_columns"].split(","))
    assert defs.resolve_sensor_def("drift_sensor").job_name == "retrain_model"
    # the evidence: a local copy, and the MLflow run whose artifact the run's tag links to
    assert Path(request.tags["mlops/drift_report"]).stat().st_size > 10_000
    run_id = request.tags["mlops/drift_report_url"].split("/runs/")[1].split("/")[0]
    evidence = MlflowClient(settings.tracking_uri).get_run(run_id)
    assert evidence.data.tags["mlops.source"] == "drift_sensor"
    assert evidence.data.tags["dagster.run_key"] == request.run_key

    _traffic(settings, server, shifted=True)
    again = _sensor(defs, instance, result.cursor)
    assert (
        not again.run_requests
        and "retrain already requested for this episode" in again.skip_reason.skip_message
    )

    done = _materialize(defs, instance)
    assert done["report"]["drift_share"] > 0.3 and "age" in done["report"]["drifted_columns"]
    assert not done["check"].passed and "limit 0.30" in done["check"].description

    _traffic(settings, server, shifted=False)
    calm = _sensor(defs, instance, again.cursor)
    assert not calm.run_requests and json.loads(calm.cursor)["in_episode"] is False

    # a new episode inside the cooldown is not retrained again
    cooling = json.loads(calm.cursor)
    cooling["last_request_at"] = dt.datetime.now(dt.UTC).timestamp()
    _traffic(settings, server, shifted=True)
    spec = settings.load_spec().model_copy(
        update={
            "monitoring": settings.load_spec().monitoring.model_copy(update={"retrain_cooldown_minutes": 30})
        }
    )
    sensor = build_drift_sensor(settings, spec)
    held = sensor(
        dg.build_sensor_context(instance=instance, cursor=json.dumps(cooling), resources=_mlflow(defs))
    )
    assert not held.run_requests and "cooldown 1800 s" in held.skip_reason.skip_message


def test_delayed_labels_give_live_performance_per_version(monitored, model_registry: Settings):
    settings, server, defs, instance = monitored
    spec = settings.load_spec()
    _traffic(settings, server, shifted=False)
    logged, _ = read_new_records(settings.inference_log_dir, {})
    written = deliver_labels(spec, logged["request_id"].tolist(), settings.ground_truth_dir)
    truth = read_ground_truth(settings.ground_truth_dir)
    assert written is not None and sorted(truth["request_id"]) == sorted(logged["request_id"])
    assert deliver_labels(spec, logged["request_id"].tolist(), settings.ground_truth_dir) is None  # once each
    # the label is the source row's: the request id names the row
    source = load_source(spec)
    first = truth.iloc[0]
    assert first["label"] == int(
        source[spec.label.column].iloc[source_position(first["request_id"])] == spec.label.positive_class
    )

    client = MlflowClient(model_registry.tracking_uri, model_registry.tracking_uri)
    job = defs.resolve_implicit_global_asset_job_def()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    job.execute_in_process(
        asset_selection=[dg.AssetKey("inference_log")], partition_key=today, instance=instance
    )

    def live() -> tuple[dict, dg.AssetCheckEvaluation]:
        result = job.execute_in_process(asset_selection=[dg.AssetKey("live_performance")], instance=instance)
        [check] = result.get_asset_check_evaluations()
        return result.output_for_node("live_performance"), check

    client.set_model_version_tag(MODEL, "1", "metric.roc_auc", "0.60")
    report, check = live()
    entry = report["versions"]["1"]
    assert entry["labelled_rows"] == len(logged) and entry["registered"] == {"roc_auc": 0.60}
    assert 0.6 < entry["live"]["roc_auc"] <= 1.0 and check.passed
    assert check.metadata["evaluated"].value is True and check.metadata["versions_judged"].value == 1

    client.set_model_version_tag(MODEL, "1", "metric.roc_auc", "0.99")
    _, check = live()
    assert (
        not check.passed
        and "v1 roc_auc live" in check.description
        and "registered 0.9900" in check.description
    )


def test_checks_with_nothing_to_judge_say_so(adult_settings: Settings, instance):
    """No prediction served yet: drift and live performance have nothing to compare, pass, and
    report evaluated: false with no number they did not measure."""
    adult_settings.home.mkdir(parents=True)
    job = build_definitions(adult_settings).resolve_implicit_global_asset_job_def()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    job.execute_in_process(
        asset_selection=[dg.AssetKey("inference_log")], partition_key=today, instance=instance
    )
    drift = job.execute_in_process(asset_selection=[dg.AssetKey("drift_report")], instance=instance)
    [check] = drift.get_asset_check_evaluations()
    assert drift.output_for_node("drift_report")["drift_share"] is None
    assert check.passed and check.metadata["evaluated"].value is False
    assert check.description.startswith("not evaluated: no predictions in the window")
    assert "drift_share" not in check.metadata and check.metadata["window_rows"].value == 0

    live = job.execute_in_process(asset_selection=[dg.AssetKey("live_performance")], instance=instance)
    [check] = live.get_asset_check_evaluations()
    assert live.output_for_node("live_performance") == {"versions": {}, "labelled_rows": 0}
    assert check.passed and check.metadata["evaluated"].value is False
    assert check.description == "not evaluated: no labelled predictions yet"
    assert "versions_judged" not in check.metadata


def test_the_drift_reference_is_a_seeded_sample_of_exactly_the_train_split(tmp_path):
    """The split is filtered before the sample is drawn: sampling first would keep only the
    train rows that happened to fall into the sample."""
    rows = 10_000
    table = pd.DataFrame(
        {"position": range(rows), "split": ["train" if i % 3 == 0 else "test" for i in range(rows)]}
    )
    path = tmp_path / "warehouse.duckdb"
    warehouse.replace_table(path, "training_set", table)
    reference = training_reference(path, ["position"], 2_000)
    assert len(reference) == 2_000 and list(reference.columns) == ["position"]
    assert (reference["position"] % 3 == 0).all()  # train rows only
    assert reference["position"].is_unique
    assert reference.equals(training_reference(path, ["position"], 2_000))  # the same every time
    assert not reference.equals(training_reference(path, ["position"], 2_000, seed=1))
    assert len(training_reference(path, ["position"], 5_000)) == 3_334  # the whole split, no more
