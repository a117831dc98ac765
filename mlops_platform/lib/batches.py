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

# What a numeric cell must look like to be typed: ASCII digits only, an optional sign,
# blanks (space, tab) around. An integer has at most 18 significant digits (so it fits
# int64) and may end in `.0`; a float is a decimal with an optional exponent (one that
# overflows to infinity is caught by the range rule). `\Z`: no trailing newline either.
NUMBER_PATTERNS = {
    "integer": r"^[ \t]*[-+]?0*[0-9]{1,18}(?:\.0*)?[ \t]*\Z",
    "float": r"^[ \t]*[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?[ \t]*\Z",
}


def has_number_format(cells: pd.Series, kind: str) -> pd.Series:
    """True where a cell is present and matches the number pattern of `kind`."""
    return cells.notna() & cells.astype(str).str.contains(NUMBER_PATTERNS[kind])


def parse_timestamps(cells: pd.Series) -> pd.Series:
    """ISO 8601 text as UTC timestamps; anything else becomes missing."""
    return pd.to_datetime(cells, format="ISO8601", errors="coerce", utc=True)


def record_ids(text: pd.DataFrame, spec: DatasetSpec, day: str, ragged: pd.Series | None = None) -> pd.Series:
    """Stable ids: the spec's id column, or a hash of dataset, day, position and content.

    The same landing file always yields the same ids, so re-ingesting a day replaces its
    records instead of duplicating them; the position keeps exact duplicate rows apart.
    A record without its own id (a ragged line, an empty id cell) gets the hash, taken over
    its text as landed.
    """
    columns = [c for c in spec.columns if c in text.columns]
    content = [
        _UNIT_SEPARATOR.join(row)
        for row in text[columns].astype("string").fillna("\x00").itertuples(index=False, name=None)
    ]
    if ragged is not None:
        content = [c if pd.isna(r) else f"ragged|{r}" for c, r in zip(content, ragged, strict=True)]
    hashed = pd.Series(
        [
            hashlib.sha256(f"{spec.name}|{day}|{position}|{row}".encode()).hexdigest()[:24]
            for position, row in enumerate(content)
        ],
        index=text.index,
        dtype="string",
    )
    id_column = spec.source.id_column
    if id_column is None or id_column not in text.columns:
        return hashed
    own = text[id_column].astype("string")
    return own.where(own.notna(), hashed)


def event_timestamps(text: pd.DataFrame, spec: DatasetSpec, day: str) -> pd.Series:
    """The spec's timestamp column (UTC), or the landing day spread evenly by row position."""
    if spec.source.timestamp_column is not None:
        if spec.source.timestamp_column not in text.columns:
            return pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
        return parse_timestamps(text[spec.source.timestamp_column])
    start = pd.Timestamp(dt.date.fromisoformat(day), tz="UTC")
    offsets = np.arange(len(text)) * (SECONDS_PER_DAY / max(len(text), 1))
    return pd.Series(start + pd.to_timedelta(offsets, unit="s"), index=text.index)


def typed_columns(text: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Each spec column in its declared type; text that does not parse becomes missing.

    Parse failures are not lost: the row rules (`lib/expectations.py`) run on the text
    itself and quarantine those rows with the offending value.
    """
    out = {}
    for name, column in spec.columns.items():
        if name not in text.columns:
            values = pd.Series(pd.NA, index=text.index)
        elif column.type == "integer":
            cells = text[name][has_number_format(text[name], "integer")]
            values = pd.Series(pd.NA, index=text.index, dtype="Int64")
            values[cells.index] = [int(c.strip().split(".")[0]) for c in cells]
        elif column.type == "float":
            cells = text[name][has_number_format(text[name], "float")]
            values = pd.Series(np.nan, index=text.index, dtype="float64")
            values[cells.index] = [float(c) for c in cells]
        elif column.type == "timestamp":
            values = parse_timestamps(text[name])
        else:
            values = text[name]
        out[name] = values.astype(_PANDAS_TYPES.get(column.type, "datetime64[ns, UTC]"))
    return pd.DataFrame(out, index=text.index)


def prepare_batch(
    text: pd.DataFrame, spec: DatasetSpec, day: str, ragged: pd.Series | None = None
) -> pd.DataFrame:
    """Typed records of one landed day, with `record_id`, `event_timestamp`, `ingestion_date`."""
    text = text.reset_index(drop=True)
    if ragged is not None:
        ragged = ragged.reset_index(drop=True)
    typed = typed_columns(text, spec)
    typed.insert(0, "ingestion_date", pd.Timestamp(dt.date.fromisoformat(day)))
    typed.insert(0, "event_timestamp", event_timestamps(text, spec, day))
    typed.insert(0, "record_id", record_ids(text, spec, day, ragged))
    return typed


def content_hash(frame: pd.DataFrame) -> str:
    """A hash of a frame's schema and values: the data version of what it holds."""
    digest = hashlib.sha256("|".join(f"{c}:{t}" for c, t in frame.dtypes.astype(str).items()).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]
