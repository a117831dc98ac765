"""Delayed ground truth: labels for requests served earlier, delivered as files later.

Simulated clients (`lib/traffic.py`) send held-out rows of the demo source with request ids
`heldout-<source position>-<random>`; once "the outcome is known", `deliver_labels` looks the
position up in the source and writes `<truth_dir>/<UTC timestamp>.csv` (request_id, label) for
every logged request not labelled yet. `live_performance` joins these with `inference_log`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pandas as pd

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.lib.files import atomic_target
from mlops_platform.lib.landing import load_source

PREFIX = "heldout-"


def request_id_for(position: int) -> str:
    return f"{PREFIX}{position}-{uuid.uuid4().hex[:12]}"


def source_position(request_id: str) -> int | None:
    if not request_id.startswith(PREFIX):
        return None
    head, _, _ = request_id[len(PREFIX) :].partition("-")
    return int(head) if head.isdigit() else None


def read_ground_truth(truth_dir: Path) -> pd.DataFrame:
    files = sorted(Path(truth_dir).glob("*.csv"))
    if not files:
        return pd.DataFrame({"request_id": pd.Series(dtype=str), "label": pd.Series(dtype=int)})
    return pd.concat(
        [pd.read_csv(f, dtype={"request_id": str, "label": int}) for f in files], ignore_index=True
    )


def deliver_labels(spec: DatasetSpec, request_ids: list[str], truth_dir: Path) -> Path | None:
    """Write the labels of the `request_ids` that name a source row and have none yet."""
    known = set(read_ground_truth(truth_dir)["request_id"])
    wanted = sorted({r for r in request_ids if r not in known and source_position(r) is not None})
    if not wanted:
        return None
    source = load_source(spec)
    positions = [source_position(r) for r in wanted]
    labels = (source[spec.label.column].iloc[positions] == spec.label.positive_class).astype(int).to_numpy()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = Path(truth_dir) / f"{stamp}.csv"
    with atomic_target(target) as tmp:
        pd.DataFrame({"request_id": wanted, "label": labels}).to_csv(tmp, index=False)
    return target
