"""Prometheus metrics per model version, shared by all server workers.

Uses prometheus_client's multiprocess mode: `PROMETHEUS_MULTIPROC_DIR` must be set before
prometheus_client is imported (the `mlops serve` launcher does it), and `/metrics` sums the
workers' files. The canary analysis reads these same series, by `model_version`.

| metric | labels | meaning |
|---|---|---|
| `mlops_requests_total` | model_name, model_version, protocol | requests done, answered or failed |
| `mlops_request_errors_total` | model_name, model_version | of those, failed with a 5xx |
| `mlops_request_latency_seconds` | model_name, model_version | histogram, validation to response |
| `mlops_model_latency_seconds` | model_name, model_version | histogram, one model call (a micro-batch) |
| `mlops_predictions_total` | model_name, model_version, bucket | rows scored, by probability bucket |
| `mlops_invalid_requests_total` | status | requests refused before routing (4xx) |
| `mlops_server_errors_total` | route, status | every 5xx the server answered, any route |
| `mlops_traffic_percent` | model_name, model_version, role | percent of requests routed to a version |
| `mlops_drift_share` | model_name | share of the features that drifted, last drift measurement |
| `mlops_drifted_features` | model_name | how many features drifted, last drift measurement |
| `mlops_drift_share_limit` | model_name | the spec's `gates.max_drift_share` |
| `mlops_drift_measured_timestamp_seconds` | model_name | Unix time of the last drift measurement |

`mlops_traffic_percent` is read from the traffic state at scrape time: role `canary` for the
latest version while it is not the rolled-out one, `stable` for the rolled-out one.
The drift gauges are written by the drift measurement (`drift_sensor`, `drift_report`) into
`MLOPS_HOME/metrics/drift.prom` (`lib/metrics_textfile`); `/metrics` appends every `*.prom` file
of that folder, as node_exporter's textfile collector does.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# 0.025 is the latency SLO's threshold (deploy/prometheus/mlops-latency.yml): keep it a bucket
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
PROBABILITY_EDGES = tuple(round(0.05 * i, 2) for i in range(1, 21))  # upper edges 0.05 .. 1.00
BUCKET_LABELS = tuple(f"{edge:.2f}" for edge in PROBABILITY_EDGES)
PROTOCOLS = ("v1", "v2")

log = logging.getLogger("mlops_platform.serving")


def probability_bucket(probability: float) -> int:
    return min(bisect.bisect_left(PROBABILITY_EDGES, probability), len(PROBABILITY_EDGES) - 1)


class ServerMetrics:
    """The metric families; `for_version` pre-binds the children one version uses."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        labels = ("model_name", "model_version")
        self.requests = Counter(
            "mlops_requests", "Requests a model version answered or failed", (*labels, "protocol")
        )
        self.errors = Counter("mlops_request_errors", "Routed requests that failed with a 5xx", labels)
        self.latency = Histogram(
            "mlops_request_latency_seconds",
            "Request latency per model version",
            labels,
            buckets=LATENCY_BUCKETS,
        )
        self.model_latency = Histogram(
            "mlops_model_latency_seconds",
            "Duration of one model call (a micro-batch) per model version",
            labels,
            buckets=LATENCY_BUCKETS,
        )
        self.predictions = Counter(
            "mlops_predictions", "Rows scored, by upper edge of the probability bucket", (*labels, "bucket")
        )
        self.invalid = Counter("mlops_invalid_requests", "Requests refused before routing", ("status",))
        self.server_errors = Counter(
            "mlops_server_errors", "Responses with a 5xx status, by route template", ("route", "status")
        )

    def for_version(self, model_name: str, version: str) -> VersionInstruments:
        return VersionInstruments(
            requests={p: self.requests.labels(model_name, version, p) for p in PROTOCOLS},
            errors=self.errors.labels(model_name, version),
            latency=self.latency.labels(model_name, version),
            model_latency=self.model_latency.labels(model_name, version),
            buckets=[self.predictions.labels(model_name, version, b) for b in BUCKET_LABELS],
        )

    @staticmethod
    def exposition(*collectors: Any) -> tuple[bytes, str]:
        """The workers' series summed, then those of `collectors` (`TrafficCollector`,
        `TextfileCollector`), in one exposition."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

        registry = CollectorRegistry(auto_describe=False)
        multiprocess.MultiProcessCollector(registry)
        for collector in collectors:
            registry.register(collector)
        return generate_latest(registry), CONTENT_TYPE_LATEST


class TrafficCollector:
    """`mlops_traffic_percent{model_name, model_version, role}` from a traffic state (anything
    with `shares()` and `canary_version`, or None before a version is rolled out)."""

    def __init__(self, model_name: str, state: Any) -> None:
        self.model_name = model_name
        self.state = state

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "mlops_traffic_percent",
            "Percent of requests the split sends to a loaded version, by role (stable or canary)",
            labels=("model_name", "model_version", "role"),
        )
        if self.state is not None:
            canary = self.state.canary_version
            for version, percent in self.state.shares().items():
                role = "canary" if version == canary else "stable"
                family.add_metric([self.model_name, str(version), role], float(percent))
        yield family


class TextfileCollector:
    """The metric families of the `*.prom` files in a folder (`lib/metrics_textfile`); a file that
    cannot be read is left out and logged (once until the problem changes)."""

    _reported: frozenset[str] = frozenset()

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self) -> Iterator[Any]:
        from mlops_platform.lib.metrics_textfile import read_textfiles

        families, problems = read_textfiles(self.directory)
        if frozenset(problems) != TextfileCollector._reported:
            TextfileCollector._reported = frozenset(problems)
            for problem in problems:
                log.warning("metrics text file left out of /metrics: %s", problem)
        yield from families


@dataclass
class VersionInstruments:
    requests: dict[str, Any]
    errors: Any
    latency: Any
    model_latency: Any
    buckets: list[Any]

    def observe_predictions(self, probabilities: np.ndarray) -> None:
        if len(probabilities) == 1:
            self.buckets[probability_bucket(float(probabilities[0]))].inc()
            return
        indices = np.minimum(
            np.searchsorted(PROBABILITY_EDGES, probabilities, side="left"), len(PROBABILITY_EDGES) - 1
        )
        for bucket, count in enumerate(np.bincount(indices, minlength=len(PROBABILITY_EDGES))):
            if count:
                self.buckets[bucket].inc(int(count))
