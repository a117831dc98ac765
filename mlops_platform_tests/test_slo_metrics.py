"""The metrics the SLO rules need beyond the request counters, for real: a drift measurement writes
its gauges to `MLOPS_HOME/metrics/drift.prom`, and the real server's `/metrics` carries them with
the traffic split by role (`mlops_traffic_percent`)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import httpx
import pytest

from mlops_platform.defs.monitoring.reports import measure_served_drift
from mlops_platform.lib.metrics_textfile import textfile_dir, write_drift_gauges, write_gauges
from mlops_platform.lib.model_artifact import load_artifact
from mlops_platform.lib.preprocessing import MISSING_CATEGORY
from mlops_platform.serving.revisions import fetch_artifact
from mlops_platform.settings import Settings
from mlops_platform_tests.datasets import write_adult_spec
from mlops_platform_tests.registry import adult_rows, write_training_set
from mlops_platform_tests.serving import RunningServer, start_server

MODEL = "adult_income_classifier"
KEY = (("model_name", MODEL),)  # the labels of each drift gauge


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Labels (sorted pairs) -> value of each sample named `name` in a text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


@pytest.fixture(scope="module")
def server(model_registry: Settings, tmp_path_factory):
    root = tmp_path_factory.mktemp("slo_metrics")
    settings = Settings(
        home=root / "home",
        dataset_spec_path=model_registry.dataset_spec_path,
        mlflow_tracking_uri=model_registry.tracking_uri,
    )
    running = start_server(settings, 1, "--version", "1")
    yield running
    running.stop()


def _traffic(server: RunningServer) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{server.url}/metrics").text
    found = {}
    for labels, value in samples(text, "mlops_traffic_percent").items():
        named = dict(labels)
        assert named["model_name"] == MODEL
        found[named["model_version"], named["role"]] = value
    return found


def test_the_metrics_show_the_split_by_role(server: RunningServer):
    assert _traffic(server) == {("1", "stable"): 100}
    server.set_traffic("2", 10)
    assert _traffic(server) == {("1", "stable"): 90, ("2", "canary"): 10}
    server.set_traffic("2", 0)  # rolled back: the canary stays loaded at 0 %
    assert _traffic(server) == {("1", "stable"): 100, ("2", "canary"): 0}
    server.set_traffic("2", 100)  # promoted
    assert _traffic(server) == {("2", "stable"): 100}
    server.set_traffic("1", 100)


def test_the_metrics_carry_the_text_files_and_leave_out_a_broken_one(server: RunningServer):
    home = server.settings.home
    write_drift_gauges(home, MODEL, 0.4, 5, 0.3, measured_at=1_700_000_000.5)
    write_gauges(textfile_dir(home) / "empty.prom", [])
    (textfile_dir(home) / "broken.prom").write_text("mlops_broken{ 1\n")
    answer = httpx.get(f"{server.url}/metrics")
    assert answer.status_code == 200
    assert samples(answer.text, "mlops_drift_share") == {KEY: 0.4}
    assert samples(answer.text, "mlops_drifted_features") == {KEY: 5.0}
    assert samples(answer.text, "mlops_drift_share_limit") == {KEY: 0.3}
    assert samples(answer.text, "mlops_drift_measured_timestamp_seconds") == {KEY: 1_700_000_000.5}
    assert "mlops_broken" not in answer.text
    assert samples(answer.text, "mlops_traffic_percent")  # the server's own series are all there
    assert samples(answer.text, "mlops_requests_total")
    deadline = time.monotonic() + 10
    while "broken.prom" not in server.log_path.read_text():
        assert time.monotonic() < deadline, "the broken file is not named in the server's log"
        time.sleep(0.1)
    (textfile_dir(home) / "broken.prom").unlink()
    write_drift_gauges(home, MODEL, 0.1, 1, 0.3, measured_at=1_700_000_100.0)  # replaced whole
    assert samples(httpx.get(f"{server.url}/metrics").text, "mlops_drift_share") == {KEY: 0.1}


def test_a_drift_measurement_writes_its_gauges(model_registry: Settings, tmp_path: Path):
    """`measure_served_drift` (drift_sensor's and drift_report's measurement) on a shifted window of
    real Adult rows scored by registered v1: the file holds the measured share and the limit."""
    spec_path = write_adult_spec(
        tmp_path / "specs",
        150,
        4,
        monitoring={"window_rows": 300, "min_window_rows": 200, "reference_rows": 800},
    )
    settings = Settings(
        home=tmp_path / "home", dataset_spec_path=spec_path, mlflow_tracking_uri=model_registry.tracking_uri
    )
    spec = settings.load_spec()
    categorical = spec.features.categorical
    write_training_set(settings, spec, 2000)

    served = adult_rows(spec, 300, seed=11)
    served = served.assign(
        age=(served["age"] + 25).clip(upper=90),
        hours_per_week=(served["hours_per_week"] + 30).clip(upper=99),
        **{c: served[c].fillna(MISSING_CATEGORY) for c in categorical},
    )[spec.features.all]
    artifact = load_artifact(
        fetch_artifact(settings.tracking_uri, MODEL, "1", settings.serving_dir / "models")
    )
    start = dt.datetime.now(dt.UTC)
    predictions = served.assign(
        timestamp=[start + dt.timedelta(milliseconds=i) for i in range(len(served))],
        request_id=[f"q{i}" for i in range(len(served))],
        row=0,
        model_version="1",
        probability=artifact.predict_proba(served),
    )

    before = time.time()
    result, version = measure_served_drift(settings, spec, predictions)
    after = time.time()
    assert version == "1" and result.drift_share > 0
    assert {"age", "hours_per_week"} <= set(result.drifted_columns)

    text = (settings.home / "metrics" / "drift.prom").read_text()
    assert samples(text, "mlops_drift_share") == {KEY: result.drift_share}
    assert samples(text, "mlops_drifted_features") == {KEY: len(result.drifted_columns)}
    assert samples(text, "mlops_drift_share_limit") == {KEY: spec.gates.max_drift_share}
    [measured] = samples(text, "mlops_drift_measured_timestamp_seconds").values()
    assert before <= measured <= after
    assert [p.name for p in (settings.home / "metrics").iterdir()] == ["drift.prom"]  # no temporary left
