"""Canary analysis: compare the canary with the stable version from the server's metrics.

Reads the Prometheus text exposition the model server writes (`mlops_*` series, summed by
`model_version` over every other label, so the same code reads one gateway's `/metrics` or
a Prometheus `/federate` answer over many KServe pods). Two snapshots taken at the start and
the end of a step give what each version served during the step; `compare` then checks:

- error rate: canary minus stable at most `max_error_rate_increase`;
- p95 latency (interpolated in histogram buckets, like PromQL's `histogram_quantile`): canary
  at most `max_latency_ratio` x stable + `latency_margin_ms`;
- predictions: the canary's probability histogram against the stable one, chi-square test of
  homogeneity and population stability index; fails when the shift is both significant
  (`p < prediction_alpha`) and large (`PSI > max_prediction_psi`).

No verdict is given before each version has `min_samples` requests in the window.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class VersionWindow:
    """What one version served: counts, cumulative latency buckets, probability buckets."""

    requests: float = 0.0
    errors: float = 0.0
    latency_buckets: dict[float, float] = field(default_factory=dict)  # upper bound (s) -> cumulative count
    prediction_buckets: dict[str, float] = field(default_factory=dict)  # upper edge -> rows

    def minus(self, before: VersionWindow) -> VersionWindow:
        return VersionWindow(
            requests=self.requests - before.requests,
            errors=self.errors - before.errors,
            latency_buckets={
                k: v - before.latency_buckets.get(k, 0.0) for k, v in self.latency_buckets.items()
            },
            prediction_buckets={
                k: v - before.prediction_buckets.get(k, 0.0) for k, v in self.prediction_buckets.items()
            },
        )

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def latency_quantile(self, q: float) -> float:
        """Seconds; linear interpolation inside the bucket, as `histogram_quantile` does."""
        bounds = sorted(self.latency_buckets)
        if not bounds or self.latency_buckets[bounds[-1]] <= 0:
            return math.nan
        total = self.latency_buckets[bounds[-1]]
        rank = q * total
        lower_bound, lower_count = 0.0, 0.0
        for bound in bounds:
            count = self.latency_buckets[bound]
            if count >= rank:
                if math.isinf(bound):
                    return lower_bound
                inside = count - lower_count
                return lower_bound + (bound - lower_bound) * (
                    (rank - lower_count) / inside if inside else 0.0
                )
            lower_bound, lower_count = bound, count
        return lower_bound


def parse_metrics(text: str, model_name: str) -> dict[str, VersionWindow]:
    """Per-version totals from a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, dict] = {}

    def entry(version: str) -> dict:
        return found.setdefault(version, {"requests": 0.0, "errors": 0.0, "latency": {}, "predictions": {}})

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
            elif sample.name == "mlops_request_latency_seconds_bucket":
                bound = float(labels["le"])
                slot["latency"][bound] = slot["latency"].get(bound, 0.0) + sample.value
            elif sample.name == "mlops_predictions_total":
                bucket = labels["bucket"]
                slot["predictions"][bucket] = slot["predictions"].get(bucket, 0.0) + sample.value
    return {
        version: VersionWindow(v["requests"], v["errors"], v["latency"], v["predictions"])
        for version, v in found.items()
    }


@dataclass(frozen=True)
class AnalysisPolicy:
    min_samples: int = 200
    max_error_rate_increase: float = 0.02
    max_latency_ratio: float = 1.5
    latency_margin_ms: float = 2.0
    max_prediction_psi: float = 0.25
    prediction_alpha: float = 0.01


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


def prediction_shift(canary: VersionWindow, stable: VersionWindow) -> tuple[float, float]:
    """(chi-square p-value, PSI) of the canary's probability histogram against the stable one."""
    from scipy.stats import chi2_contingency

    buckets = sorted(set(canary.prediction_buckets) | set(stable.prediction_buckets), key=float)
    table = np.array(
        [
            [canary.prediction_buckets.get(b, 0.0) for b in buckets],
            [stable.prediction_buckets.get(b, 0.0) for b in buckets],
        ]
    )
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0, 0.0
    p_value = float(chi2_contingency(table).pvalue)
    return p_value, population_stability_index(table[1], table[0])


def has_enough_samples(canary: VersionWindow, stable: VersionWindow, policy: AnalysisPolicy) -> bool:
    return canary.requests >= policy.min_samples and stable.requests >= policy.min_samples


def compare(canary: VersionWindow, stable: VersionWindow, policy: AnalysisPolicy) -> Verdict:
    """The step's verdict; each failed criterion names its threshold and the measured value."""
    reasons: list[str] = []
    canary_p95, stable_p95 = canary.latency_quantile(0.95), stable.latency_quantile(0.95)
    p_value, psi = prediction_shift(canary, stable)
    facts = {
        "canary_requests": canary.requests,
        "stable_requests": stable.requests,
        "canary_error_rate": round(canary.error_rate, 6),
        "stable_error_rate": round(stable.error_rate, 6),
        "canary_p95_ms": round(canary_p95 * 1000, 3),
        "stable_p95_ms": round(stable_p95 * 1000, 3),
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
    latency_limit = stable_p95 * policy.max_latency_ratio + policy.latency_margin_ms / 1000
    if not math.isnan(canary_p95) and canary_p95 > latency_limit:
        reasons.append(
            f"p95 latency {canary_p95 * 1000:.1f} ms exceeds {latency_limit * 1000:.1f} ms "
            f"({policy.max_latency_ratio}x stable {stable_p95 * 1000:.1f} ms + {policy.latency_margin_ms} ms)"
        )
    if p_value < policy.prediction_alpha and psi > policy.max_prediction_psi:
        reasons.append(
            f"prediction distribution shifted: PSI {psi:.3f} > {policy.max_prediction_psi} "
            f"(chi-square p = {p_value:.2g} < {policy.prediction_alpha})"
        )
    return Verdict(not reasons, reasons, facts)
