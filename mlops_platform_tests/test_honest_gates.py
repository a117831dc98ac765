"""Gates that are honest on small data: bootstrap intervals on the gated metrics and judging on
them, fairness gaps that a too-small group leaves unmeasured (never 0), the logistic baseline
beside every model, and checks that say when they had nothing to judge."""

import dataclasses
import math
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from mlflow import MlflowClient

from mlops_platform.datasets.metric_names import CLASSIFICATION_METRICS
from mlops_platform.definitions import build_definitions
from mlops_platform.defs.jobs import RETRAIN_MODEL
from mlops_platform.defs.training.evaluation import build_evaluation_asset
from mlops_platform.lib import warehouse
from mlops_platform.lib.evaluation import HISTOGRAM_BINS, bootstrap_intervals, classification_metrics
from mlops_platform.resources.mlflow import MlflowTracking
from mlops_platform.settings import Settings
from mlops_platform_tests.datasets import SMALL_DATA_GATES, write_adult_spec
from mlops_platform_tests.pipeline import checks, copy_landed, materialized

# race gated; with 40 as the minimum only White has enough test rows in this 2,000-row slice
RACE_GATED = [
    {"column": "sex", "max_gaps": {"equalized_odds_difference": 0.8}},
    {"column": "race", "max_gaps": {"equalized_odds_difference": 0.8, "demographic_parity_difference": 0.8}},
]


def _scored(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores of an imperfect, slightly miscalibrated scorer."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(rows) < 0.25).astype(int)
    scores = 1 / (1 + np.exp(-(rng.normal(0.0, 1.0, rows) + 2.0 * labels - 1.8)))
    return labels, scores


def test_the_row_bootstrap_is_a_plain_numpy_bootstrap():
    """Up to EXACT_BOOTSTRAP_ROWS the intervals are those of resampling rows with numpy and
    computing every metric with sklearn, draw for draw (same seed)."""
    labels, scores = _scored(1500, seed=0)
    ours = bootstrap_intervals(labels, scores, 0.4, samples=200, seed=7)
    assert ours.method == "rows"
    rng = np.random.default_rng(7)
    drawn = {m: [] for m in CLASSIFICATION_METRICS}
    for _ in range(200):
        pick = rng.integers(0, len(labels), len(labels))
        metrics = classification_metrics(labels[pick], scores[pick], 0.4)
        for m in CLASSIFICATION_METRICS:
            drawn[m].append(metrics[m])
    for m in CLASSIFICATION_METRICS:
        low, high = np.percentile(drawn[m], [2.5, 97.5])
        assert ours.intervals[m] == pytest.approx((low, high), abs=1e-9), m
        point = classification_metrics(labels, scores, 0.4)[m]
        assert low - 0.02 <= point <= high + 0.02


def test_the_histogram_bootstrap_agrees_with_the_row_bootstrap_on_a_mid_size_split():
    """The stated tolerance (bootstrap_intervals' docstring): every endpoint within 0.002."""
    labels, scores = _scored(30_000, seed=1)
    exact = bootstrap_intervals(labels, scores, 0.4, samples=1000, seed=0, exact_rows=len(labels))
    binned = bootstrap_intervals(labels, scores, 0.4, samples=1000, seed=0, exact_rows=0)
    assert (exact.method, binned.method) == ("rows", "histogram")
    assert binned.cells <= 2 * (HISTOGRAM_BINS + 10)
    for m in CLASSIFICATION_METRICS:
        assert binned.intervals[m] == pytest.approx(exact.intervals[m], abs=0.002), m
        assert exact.intervals[m][1] - exact.intervals[m][0] > 0.001  # an interval, not a point


def test_a_large_split_resamples_a_bounded_histogram():
    labels, scores = _scored(1_500_000, seed=2)
    result = bootstrap_intervals(labels, scores, 0.4, samples=200)
    assert result.method == "histogram" and result.cells <= 2 * (HISTOGRAM_BINS + 10)
    low, high = result.intervals["roc_auc"]
    point = classification_metrics(labels[:200_000], scores[:200_000], 0.4)["roc_auc"]
    assert low < high and high - low < 0.005 and abs((low + high) / 2 - point) < 0.01


def test_a_metric_undefined_in_many_resamples_gets_no_interval():
    """40 test rows with 2 positives: about 1 resample in 8 holds no positive, so ROC AUC has
    no value there; the defined ones alone would make a narrow, optimistic interval."""
    labels = np.zeros(40, dtype=int)
    labels[:2] = 1
    scores = np.linspace(0.99, 0.01, 40)  # both positives ranked first: ROC AUC 1.0
    result = bootstrap_intervals(labels, scores, 0.5, samples=500, seed=0)
    assert 0.05 < result.undefined["roc_auc"] < 0.3
    assert all(np.isnan(result.intervals["roc_auc"]))
    assert result.undefined["accuracy"] == 0 and np.isfinite(result.intervals["accuracy"]).all()


def _settings(home: Path, folder: Path, **overrides) -> Settings:
    return Settings(home=home, dataset_spec_path=write_adult_spec(folder, 500, 4, **overrides))


def _gates(**changes) -> dict:
    return {**SMALL_DATA_GATES, **changes}


def _retrain(settings: Settings, instance: dg.DagsterInstance, config: dict | None = None):
    run_config = {"ops": {"trained_model": {"config": config}}} if config else None
    return (
        build_definitions(settings)
        .resolve_job_def(RETRAIN_MODEL)
        .execute_in_process(instance=instance, run_config=run_config, raise_on_error=False)
    )


def _rerun(settings: Settings, instance: dg.DagsterInstance, asset: str) -> dg.ExecuteInProcessResult:
    """Materialize one asset (and its checks) on the model trained before, under `settings`' spec."""
    job = build_definitions(settings).resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        asset_selection=[dg.AssetKey(asset)], instance=instance, raise_on_error=False
    )


@pytest.fixture(scope="module")
def trained(landed_home, tmp_path_factory):
    """One retrain on a copy of the landed home, race gated and min_group_size 40 (fail)."""
    settings = copy_landed(
        landed_home,
        tmp_path_factory.mktemp("trained"),
        sensitive_attributes=RACE_GATED,
        gates=_gates(min_group_size=40, on_unmeasurable="fail"),
    )
    with dg.instance_for_test() as instance:
        yield settings, instance, _retrain(settings, instance)


def _meta(evaluation: dg.AssetCheckEvaluation, key: str):
    return evaluation.metadata[key].value


def test_an_unmeasurable_group_fails_the_fairness_gate_and_its_gaps_are_not_zero(trained):
    settings, _, result = trained
    test = warehouse.read_table(settings.warehouse_path, "training_set").query("split == 'test'")
    sizes = test["race"].value_counts().to_dict()
    small = {group: rows for group, rows in sizes.items() if rows < 40}
    assert len(small) >= 2 and sum(rows >= 40 for rows in sizes.values()) == 1  # only White measurable

    assert not result.success and "registered_model_version" not in materialized(result)
    gate = checks(result)["fairness_gaps_within_limits"]
    assert not gate.passed
    for group, rows in small.items():
        assert (
            f"race: group '{group}' has {rows} test rows < min_group_size 40: "
            "equalized_odds_difference, demographic_parity_difference not measured"
        ) in gate.description
    unmeasured = _meta(gate, "unmeasured")
    assert {(u["attribute"], u["group"], u["rows"], u["minimum"]) for u in unmeasured} == {
        ("race", group, rows, 40) for group, rows in small.items()
    }
    by_gap = {(r["attribute"], r["gap"]): r for r in _meta(gate, "results")}
    assert by_gap[("race", "equalized_odds_difference")]["evaluated"] is False
    assert "value" not in by_gap[("race", "equalized_odds_difference")]
    assert by_gap[("sex", "equalized_odds_difference")]["evaluated"] is True
    assert by_gap[("sex", "equalized_odds_difference")]["passed"] is True

    report = result.output_for_node("fairness_report")
    for gap, v in report["race"]["gaps"].items():
        assert math.isnan(v["value"]), gap  # one measurable group: no gap, never 0.0
    assert not math.isnan(report["sex"]["gaps"]["equalized_odds_difference"]["value"])
    shown = result.asset_materializations_for_node("fairness_report")[0].metadata["gaps"].value
    assert "| race | equalized_odds_difference | not measured | - | <= 0.8 |" in shown
    run = MlflowClient(settings.tracking_uri).get_run(result.output_for_node("trained_model").mlflow_run_id)
    assert "fairness_sex_equalized_odds_difference" in run.data.metrics
    assert not any(k.startswith("fairness_race_") for k in run.data.metrics)  # nothing unmeasured logged


def test_on_unmeasurable_warn_passes_the_gate_with_the_warning(trained, tmp_path):
    settings, instance, _ = trained
    warn = _settings(
        settings.home,
        tmp_path,
        sensitive_attributes=RACE_GATED,
        gates=_gates(min_group_size=40, on_unmeasurable="warn"),
    )
    result = _rerun(warn, instance, "fairness_report")
    gate = checks(result)["fairness_gaps_within_limits"]
    assert gate.passed
    assert "warning (on_unmeasurable: warn)" in gate.description
    assert "race: group 'Other' has" in gate.description and "not measured" in gate.description
    assert "sex equalized_odds_difference" in gate.description  # the measured gap is still judged
    assert _meta(gate, "unmeasured") and _meta(gate, "evaluated") is True

    # `warn` covers a gate measured in part, never one that measured no gated gap at all
    nothing = _settings(
        settings.home,
        tmp_path / "nothing",
        sensitive_attributes=RACE_GATED,
        gates=_gates(min_group_size=100_000, on_unmeasurable="warn"),
    )
    gate = checks(_rerun(nothing, instance, "fairness_report"))["fairness_gaps_within_limits"]
    assert not gate.passed and _meta(gate, "evaluated") is False
    assert "no gated gap could be measured" in gate.description


def test_interval_judging_fails_a_metric_whose_point_passes(trained, tmp_path):
    settings, instance, first = trained
    evaluation = first.output_for_node("model_evaluation")
    value = evaluation["metrics"]["roc_auc"]
    low, high = evaluation["intervals"]["roc_auc"]["ci_low"], evaluation["intervals"]["roc_auc"]["ci_high"]
    assert low < value < high and evaluation["bootstrap"]["method"] == "rows"
    limit = round((low + value) / 2, 4)  # the point clears it, the interval's low end does not

    def judged(judge: str) -> dg.AssetCheckEvaluation:
        spec = _settings(
            settings.home, tmp_path / judge, gates=_gates(judge=judge, min_metrics={"roc_auc": limit})
        )
        return checks(_rerun(spec, instance, "model_evaluation"))["meets_metric_thresholds"]

    point, interval = judged("point"), judged("interval")
    assert point.passed and "(judged on: point)" in point.description
    assert not interval.passed
    assert (
        f"roc_auc {value:.3f} [95% CI {low:.3f}, {high:.3f}] >= {limit:g} (judged on: ci_low {low:.3f})"
        in (interval.description)
    )
    result = _meta(interval, "results")["roc_auc"]
    assert result == {
        "value": pytest.approx(value),
        "ci_low": pytest.approx(low),
        "ci_high": pytest.approx(high),
        "limit": limit,
        "direction": "min",
        "judged_on": "ci_low",
        "judged_value": pytest.approx(low),
        "passed": False,
    }
    assert _meta(interval, "roc_auc_ci_low") == pytest.approx(low)


def test_the_fairness_gate_judges_the_interval_end_that_matters(trained, tmp_path):
    """A gap's limit is a ceiling (judged on ci_high), demographic parity ratio's a floor (ci_low)."""
    settings, instance, first = trained
    gaps = first.output_for_node("fairness_report")["sex"]["gaps"]
    odds, ratio = gaps["equalized_odds_difference"], gaps["demographic_parity_ratio"]
    assert odds["value"] < odds["ci_high"] and ratio["ci_low"] < ratio["value"]
    limits = {
        "equalized_odds_difference": round((odds["value"] + odds["ci_high"]) / 2, 4),
        "demographic_parity_ratio": round((ratio["ci_low"] + ratio["value"]) / 2, 4),
    }

    def judged(judge: str) -> dg.AssetCheckEvaluation:
        spec = _settings(
            settings.home,
            tmp_path / judge,
            sensitive_attributes=[{"column": "sex", "max_gaps": limits}],
            gates=_gates(judge=judge),
        )
        return checks(_rerun(spec, instance, "fairness_report"))["fairness_gaps_within_limits"]

    point, interval = judged("point"), judged("interval")
    assert point.passed and point.description.count("(judged on: point)") == 2
    assert not interval.passed
    results = {r["gap"]: r for r in _meta(interval, "results")}
    assert results["equalized_odds_difference"]["judged_on"] == "ci_high"
    assert results["demographic_parity_ratio"]["judged_on"] == "ci_low"
    assert (
        not results["equalized_odds_difference"]["passed"]
        and not results["demographic_parity_ratio"]["passed"]
    )
    assert f"(judged on: ci_high {odds['ci_high']:.3f})" in interval.description
    assert f">= {limits['demographic_parity_ratio']:g} (judged on: ci_low {ratio['ci_low']:.3f})" in (
        interval.description
    )


def test_intervals_and_the_baseline_are_logged_beside_the_metrics(trained):
    settings, _, result = trained
    evaluation = result.output_for_node("model_evaluation")
    ref = result.output_for_node("trained_model")
    assert ref.baseline_artifact_path and Path(ref.baseline_artifact_path).is_file()
    baseline = evaluation["baseline_metrics"]
    assert set(baseline) == {"validation", "test"}
    assert 0.5 < baseline["validation"]["roc_auc"] <= 1.0
    assert baseline["test"]["rows"] == evaluation["metrics"]["rows"]
    metrics = MlflowClient(settings.tracking_uri).get_run(ref.mlflow_run_id).data.metrics
    for name in ("roc_auc", "accuracy", "expected_calibration_error"):
        ci = evaluation["intervals"][name]
        assert metrics[f"test_{name}_ci_low"] == pytest.approx(ci["ci_low"])
        assert metrics[f"test_{name}_ci_high"] == pytest.approx(ci["ci_high"])
        assert metrics[f"baseline_validation_{name}"] == pytest.approx(baseline["validation"][name])
        assert metrics[f"baseline_test_{name}"] == pytest.approx(baseline["test"][name])
    shown = result.asset_materializations_for_node("model_evaluation")[0].metadata
    assert "baseline (validation)" in shown["baseline"].value and "test 95% CI" in shown["metrics"].value


def test_beats_baseline_passes_a_normal_model_and_fails_a_weak_one(trained, tmp_path):
    settings, instance, normal = trained
    passed = checks(normal)["beats_baseline"]
    assert passed.passed and _meta(passed, "evaluated") is True
    ours, theirs = _meta(passed, "model_validation_roc_auc"), _meta(passed, "baseline_validation_roc_auc")
    assert (
        ours >= theirs - 0.01
        and f"{ours:.4f}" in passed.description
        and "tolerance 0.01" in passed.description
    )

    # one hidden unit behind heavy dropout: a worse model than the baseline trained beside it
    weak = _retrain(settings, instance, {"hidden_sizes": [1], "dropout": 0.9, "seed": 1})
    failed = checks(weak)["beats_baseline"]
    assert not failed.passed and not weak.success
    assert "registered_model_version" not in materialized(weak)
    ours, theirs = _meta(failed, "model_validation_roc_auc"), _meta(failed, "baseline_validation_roc_auc")
    assert ours < theirs - 0.01
    assert f"validation ROC AUC {ours:.4f} vs logistic baseline {theirs:.4f}" in failed.description
    assert "> tolerance 0.01" in failed.description


def test_checks_with_nothing_to_judge_say_so(trained, tmp_path):
    settings, instance, first = trained
    regression = checks(first)["no_regression_vs_champion"]
    assert regression.passed and _meta(regression, "evaluated") is False
    assert "not evaluated" in regression.description and "comparison" not in regression.metadata

    # a model trained before baselines existed, and a spec that gates no metric and no gap
    ref = dataclasses.replace(first.output_for_node("trained_model"), baseline_artifact_path=None)
    bare = _settings(
        settings.home,
        tmp_path,
        sensitive_attributes=[{"column": "sex"}],
        gates=_gates(min_metrics={}, max_metrics={}),
    )
    spec = bare.load_spec()
    evaluation, evaluation_checks = build_evaluation_asset(bare, spec)
    result = dg.materialize(
        [dg.asset(name="trained_model")(lambda: ref), evaluation, *evaluation_checks],
        instance=instance,
        resources={
            "mlflow": MlflowTracking(
                tracking_uri=bare.tracking_uri, artifact_root=bare.artifact_root, experiment=spec.name
            ),
        },
        raise_on_error=False,
    )
    found = checks(result)
    assert result.output_for_node("model_evaluation")["baseline_metrics"] is None
    for name in ("beats_baseline", "meets_metric_thresholds"):
        assert _meta(found[name], "evaluated") is False, name
        assert "not evaluated" in found[name].description
    assert found["meets_metric_thresholds"].passed  # the spec gates no metric: nothing was asked
    # a model with no baseline could not be compared: that never reads as a pass
    assert not found["beats_baseline"].passed
    assert "no baseline artifact" in found["beats_baseline"].description
    assert not {"model_validation_roc_auc", "baseline_validation_roc_auc"} & set(
        found["beats_baseline"].metadata
    )

    fairness = checks(_rerun(bare, instance, "fairness_report"))["fairness_gaps_within_limits"]
    assert fairness.passed and _meta(fairness, "evaluated") is False
    assert fairness.description == "not evaluated: no sensitive attribute of the spec has max_gaps"
