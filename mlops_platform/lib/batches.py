"""Turn a landed text batch into typed records with a stable id and an event timestamp."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pandas as pd

from mlops_platform.datasets.spec import DatasetSpec

SECONDS_PER_DAY = 86_400
_UNIT_SEPARATOR = "\x1f"

_PANDAS_TYPES = {"integer": "Int64", "float": "float64", "categorical": "string"}


def record_ids(text: pd.DataFrame, spec: DatasetSpec, day: str) -> pd.Series:
    """Stable ids: the spec's id column, or a hash of dataset, day, position and content.

    The same landing file always yields the same ids, so re-ingesting a day replaces its
    records instead of duplicating them; the position keeps exact duplicate rows apart.
    """
    if spec.source.id_column is not None:
        return text[spec.source.id_column].astype("string")
    columns = [c for c in spec.columns if c in text.columns]
    cells = text[columns].astype("string").fillna("\x00").itertuples(index=False, name=None)
    ids = [
        hashlib.sha256(f"{spec.name}|{day}|{position}|{_UNIT_SEPARATOR.join(row)}".encode()).hexdigest()[:24]
        for position, row in enumerate(cells)
    ]
    return pd.Series(ids, index=text.index, dtype="string")


def event_timestamps(text: pd.DataFrame, spec: DatasetSpec, day: str) -> pd.Series:
    """The spec's timestamp column (UTC), or the landing day spread evenly by row position."""
    if spec.source.timestamp_column is not None:
        return pd.to_datetime(text[spec.source.timestamp_column], errors="coerce", utc=True)
    start = pd.Timestamp(dt.date.fromisoformat(day), tz="UTC")
    offsets = np.arange(len(text)) * (SECONDS_PER_DAY / max(len(text), 1))
    return pd.Series(start + pd.to_timedelta(offsets, unit="s"), index=text.index)


def typed_columns(text: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Each spec column in its declared type; text that does not parse becomes missing.

    Parse failures are not lost: the format expectations run on the text itself and
    quarantine those rows with the offending value.
    """
    out = {}
    for name, column in spec.columns.items():
        if name not in text.columns:
            values = pd.Series(pd.NA, index=text.index)
        elif column.is_numeric:
            values = pd.to_numeric(text[name], errors="coerce")
            if column.type == "integer":
                values = values.where(values == values.round())
        elif column.type == "timestamp":
            values = pd.to_datetime(text[name], errors="coerce", utc=True)
        else:
            values = text[name]
        out[name] = values.astype(_PANDAS_TYPES.get(column.type, "datetime64[ns, UTC]"))
    return pd.DataFrame(out, index=text.index)


def prepare_batch(text: pd.DataFrame, spec: DatasetSpec, day: str) -> pd.DataFrame:
    """Typed records of one landed day, with `record_id`, `event_timestamp`, `ingestion_date`."""
    text = text.reset_index(drop=True)
    typed = typed_columns(text, spec)
    typed.insert(0, "ingestion_date", pd.Timestamp(dt.date.fromisoformat(day)))
    typed.insert(0, "event_timestamp", event_timestamps(text, spec, day))
    typed.insert(0, "record_id", record_ids(text, spec, day))
    return typed


def content_hash(frame: pd.DataFrame) -> str:
    """A hash of a frame's schema and values: the data version of what it holds."""
    digest = hashlib.sha256("|".join(f"{c}:{t}" for c, t in frame.dtypes.astype(str).items()).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]
