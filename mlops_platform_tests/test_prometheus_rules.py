"""The Prometheus rules in `deploy/prometheus`: `promtool check rules`, their `promtool test rules`
unit tests (every alert both firing and silent), and the PromQL reader the metric checks use.

promtool is Debian's `prometheus` package; these tests skip without it, unless
MLOPS_REQUIRE_SERVICES=1, where they fail (CI installs it)."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from mlops_platform.serving.metrics import LATENCY_BUCKETS
from mlops_platform_tests.promql import (
    RULES_DIR,
    metric_names,
    recording_rules,
    require_promtool,
    rule_files,
    rules,
    tokens,
)

TESTS_DIR = RULES_DIR / "tests"


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [require_promtool(), *args], capture_output=True, text=True, timeout=120, cwd=RULES_DIR.parents[1]
    )


def test_promtool_accepts_every_rule_file():
    files = rule_files()
    assert {p.name for p in files} >= {
        "mlops-availability.yml",
        "mlops-latency.yml",
        "mlops-canary.yml",
        "mlops-drift.yml",
    }
    done = _promtool("check", "rules", *[str(p.relative_to(RULES_DIR.parents[1])) for p in files])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(files), done.stdout


def test_the_rules_unit_tests_pass():
    tests = sorted(TESTS_DIR.glob("*.yml"))
    assert len(tests) == 4
    done = _promtool("test", "rules", *[str(p.relative_to(RULES_DIR.parents[1])) for p in tests])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(tests) and "FAILED" not in done.stdout, done.stdout


def test_every_alert_is_unit_tested_firing_and_silent():
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts == {
        "MlopsAvailabilityBudgetBurn",
        "MlopsLatencyBudgetBurn",
        "MlopsCanaryErrorRateAboveStable",
        "MlopsDriftShareAboveLimit",
        "MlopsDriftMeasurementStale",
    }
    firing: dict[str, set[str]] = {}  # alert -> severities seen firing
    silent: set[str] = set()
    for path in TESTS_DIR.glob("*.yml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                if case["exp_alerts"]:
                    firing.setdefault(case["alertname"], set()).update(
                        a["exp_labels"]["severity"] for a in case["exp_alerts"]
                    )
                else:
                    silent.add(case["alertname"])
    assert set(firing) == alerts and silent == alerts
    # both severities of each burn-rate alert fire in some case
    assert firing["MlopsAvailabilityBudgetBurn"] == firing["MlopsLatencyBudgetBurn"] == {"page", "ticket"}


def test_rules_are_named_in_the_mlops_namespace_and_state_their_targets():
    for rule in rules():
        if "record" in rule:
            assert rule["record"].startswith("mlops:"), rule["record"]
        else:
            assert rule["alert"].startswith("Mlops") and rule["labels"]["severity"] in {"page", "ticket"}
            assert rule["annotations"]["runbook"].startswith("docs/slos.md#")
    for path in rule_files():
        text = path.read_text()
        assert "promtool test rules deploy/prometheus/tests/*.yml" in text, path
    assert "99.5 %" in (RULES_DIR / "mlops-availability.yml").read_text()
    assert "95 % of requests within 25 ms" in (RULES_DIR / "mlops-latency.yml").read_text()


def test_every_alert_has_its_runbook_in_the_docs():
    slos = (RULES_DIR.parents[1] / "docs" / "slos.md").read_text()
    headings = {h.lower() for h in re.findall(r"^### (\w+)$", slos, re.MULTILINE)}
    for rule in rules():
        if "alert" in rule:
            assert rule["annotations"]["runbook"] == f"docs/slos.md#{rule['alert'].lower()}"
            assert rule["alert"].lower() in headings, rule["alert"]


def test_the_latency_threshold_is_a_bucket_the_server_exports():
    thresholds = {
        float(le) for path in rule_files() for le in re.findall(r'\ble="([^"]+)"', path.read_text())
    }
    assert thresholds == {0.025} and thresholds <= set(LATENCY_BUCKETS)


def test_metric_names_skip_functions_keywords_labels_strings_and_variables():
    expr = """
        sum by (le, model_version) (rate(foo_bucket{job=~"$job", le="0.025"}[$__rate_interval] offset 1h))
          / on (job) group_left (role) (0 * bar + 1) > bool 2
        unless ignoring (x) baz{a="sum(q) by (r)"} and time() - qux @ 100
        or max_over_time(rec:orded[1h:5m]) + 1e9 + Inf - sum(without_metric) without (instance)
        or count_values("value", topk(5, quux)) # a comment naming not_a_metric
    """
    assert metric_names(expr) == {"foo_bucket", "bar", "baz", "qux", "rec:orded", "without_metric", "quux"}
    assert ("variable", "$__rate_interval") in tokens(expr)
    with pytest.raises(ValueError, match="cannot read PromQL"):
        metric_names("foo ; bar")


def test_metric_names_of_the_rule_files():
    recorded = recording_rules()
    assert metric_names(recorded["mlops:availability_errors:ratio_rate1h"]) == {
        "mlops:server_errors:rate1h",
        "mlops_requests_total",
        "mlops_request_errors_total",
    }
    assert metric_names(recorded["mlops:latency_slow:ratio_rate6h"]) == {
        "mlops_request_latency_seconds_bucket",
        "mlops_request_latency_seconds_count",
    }
    assert metric_names(recorded["mlops:role_errors:ratio_rate5m"]) == {
        "mlops:version_errors:rate5m",
        "mlops:version_requests:rate5m",
        "mlops:version_traffic:percent",
    }
    alerts = {rule["alert"]: rule["expr"] for rule in rules() if "alert" in rule}
    assert metric_names(alerts["MlopsDriftMeasurementStale"]) == {
        "mlops_drift_measured_timestamp_seconds",
        "mlops_requests_total",
    }
    assert metric_names(alerts["MlopsCanaryErrorRateAboveStable"]) == {
        "mlops:role_errors:ratio_rate5m",
        "mlops:version_traffic:percent",
    }
