"""The closed loop for real, as `mlops demo` runs it (the README's main command, in a subprocess):
a real `dagster-daemon` with every sensor and schedule on and a temporary DAGSTER_HOME, the real
model server, real client traffic. Calm traffic triggers no retrain; drifted traffic makes
`drift_sensor` request `retrain_model`, and `auto_deploy_sensor`'s canary makes the second
version champion. Small data (600 rows a day), a 10 s sensor interval and a short canary. The demo
prints its own progress only; Dagster's log goes to the file it names."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
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
def demo(tmp_path_factory) -> tuple[Settings, Path, subprocess.CompletedProcess, _Reviewer]:
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
            # v2 learnt the moved data: on moved traffic its predictions differ from v1's by design,
            # and 50 requests make the PSI noisy
            "analysis": {"min_samples": 50, "latency_margin_ms": 10, "max_prediction_psi": 1.0},
            "require_approval": True,  # a reviewer (`_Reviewer`) approves each version with `mlops approve`
            "approval_timeout_seconds": 300,
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
    env = {**os.environ, **settings.to_env(), "DAGSTER_HOME": str(dagster_home)}
    argv = [sys.executable, "-m", "mlops_platform.cli", "demo", *DEMO_ARGS]
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as demo:
        reviewer = _Reviewer(settings, env, demo)
        reviewer.start()
        stdout, stderr = demo.communicate(timeout=1200)
        reviewer.join()
    completed = subprocess.CompletedProcess(argv, demo.returncode, stdout, stderr)
    (root / "demo.log").write_text(completed.stdout + completed.stderr)
    assert completed.returncode == 0, completed.stdout[-5000:] + completed.stderr[-5000:]
    assert sorted(reviewer.approved) == ["1", "2"], reviewer.approved
    return settings, dagster_home, completed, reviewer


class _Reviewer(threading.Thread):
    """A person at the registry while the demo runs: each version a deploy run waits for (the
    spec's `require_approval`) is approved with `mlops approve`, after noting the traffic split
    at that moment (`seen_traffic`: the version takes none before it is approved)."""

    def __init__(self, settings: Settings, env: dict[str, str], demo: subprocess.Popen) -> None:
        super().__init__(daemon=True)
        self.settings, self.env, self.demo = settings, env, demo
        self.approved: dict[str, subprocess.CompletedProcess] = {}
        self.seen_traffic: dict[str, dict] = {}

    def run(self) -> None:
        store = self.settings.home / "mlflow" / "mlflow.db"
        while self.demo.poll() is None:
            time.sleep(0.5)
            for number in self._pending(store):
                if number not in self.approved:
                    traffic = self.settings.serving_dir / "traffic.json"
                    self.seen_traffic[number] = json.loads(traffic.read_text()) if traffic.exists() else {}
                    self.approved[number] = subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "mlops_platform.cli",
                            "approve",
                            number,
                            "--by",
                            "reviewer",
                            "--reason",
                            f"v{number} model card read",
                        ],
                        env=self.env,
                        capture_output=True,
                        text=True,
                        timeout=120,
                    )

    @staticmethod
    def _pending(store: Path) -> list[str]:
        """Versions waiting for approval, read from the MLflow SQLite file directly: an MLflow
        client would run its schema migrations against a store the demo is still creating."""
        if not store.exists():
            return []
        try:
            with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)) as con:
                rows = con.execute(
                    "SELECT version FROM model_version_tags WHERE name = ? AND key = 'approval.status' "
                    "AND value = 'pending'",
                    [MODEL],
                ).fetchall()
        except sqlite3.Error:  # not created yet, or locked: look again
            return []
        return [str(version) for (version,) in rows]


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
    _, dagster_home, _, _ = demo
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
    settings, dagster_home, completed, _ = demo
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
    _, _, completed, _ = demo
    output = completed.stdout + completed.stderr
    assert not [line for line in output.splitlines() if "DEBUG" in line]
    first = completed.stdout.lstrip().splitlines()[0]
    log = Path(first.split("Dagster's log (debug lines included): ")[1])
    assert log.stat().st_size > 0 and " - DEBUG - " in log.read_text()


def test_the_audit_trail_tells_the_drift_story_and_a_served_request_traces_to_its_data(demo):
    """After the demo: `mlops audit` shows the drift-triggered retrain, its gates and the canary
    promotion with their reasons; `mlops trace` follows a request id taken from the server log."""
    settings, dagster_home, _, reviewer = demo
    env = {**os.environ, **settings.to_env(), "DAGSTER_HOME": str(dagster_home)}
    mlops = [sys.executable, "-m", "mlops_platform.cli"]
    audited = subprocess.run(
        [*mlops, "audit", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert audited.returncode == 0, audited.stderr
    events = json.loads(audited.stdout)
    by_kind = {}
    for event in events:
        by_kind.setdefault(event["event"], []).append(event)
    drift_retrain = next(e for e in by_kind["retrain_model started"] if e["actor"] == "sensor drift_sensor")
    assert "drift_share" in drift_retrain["reason"] and "drifted_columns" in drift_retrain["reason"]
    registered_v2 = next(e for e in by_kind["registered"] if e["version"] == "2")
    assert registered_v2["actor"] == "sensor drift_sensor" and "drift_share" in registered_v2["reason"]
    assert registered_v2["run_id"] == drift_retrain["run_id"]
    v2_gates = [e for e in by_kind["gate passed"] if e["run_id"] == drift_retrain["run_id"]]
    assert any("model_evaluation:no_regression_vs_champion" in e["reason"] for e in v2_gates)
    [step] = [e for e in by_kind["canary step 50 % passed"] if e["version"] == "2"]
    assert step["actor"] == "sensor auto_deploy_sensor" and "error_rate" in step["reason"]
    # v2 waited for the reviewer before any traffic, then the canary ran
    assert reviewer.approved["2"].returncode == 0, reviewer.approved["2"].stderr
    seen = reviewer.seen_traffic["2"]  # while v2 waited: v1 alone, v2 not even loaded
    assert (seen["rolled_out_version"], seen["latest_version"]) == ("1", "1"), seen
    [asked] = [e for e in by_kind["approval requested"] if e["version"] == "2"]
    [approved] = [e for e in by_kind["approved"] if e["version"] == "2"]
    assert asked["actor"] == "sensor auto_deploy_sensor" and approved["actor"] == "user reviewer"
    assert approved["reason"] == "v2 model card read"
    [promoted] = [e for e in by_kind["promoted"] if e["version"] == "2"]
    assert promoted["reason"].startswith("passed every step; retired v1")
    [retired] = by_kind["retired"]
    assert retired["version"] == "1"
    order = [drift_retrain, *v2_gates, registered_v2, asked, approved, step, promoted]
    assert [events.index(e) for e in order] == sorted(events.index(e) for e in order)

    server_log = next((settings.home / "logs").glob("server-*.log")).read_text()
    request_ids = re.findall(r"request_id=([A-Za-z0-9._:/-]+)", server_log)
    assert request_ids, "the server log names no request id"
    traced = subprocess.run(
        [*mlops, "trace", request_ids[-1], "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert traced.returncode == 0, traced.stderr
    found = json.loads(traced.stdout)
    version = found["model_version"]
    assert found["request"]["model_version"] == version["version"] == "2"  # the last requests: v2's
    assert found["dagster_run"]["run_id"] == drift_retrain["run_id"]
    days = found["training_data"]["days"]
    assert {d["day"] for d in days} >= {"2026-01-06", "2026-01-07"}  # v2 learnt the drifted days
    for day in days:
        landing = settings.landing_dir / f"{day['day']}.csv"
        assert day["sha256"] == hashlib.sha256(landing.read_bytes()).hexdigest() and day["now"] == "unchanged"
