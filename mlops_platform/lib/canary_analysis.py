"""Canary analysis: compare the canary with the stable version from the server's metrics.

Reads the Prometheus text exposition the model server writes (`mlops_*` series, summed by
`model_version` over every other label, so the same code reads one gateway's `/metrics` or
a Prometheus `/federate` answer over many KServe pods). Two snapshots taken at the start and
the end of a step give what each version served during the step; `compare` then checks:

- error rate: canary minus stable at most `max_error_rate_increase`;
- p95 latency (interpolated in histogram buckets, like PromQL's `histogram_quantile`): canary
  at most `max_latency_ratio` x stable + `latency_margin_ms`, both for whole requests and for the
  model call alone (in one gateway process a slow canary slows the stable version's requests
  too, so only the model's own time tells them apart; on KServe each has its own pods);
- predictions: the canary's probability histogram against the stable one, chi-square test of
  homogeneity and population stability index (over buckets merged until each expects at
  least 5 rows of either version); fails when the shift is both significant
  (`p < prediction_alpha`) and large (`PSI > max_prediction_psi`). The PSI judged is net of
  sampling noise: two samples of one distribution in k buckets show a PSI of about
  (k - 1)(1/n_canary + 1/n_stable) (0.09 for 100 canary rows in 10 buckets), which is subtracted,
  so a short step does not read noise as a shift.

No verdict is given before each version has `min_samples` requests in the window.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from mlops_platform.datasets.simulation import AnalysisPolicy


def _quantile(buckets: dict[float, float], q: float) -> float:
    """Seconds; linear interpolation inside the bucket, as `histogram_quantile` does."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return math.nan
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            inside = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / inside if inside else 0.0)
        lower_bound, lower_count = bound, count
    return lower_bound


def _minus(after: dict, before: dict) -> dict:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


@dataclass(frozen=True)
class VersionWindow:
    """What one version served: counts, cumulative latency buckets (upper bound in seconds ->
    count) of requests and of model calls, and rows per probability bucket."""

    requests: float = 0.0
    errors: float = 0.0
    latency_buckets: dict[float, float] = field(default_factory=dict)
    model_latency_buckets: dict[float, float] = field(default_factory=dict)
    prediction_buckets: dict[str, float] = field(default_factory=dict)

    def minus(self, before: VersionWindow) -> VersionWindow:
        return VersionWindow(
            requests=self.requests - before.requests,
            errors=self.errors - before.errors,
            latency_buckets=_minus(self.latency_buckets, before.latency_buckets),
            model_latency_buckets=_minus(self.model_latency_buckets, before.model_latency_buckets),
            prediction_buckets=_minus(self.prediction_buckets, before.prediction_buckets),
        )

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def latency_quantile(self, q: float) -> float:
        return _quantile(self.latency_buckets, q)

    def model_latency_quantile(self, q: float) -> float:
        return _quantile(self.model_latency_buckets, q)


_HISTOGRAMS = {
    "mlops_request_latency_seconds_bucket": "latency",
    "mlops_model_latency_seconds_bucket": "model_latency",
}


def parse_metrics(text: str, model_name: str) -> dict[str, VersionWindow]:
    """Per-version totals from a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, dict] = {}

    def entry(version: str) -> dict:
        return found.setdefault(
            version, {"requests": 0.0, "errors": 0.0, "latency": {}, "model_latency": {}, "predictions": {}}
        )

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("model_name") != model_name or "model_version" not in labels:
                continue
            slot = entry(labels["model_version"])
            if sample.name == "mlops_requests_total":
                slot["requests"] += sample.value
            elif sample.name == "mlops_request_errors_total":
                slot["errors"] += sample.value
            elif sample.name in _HISTOGRAMS:
                histogram = slot[_HISTOGRAMS[sample.name]]
                bound = float(labels["le"])
                histogram[bound] = histogram.get(bound, 0.0) + sample.value
            elif sample.name == "mlops_predictions_total":
                bucket = labels["bucket"]
                slot["predictions"][bucket] = slot["predictions"].get(bucket, 0.0) + sample.value
    return {
        version: VersionWindow(v["requests"], v["errors"], v["latency"], v["model_latency"], v["predictions"])
        for version, v in found.items()
    }


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: list[str]  # why it failed (empty when it passed)
    facts: dict[str, float]

    def as_dict(self) -> dict:
        return asdict(self)


def population_stability_index(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI of two histograms over the same bins, with half a count added to every bin (so an
    empty bin on one side gives a large but finite term)."""
    e = (expected + 0.5) / (expected.sum() + 0.5 * len(expected))
    a = (actual + 0.5) / (actual.sum() + 0.5 * len(actual))
    return float(np.sum((a - e) * np.log(a / e)))


def merge_sparse_bins(table: np.ndarray, min_expected: float = 5.0) -> np.ndarray:
    """Join neighbouring bins of a 2 x k table until every cell's expected count (under
    homogeneity) is at least `min_expected`: the chi-square approximation needs it, and PSI
    over near-empty bins is mostly noise."""
    share = table.sum(axis=1, keepdims=True) / table.sum()
    merged, current = [], np.zeros(2)
    for column in table.T:
        current = current + column
        if (current.sum() * share[:, 0] >= min_expected).all():
            merged.append(current)
            current = np.zeros(2)
    if current.sum() > 0:
        if merged:
            merged[-1] = merged[-1] + current
        else:
            merged.append(current)
    return np.array(merged).T


def sampling_noise_psi(table: np.ndarray) -> float:
    """The PSI two samples of one distribution show by chance, for a 2 x k table of counts:
    n_eff x PSI is asymptotically chi-square with k - 1 degrees of freedom (PSI is the symmetric
    KL divergence, whose second-order term is the chi-square statistic over n_eff)."""
    n_canary, n_stable = table.sum(axis=1)
    return float((table.shape[1] - 1) * (1.0 / n_canary + 1.0 / n_stable))


def prediction_shift(canary: VersionWindow, stable: VersionWindow) -> tuple[float, float]:
    """(chi-square p-value, PSI net of sampling noise, never below 0) of the canary's probability
    histogram against the stable one, over probability buckets merged until each is well filled."""
    from scipy.stats import chi2_contingency

    buckets = sorted(set(canary.prediction_buckets) | set(stable.prediction_buckets), key=float)
    table = np.array(
        [
            [canary.prediction_buckets.get(b, 0.0) for b in buckets],
            [stable.prediction_buckets.get(b, 0.0) for b in buckets],
        ]
    )
    if (table.sum(axis=1) == 0).any():
        return 1.0, 0.0
    table = merge_sparse_bins(table)
    if table.shape[1] < 2:
        return 1.0, 0.0
    p_value = float(chi2_contingency(table).pvalue)
    psi = population_stability_index(table[1], table[0]) - sampling_noise_psi(table)
    return p_value, max(float(psi), 0.0)


def has_enough_samples(canary: VersionWindow, stable: VersionWindow, policy: AnalysisPolicy) -> bool:
    return canary.requests >= policy.min_samples and stable.requests >= policy.min_samples


def compare(canary: VersionWindow, stable: VersionWindow, policy: AnalysisPolicy) -> Verdict:
    """The step's verdict; each failed criterion names its threshold and the measured value."""
    reasons: list[str] = []
    canary_p95, stable_p95 = canary.latency_quantile(0.95), stable.latency_quantile(0.95)
    canary_model_p95, stable_model_p95 = (
        canary.model_latency_quantile(0.95),
        stable.model_latency_quantile(0.95),
    )
    p_value, psi = prediction_shift(canary, stable)
    facts = {
        "canary_requests": canary.requests,
        "stable_requests": stable.requests,
        "canary_error_rate": round(canary.error_rate, 6),
        "stable_error_rate": round(stable.error_rate, 6),
        "canary_p95_ms": round(canary_p95 * 1000, 3),
        "stable_p95_ms": round(stable_p95 * 1000, 3),
        "canary_model_p95_ms": round(canary_model_p95 * 1000, 3),
        "stable_model_p95_ms": round(stable_model_p95 * 1000, 3),
        "prediction_chi2_p_value": p_value,
        "prediction_psi": round(psi, 6),
    }
    if not has_enough_samples(canary, stable, policy):
        reasons.append(
            f"too few requests to judge: canary {canary.requests:.0f}, stable {stable.requests:.0f} "
            f"(minimum {policy.min_samples} each)"
        )
        return Verdict(False, reasons, facts)
    increase = canary.error_rate - stable.error_rate
    if increase > policy.max_error_rate_increase:
        reasons.append(
            f"error rate {canary.error_rate:.2%} vs stable {stable.error_rate:.2%}: "
            f"+{increase:.2%} exceeds the allowed +{policy.max_error_rate_increase:.2%}"
        )
    for what, canary_value, stable_value in (
        ("p95 latency", canary_p95, stable_p95),
        ("p95 model latency", canary_model_p95, stable_model_p95),
    ):
        limit = stable_value * policy.max_latency_ratio + policy.latency_margin_ms / 1000
        if not math.isnan(canary_value) and canary_value > limit:
            reasons.append(
                f"{what} {canary_value * 1000:.1f} ms exceeds {limit * 1000:.1f} ms "
                f"({policy.max_latency_ratio}x stable {stable_value * 1000:.1f} ms"
                f" + {policy.latency_margin_ms} ms)"
            )
    if p_value < policy.prediction_alpha and psi > policy.max_prediction_psi:
        reasons.append(
            f"prediction distribution shifted: PSI {psi:.3f} > {policy.max_prediction_psi} "
            f"(chi-square p = {p_value:.2g} < {policy.prediction_alpha})"
        )
    return Verdict(not reasons, reasons, facts)
