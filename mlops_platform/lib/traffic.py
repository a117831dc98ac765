"""Simulated client traffic: real V1 requests at a steady rate, drawn from held-out rows.

The rows come from the end of the demo source (its shuffled order), which the landing
days reach only after the source's last simulated day, so the model never trained on them.
`--shift` changes them exactly as `simulate-batches` changes landed data (same `Shift`), so
served traffic can drift the way landed data does.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops_platform.datasets.simulation import Shift
from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.lib.ground_truth import request_id_for
from mlops_platform.lib.landing import apply_shifts, load_source

CONNECTION_ERROR = "connection-error"  # the status of a request that got no HTTP answer


def held_out_instances(
    spec: DatasetSpec, rows: int, shifts: list[Shift] | None = None, seed: int = 0
) -> list[tuple[int, dict]]:
    """`rows` (source position, feature dict typed by the spec) from the end of the shuffled source.

    The position names the row, so its ground truth can be delivered later (`lib/ground_truth.py`).
    """
    source = load_source(spec)
    batch = source.iloc[len(source) - min(rows, len(source)) :]
    if shifts:
        batch = apply_shifts(batch, shifts, spec, seed=seed)
    instances = []
    for position, record in zip(batch.index, batch[spec.features.all].to_dict("records"), strict=True):
        instance: dict[str, Any] = {}
        for name, value in record.items():
            if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
                instance[name] = None
            elif spec.columns[name].type == "integer":
                instance[name] = int(float(value))
            elif spec.columns[name].type == "float":
                instance[name] = float(value)
            else:
                instance[name] = str(value)
        instances.append((int(position), instance))
    return instances


@dataclass
class TrafficReport:
    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    versions: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Counts by status (HTTP codes, and `connection-error` for requests that got no answer),
        versions and latency of the answered requests."""
        latencies = np.array(self.latencies_ms) if self.latencies_ms else np.array([math.nan])
        return {
            "sent": self.sent,
            "seconds": round(self.seconds, 2),
            "rate_per_s": round(self.sent / self.seconds, 1) if self.seconds else 0.0,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items(), key=lambda kv: str(kv[0]))},
            "connection_errors": self.statuses.get(CONNECTION_ERROR, 0),
            "versions": dict(sorted(self.versions.items())),
            "p50_ms": round(float(np.percentile(latencies, 50)), 2),
            "p99_ms": round(float(np.percentile(latencies, 99)), 2),
            "first_errors": self.errors[:3],
        }


class TrafficSender:
    """POST one instance per request to a server's V1 endpoint at a steady `rate` from
    `concurrency` background threads, each request with an id naming its source row
    (`ground_truth.request_id_for`), until `limit` requests were sent or `stop()`.

    Requests are scheduled at fixed times (`start + i / rate`), so a slow server lowers the
    achieved rate instead of piling requests up. `switch()` swaps the rows mid-stream (traffic
    that starts to drift) and returns the report of the phase that ended.
    """

    def __init__(
        self,
        url: str,
        model_name: str,
        instances: list[tuple[int, dict]],
        rate: float,
        concurrency: int = 4,
        limit: int | None = None,
    ) -> None:
        if rate <= 0 or not instances:
            raise ValueError("rate must be positive, and there must be rows to send")
        self.endpoint = f"{url.rstrip('/')}/v1/models/{model_name}:predict"
        self.rate, self.limit = rate, limit
        self._instances = instances
        self._report = TrafficReport()
        self._lock = threading.Lock()
        self._next = 0
        self._stopped = threading.Event()
        self._threads = [
            threading.Thread(target=self._client_loop, daemon=True) for _ in range(max(1, concurrency))
        ]
        self._start = self._phase_start = 0.0

    def start(self) -> TrafficSender:
        self._start = self._phase_start = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def switch(self, instances: list[tuple[int, dict]]) -> TrafficReport:
        """Send `instances` from now on; returns the report of the rows sent so far."""
        with self._lock:
            ended, self._report, self._instances = self._report, TrafficReport(), instances
            now = time.monotonic()
            ended.seconds, self._phase_start = now - self._phase_start, now
        return ended

    @property
    def phase_seconds(self) -> float:
        """Seconds since `start()` or the last `switch()`."""
        return time.monotonic() - self._phase_start

    def wait(self) -> TrafficReport:
        """Wait until `limit` requests were sent (or `stop()`); the last phase's report."""
        for thread in self._threads:
            thread.join()
        with self._lock:
            self._report.seconds = time.monotonic() - self._phase_start
            return self._report

    def stop(self) -> TrafficReport:
        self._stopped.set()
        return self.wait()

    def _take(self) -> tuple[int, tuple[int, dict]] | None:
        with self._lock:
            i = self._next
            if self._stopped.is_set() or (self.limit is not None and i >= self.limit):
                return None
            self._next += 1
            return i, self._instances[i % len(self._instances)]

    def _record(self, status: int | str, version: str | None, error: str | None, ms: float | None) -> None:
        with self._lock:
            report = self._report
            report.sent += 1
            report.statuses[status] += 1
            if ms is not None:
                report.latencies_ms.append(ms)
            if version is not None:
                report.versions[version] += 1
            if error is not None:
                report.errors.append(error)

    def _client_loop(self) -> None:
        import httpx

        with httpx.Client(timeout=30) as client:
            while (taken := self._take()) is not None:
                i, (position, instance) = taken
                delay = self._start + i / self.rate - time.monotonic()
                if delay > 0 and self._stopped.wait(delay):
                    return
                sent_at = time.perf_counter()
                try:
                    answer = client.post(
                        self.endpoint,
                        json={"instances": [instance]},
                        headers={"x-request-id": request_id_for(position)},
                    )
                except httpx.HTTPError as exc:
                    self._record(CONNECTION_ERROR, None, repr(exc), None)
                    continue
                ms = (time.perf_counter() - sent_at) * 1000
                if answer.status_code == 200:
                    self._record(200, answer.headers.get("x-model-version", "?"), None, ms)
                else:
                    self._record(answer.status_code, None, answer.text[:300], ms)


def send_traffic(
    url: str,
    model_name: str,
    instances: list[tuple[int, dict]],
    rate: float,
    duration: float,
    concurrency: int = 4,
) -> TrafficReport:
    """`rate` requests per second for `duration` seconds (see `TrafficSender`)."""
    if duration <= 0:
        raise ValueError("duration must be positive")
    sender = TrafficSender(url, model_name, instances, rate, concurrency, limit=int(rate * duration))
    return sender.start().wait()
