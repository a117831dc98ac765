"""Held-out splits that never move: a record's split is a hash of its id."""

from __future__ import annotations

import hashlib

import pandas as pd

from mlops_platform.datasets.spec import SplitSpec

SPLITS = ("train", "validation", "test")


def split_of(record_id: str, split: SplitSpec) -> str:
    """`test`, `validation` or `train` from a uniform hash of the id (stable across retrains)."""
    unit = int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:8], "big") / 2**64
    if unit < split.test:
        return "test"
    if unit < split.test + split.validation:
        return "validation"
    return "train"


def assign_splits(record_ids: pd.Series, split: SplitSpec) -> pd.Series:
    return record_ids.map(lambda rid: split_of(str(rid), split)).astype("string")


def split_summary(frame: pd.DataFrame, label_column: str = "label") -> dict[str, dict[str, float]]:
    """Rows and positive rate per split."""
    out = {}
    for name in SPLITS:
        part = frame[frame["split"] == name]
        out[name] = {
            "rows": len(part),
            "positive_rate": round(float(part[label_column].mean()), 4) if len(part) else 0.0,
        }
    return out
