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

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.lib.ground_truth import request_id_for
from mlops_platform.lib.landing import Shift, apply_shifts, load_source


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
        latencies = np.array(self.latencies_ms) if self.latencies_ms else np.array([math.nan])
        return {
            "sent": self.sent,
            "seconds": round(self.seconds, 2),
            "rate_per_s": round(self.sent / self.seconds, 1) if self.seconds else 0.0,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "versions": dict(sorted(self.versions.items())),
            "p50_ms": round(float(np.percentile(latencies, 50)), 2),
            "p99_ms": round(float(np.percentile(latencies, 99)), 2),
            "first_errors": self.errors[:3],
        }


def send_traffic(
    url: str,
    model_name: str,
    instances: list[tuple[int, dict]],
    rate: float,
    duration: float,
    concurrency: int = 4,
) -> TrafficReport:
    """POST one instance per request to `url`'s V1 endpoint, `rate` per second for `duration` s,
    each with a request id that names its source row (`ground_truth.request_id_for`).

    Requests are scheduled at fixed times (`start + i / rate`) and shared by `concurrency`
    client threads, so a slow server lowers the achieved rate instead of piling requests up.
    """
    import httpx

    if rate <= 0 or duration <= 0 or not instances:
        raise ValueError("rate and duration must be positive, and there must be rows to send")
    endpoint = f"{url.rstrip('/')}/v1/models/{model_name}:predict"
    total = int(rate * duration)
    report = TrafficReport()
    lock = threading.Lock()
    next_index = iter(range(total))
    start = time.monotonic()

    def client_loop() -> None:
        with httpx.Client(timeout=30) as client:
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sent_at = time.perf_counter()
                try:
                    position, instance = instances[i % len(instances)]
                    answer = client.post(
                        endpoint,
                        json={"instances": [instance]},
                        headers={"x-request-id": request_id_for(position)},
                    )
                except httpx.HTTPError as exc:
                    with lock:
                        report.sent += 1
                        report.statuses["connection-error"] += 1
                        report.errors.append(repr(exc))
                    continue
                elapsed = (time.perf_counter() - sent_at) * 1000
                with lock:
                    report.sent += 1
                    report.statuses[answer.status_code] += 1
                    report.latencies_ms.append(elapsed)
                    if answer.status_code == 200:
                        report.versions[answer.headers.get("x-model-version", "?")] += 1
                    else:
                        report.errors.append(answer.text[:300])

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(max(1, concurrency))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report.seconds = time.monotonic() - start
    return report
