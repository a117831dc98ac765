"""The canary analysis on hand-made metric windows: parsing, quantiles, and each criterion."""

import math

import numpy as np
import pytest

from mlops_platform.lib.canary_analysis import (
    AnalysisPolicy,
    VersionWindow,
    compare,
    merge_sparse_bins,
    parse_metrics,
    population_stability_index,
    prediction_shift,
)

EXPOSITION = """
# TYPE mlops_requests_total counter
mlops_requests_total{model_name="m",model_version="1",protocol="v1",pod="a"} 60.0
mlops_requests_total{model_name="m",model_version="1",protocol="v2",pod="b"} 40.0
mlops_requests_total{model_name="other",model_version="1",protocol="v1",pod="a"} 999.0
# TYPE mlops_request_errors_total counter
mlops_request_errors_total{model_name="m",model_version="1",pod="a"} 3.0
# TYPE mlops_request_latency_seconds histogram
mlops_request_latency_seconds_bucket{model_name="m",model_version="1",le="0.001",pod="a"} 50.0
mlops_request_latency_seconds_bucket{model_name="m",model_version="1",le="0.001",pod="b"} 30.0
mlops_request_latency_seconds_bucket{model_name="m",model_version="1",le="0.002",pod="a"} 60.0
mlops_request_latency_seconds_bucket{model_name="m",model_version="1",le="0.002",pod="b"} 40.0
mlops_request_latency_seconds_bucket{model_name="m",model_version="1",le="+Inf",pod="a"} 60.0
mlops_request_latency_seconds_bucket{model_name="m",model_version="1",le="+Inf",pod="b"} 40.0
# TYPE mlops_predictions_total counter
mlops_predictions_total{model_name="m",model_version="1",bucket="0.05",pod="a"} 70.0
mlops_predictions_total{model_name="m",model_version="1",bucket="1.00",pod="b"} 30.0
"""


def test_series_are_summed_by_version_over_every_other_label():
    windows = parse_metrics(EXPOSITION, "m")
    assert set(windows) == {"1"}
    window = windows["1"]
    assert (window.requests, window.errors) == (100.0, 3.0)
    assert window.latency_buckets == {0.001: 80.0, 0.002: 100.0, math.inf: 100.0}
    assert window.prediction_buckets == {"0.05": 70.0, "1.00": 30.0}
    # 95th of 100: rank 95 lies in (0.001, 0.002], 15 of its 20 requests in -> 1.75 ms
    assert window.latency_quantile(0.95) == pytest.approx(0.00175)
    assert math.isnan(window.model_latency_quantile(0.95))


def _window(requests: int, errors: int = 0, p95_ms: float = 2.0, shift: float = 0.0) -> VersionWindow:
    """`requests` requests whose 95th latency is near `p95_ms`, predictions spread over buckets."""
    bound = p95_ms / 1000
    latency = {
        bound / 2: 0.5 * requests,
        bound: 0.95 * requests,
        bound * 4: float(requests),
        math.inf: requests,
    }
    weights = np.exp(-(((np.arange(20) - 6 - shift * 20) / 4) ** 2))
    counts = np.round(weights / weights.sum() * requests)
    buckets = {f"{0.05 * (i + 1):.2f}": float(c) for i, c in enumerate(counts)}
    return VersionWindow(requests, errors, latency, dict(latency), buckets)


def test_a_canary_like_the_stable_version_passes():
    verdict = compare(_window(500), _window(4500), AnalysisPolicy())
    assert verdict.passed and verdict.reasons == []
    assert verdict.facts["canary_requests"] == 500 and verdict.facts["prediction_psi"] < 0.01


@pytest.mark.parametrize(
    ("canary", "reason"),
    [
        (_window(500, errors=50), "error rate 10.00% vs stable 0.00%: +10.00% exceeds the allowed +2.00%"),
        (_window(500, p95_ms=30.0), "p95 latency 30.0 ms exceeds 5.0 ms (1.5x stable 2.0 ms + 2.0 ms)"),
        (_window(500, shift=0.4), "prediction distribution shifted: PSI"),
        (_window(50), "too few requests to judge: canary 50, stable 4500 (minimum 200 each)"),
    ],
    ids=["errors", "latency", "predictions", "too-few"],
)
def test_each_criterion_fails_naming_its_threshold_and_the_measured_value(canary, reason):
    verdict = compare(canary, _window(4500), AnalysisPolicy())
    assert not verdict.passed
    assert any(r.startswith(reason) for r in verdict.reasons), verdict.reasons


def test_sparse_bins_are_merged_until_each_expects_five_rows():
    table = np.array([[0, 1, 5, 20, 3, 0, 1], [2, 10, 50, 200, 30, 4, 0]], dtype=float)
    merged = merge_sparse_bins(table)
    assert merged.sum(axis=1).tolist() == table.sum(axis=1).tolist()  # nothing lost
    share = table[0].sum() / table.sum()
    assert (merged.sum(axis=0) * share >= 5).all()


def test_short_windows_of_one_distribution_do_not_read_as_a_shift():
    """100 canary rows against 900 stable ones, both drawn from the same 20-bucket histogram: the
    raw PSI is mostly sampling noise; the judged one is net of it and no step fails on it."""
    rng = np.random.default_rng(0)
    weights = np.exp(-(((np.arange(20) - 6) / 4) ** 2))
    labels = [f"{0.05 * (i + 1):.2f}" for i in range(20)]
    raw, net, failed = [], [], 0
    for _ in range(300):
        windows = []
        for n in (100, 900):
            counts = rng.multinomial(n, weights / weights.sum()).astype(float)
            windows.append(
                VersionWindow(n, 0, {0.002: n, math.inf: n}, {}, dict(zip(labels, counts, strict=True)))
            )
        canary, stable = windows
        table = merge_sparse_bins(
            np.array(
                [
                    [canary.prediction_buckets[b] for b in labels],
                    [stable.prediction_buckets[b] for b in labels],
                ]
            )
        )
        raw.append(population_stability_index(table[1], table[0]))
        net.append(prediction_shift(canary, stable)[1])
        failed += not compare(canary, stable, AnalysisPolicy(min_samples=100)).passed
    assert np.mean(raw) > 0.05  # what a threshold on the raw PSI would be fighting
    assert np.mean(net) < 0.02 and failed <= 3  # at most 1 %, the chi-square level
    assert (
        compare(_window(100, shift=0.4), _window(900), AnalysisPolicy(min_samples=100))
        .reasons[0]
        .startswith("prediction distribution shifted")
    )  # a real shift still fails on a short step
