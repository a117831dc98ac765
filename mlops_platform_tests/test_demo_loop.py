"""The closed loop for real, as `mlops demo` runs it (the README's main command, in a subprocess):
a real `dagster-daemon` with every sensor and schedule on and a temporary DAGSTER_HOME, the real
model server, real client traffic. Calm traffic triggers no retrain; drifted traffic makes
`drift_sensor` request `retrain_model`, and `auto_deploy_sensor`'s canary makes the second
version champion. Small data (600 rows a day), a 10 s sensor interval and a short canary. The demo
prints its own progress only; Dagster's log goes to the file it names."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import dagster as dg
import pytest
from mlflow import MlflowClient

from mlops_platform.demo.watch import InstanceWatch
from mlops_platform.settings import Settings
from mlops_platform_tests.conftest import REPO_ROOT
from mlops_platform_tests.datasets import SMALL_DATA_GATES, write_adult_spec
from mlops_platform_tests.serving import free_port

pytestmark = pytest.mark.slow

MODEL = "adult_income_classifier"
DEMO_ARGS = ["--batches", "1", "--drifted-days", "2", "--rate", "100", "--wait", "300"]
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Settings, Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("demo")
    spec = write_adult_spec(
        root / "specs",
        600,
        4,
        # windows of 1000 against 2000 training rows: smaller ones make Evidently's distances noisy
        monitoring={
            "sensor_interval_seconds": 10,
            "window_rows": 1000,
            "min_window_rows": 1000,
            "reference_rows": 2000,
            "retrain_cooldown_minutes": 0,
            "min_labelled_rows": 50,
        },
        deployment={
            "canary_steps": [50, 100],
            "dwell_seconds": 3,
            "analysis": {"min_samples": 50, "latency_margin_ms": 10},
        },
        # a few hundred test rows: two trainings differ by more than the shipped 0.01 by chance
        gates={**SMALL_DATA_GATES, "regression_tolerance": 0.05, "max_drift_share": 0.3},
    )
    settings = Settings(
        home=root / "home", dataset_spec_path=spec, serving_url=f"http://127.0.0.1:{free_port()}"
    )
    dagster_home = root / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    completed = subprocess.run(
        [sys.executable, "-m", "mlops_platform.cli", "demo", *DEMO_ARGS],
        env={**os.environ, **settings.to_env(), "DAGSTER_HOME": str(dagster_home)},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    (root / "demo.log").write_text(completed.stdout + completed.stderr)
    assert completed.returncode == 0, completed.stdout[-5000:] + completed.stderr[-5000:]
    return settings, dagster_home, completed


@contextlib.contextmanager
def _instance(dagster_home: Path) -> Iterator[dg.DagsterInstance]:
    """The demo's instance (its dagster.yaml reads DAGSTER_HOME from the environment)."""
    with (
        mock.patch.dict(os.environ, {"DAGSTER_HOME": str(dagster_home)}),
        dg.DagsterInstance.get() as instance,
    ):
        yield instance


def _runs(instance: dg.DagsterInstance, job: str) -> list:
    """Run records of `job`, oldest first."""
    return sorted(instance.get_run_records(dg.RunsFilter(job_name=job)), key=lambda r: r.create_timestamp)


def test_calm_traffic_triggers_no_retrain(demo):
    _, dagster_home, _ = demo
    with _instance(dagster_home) as instance:
        retrains = [record.dagster_run for record in _runs(instance, "retrain_model")]
        ticks = InstanceWatch(instance, sensors=[], since=0.0).ticks("drift_sensor")
    fired = [i for i, tick in enumerate(ticks) if tick.run_ids]
    calm = ticks[: fired[0]]  # every look before the traffic moved (and a few while it did)
    judged = [t for t in calm if (t.skip_reason or "").startswith("no drift: drift share")]
    # full windows of calm traffic, judged while the drifted days were being ingested
    assert judged, [t.skip_reason for t in calm]
    assert all(float(t.skip_reason.split("drift share ")[1].split()[0]) <= 0.3 for t in judged)
    # one firing in all: the drift episode lasted to the end, and no retrain was asked for before it
    assert len(fired) == 1
    triggers = [(r.tags.get("mlops/trigger"), r.tags.get("dagster/sensor_name")) for r in retrains]
    assert triggers == [("mlops demo", None), ("drift", "drift_sensor")]


def test_drifted_traffic_retrains_and_the_second_version_becomes_champion(demo):
    settings, dagster_home, completed = demo
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    v1, v2 = (client.get_model_version(MODEL, v) for v in ("1", "2"))
    assert "champion" in v2.aliases and "champion" not in v1.aliases
    assert v2.tags["trigger"] == "drift" and float(v2.tags["trigger.drift_share"]) > 0.3
    assert {"age", "hours_per_week"} <= set(v2.tags["trigger.drifted_columns"].split(","))
    assert v2.tags["deployment.status"] == "promoted" and "passed every step" in v2.tags["deployment.reason"]
    assert v1.tags["training_set_version"] != v2.tags["training_set_version"]
    assert len(client.search_model_versions(f"name='{MODEL}'")) == 2  # one retrain per drift episode

    with _instance(dagster_home) as instance:
        [ingested] = [
            r for r in _runs(instance, "data_pipeline") if "dagster/sensor_name" in r.dagster_run.tags
        ]
        [retrain] = [
            r for r in _runs(instance, "retrain_model") if r.dagster_run.tags["mlops/trigger"] == "drift"
        ]
        [deploy] = [r for r in _runs(instance, "deploy_model") if "dagster/sensor_name" in r.dagster_run.tags]
    tags = {
        name: record.dagster_run.tags for name, record in (("in", ingested), ("re", retrain), ("de", deploy))
    }
    assert tags["in"]["dagster/sensor_name"] == "new_data_sensor"
    # the drifted days, ingested before the retrain started: v2 trained on them
    assert (tags["in"][RANGE_START], tags["in"][RANGE_END]) == ("2026-01-06", "2026-01-07")
    assert ingested.end_time <= retrain.start_time
    assert tags["re"]["dagster/sensor_name"] == "drift_sensor"
    assert tags["de"]["dagster/sensor_name"] == "auto_deploy_sensor" and tags["de"]["mlops/version"] == "2"
    assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in (ingested, retrain, deploy))
    assert Path(tags["re"]["mlops/drift_report"]).stat().st_size > 10_000  # Evidently's HTML

    traffic = json.loads((settings.serving_dir / "traffic.json").read_text())
    assert traffic["rolled_out_version"] == "2" and traffic["canary_percent"] == 100
    summary = completed.stdout[completed.stdout.index("==> summary") :]
    assert "trained because: drift (drift share" in summary and "traffic now: v2 100 %" in summary
    assert "retrain_model runs: 1 (one per drift episode)" in summary


def test_the_demo_prints_its_progress_and_leaves_dagsters_log_in_a_file(demo):
    _, _, completed = demo
    output = completed.stdout + completed.stderr
    assert not [line for line in output.splitlines() if "DEBUG" in line]
    first = completed.stdout.lstrip().splitlines()[0]
    log = Path(first.split("Dagster's log (debug lines included): ")[1])
    assert log.stat().st_size > 0 and " - DEBUG - " in log.read_text()
