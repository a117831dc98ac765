"""The Grafana dashboard in `deploy/grafana` and the rules in `deploy/prometheus` ask only for
metrics that exist: each name is read from a real server's `/metrics` (after successful, refused
and failing requests, a canary and a drift measurement's text file) or recorded by a rule built
on such names."""

from __future__ import annotations

import json
import re
import subprocess

import httpx
import pytest
import yaml

from mlops_platform.lib.metrics_textfile import write_drift_gauges
from mlops_platform.settings import Settings
from mlops_platform_tests.promql import (
    DASHBOARD_DIR,
    available_names,
    dashboard_panels,
    exposition_names,
    metric_names,
    recording_rules,
    require_promtool,
    rules,
)
from mlops_platform_tests.serving import ROW, start_server

MODEL = "adult_income_classifier"
DASHBOARD = DASHBOARD_DIR / "mlops-serving.json"


@pytest.fixture(scope="module")
def exported(model_registry: Settings, tmp_path_factory) -> set[str]:
    """Sample names of a real server's /metrics once every kind of series exists."""
    root = tmp_path_factory.mktemp("dashboard")
    settings = Settings(
        home=root / "home",
        dataset_spec_path=model_registry.dataset_spec_path,
        mlflow_tracking_uri=model_registry.tracking_uri,
    )
    write_drift_gauges(settings.home, MODEL, 0.1, 1, 0.3)  # as a drift measurement writes it
    server = start_server(settings, 1, "--version", "1")
    try:
        server.set_traffic("3", 10)  # v3 fails on every request: a canary
        spec = settings.load_spec()
        inputs = [
            {
                "name": n,
                "shape": [1],
                "datatype": "BYTES" if n in spec.features.categorical else "INT64",
                "data": [ROW[n]],
            }
            for n in spec.features.all
        ]
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for version, status in (("1", 200), ("3", 500)):
                answer = client.post(f"/v2/models/{MODEL}/versions/{version}/infer", json={"inputs": inputs})
                assert answer.status_code == status, answer.text
            refused = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [{**ROW, "age": 150}]})
            assert refused.status_code == 422
            text = client.get("/metrics").text
    finally:
        server.stop()
    return exposition_names(text)


def test_the_server_exports_every_kind_of_series(exported: set[str]):
    assert exported >= {
        "mlops_requests_total",
        "mlops_request_errors_total",
        "mlops_request_latency_seconds_bucket",
        "mlops_request_latency_seconds_count",
        "mlops_model_latency_seconds_bucket",
        "mlops_predictions_total",
        "mlops_invalid_requests_total",
        "mlops_server_errors_total",
        "mlops_traffic_percent",
        "mlops_drift_share",
        "mlops_drifted_features",
        "mlops_drift_share_limit",
        "mlops_drift_measured_timestamp_seconds",
    }


def test_the_dashboard_is_well_formed():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    panels = dashboard_panels(DASHBOARD)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "job", "model_name", "model_version"}
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel["targets"], f"panel {panel['title']!r} has no target"
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        area = {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area


def test_every_dashboard_query_is_valid_promql(tmp_path):
    """promtool parses each query as a recording rule's expression, Grafana's variables replaced
    by values of their kind."""
    values = {"$__rate_interval": "1m", "$__range": "6h", "${datasource}": "prometheus"}
    exprs = {
        f"dashboard:panel{panel['id']}_{target['refId']}": target["expr"]
        for panel in dashboard_panels(DASHBOARD)
        for target in panel["targets"]
    }
    for name, expr in exprs.items():
        for variable, value in values.items():
            expr = expr.replace(variable, value)
        exprs[name] = re.sub(r"\$\w+", "x", expr)  # inside label matchers: any string
    path = tmp_path / "dashboard.yml"
    path.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "dashboard", "rules": [{"record": n, "expr": e} for n, e in exprs.items()]}]}
        )
    )
    done = subprocess.run(
        [require_promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and f"SUCCESS: {len(exprs)} rules found" in done.stdout, (
        done.stdout + done.stderr
    )


def test_every_dashboard_query_uses_exported_or_recorded_metrics(exported: set[str]):
    available = available_names(exported)
    used: set[str] = set()
    for panel in dashboard_panels(DASHBOARD):
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, f"{panel['title']!r}: {target['expr']} names no metric"
            assert names <= available, f"{panel['title']!r}: {sorted(names - available)} do not exist"
            used |= names
    # what the dashboard is for: traffic, errors, latency, SLOs, split, predictions, drift, 4xx
    assert used >= {
        "mlops_requests_total",
        "mlops_request_errors_total",
        "mlops_request_latency_seconds_bucket",
        "mlops_model_latency_seconds_bucket",
        "mlops:availability_errors:ratio_rate1h",
        "mlops:availability_errors:ratio_rate30d",
        "mlops:latency_slow:ratio_rate1h",
        "mlops:latency_slow:ratio_rate30d",
        "mlops_traffic_percent",
        "mlops:role_errors:ratio_rate5m",
        "mlops_predictions_total",
        "mlops_drift_share",
        "mlops_drift_share_limit",
        "mlops_invalid_requests_total",
        "mlops_server_errors_total",
    }


def test_every_rule_uses_exported_or_recorded_metrics(exported: set[str]):
    available = available_names(exported)
    assert set(recording_rules()) <= available, sorted(set(recording_rules()) - available)
    for rule in rules():
        names = metric_names(rule["expr"])
        missing = names - available
        assert names and not missing, f"{rule.get('record') or rule['alert']}: {sorted(missing)} do not exist"


def test_a_name_the_server_does_not_export_is_caught(exported: set[str]):
    """The check itself: a misspelt metric, and a recording rule's name without the server's."""
    available = available_names(exported)
    assert not metric_names("rate(mlops_request_total[5m])") <= available
    assert "mlops:version_traffic:percent" not in available_names(exported - {"mlops_traffic_percent"})
