"""Turn a landed text batch into typed records with a stable id and an event timestamp."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mlops_platform.datasets.csv_text import arrow_text, has_number_format, number_format, parse_timestamps
from mlops_platform.datasets.spec import DatasetSpec

if TYPE_CHECKING:
    pass

SECONDS_PER_DAY = 86_400

_PANDAS_TYPES = {"integer": "Int64", "float": "float64", "categorical": "string"}


def record_ids(text: pd.DataFrame, spec: DatasetSpec, day: str, ragged: pd.Series | None = None) -> pd.Series:
    """Stable ids: the spec's id column, or a hash of dataset, day, position and content.

    The same landing file always yields the same ids, so re-ingesting a day replaces its
    records instead of duplicating them; the position keeps exact duplicate rows apart.
    A record without its own id (a ragged line, an empty id cell) gets the hash, taken over
    its text as landed.
    """
    import duckdb
    import pyarrow as pa

    columns = [c for c in spec.columns if c in text.columns]
    cells = {f"c{i}": arrow_text(text[c]) for i, c in enumerate(columns)}
    missing = pa.nulls(len(text), pa.string())
    cells["ragged"] = missing if ragged is None else pa.array(ragged.astype("string"), type=pa.string())
    cells["position"] = pa.array(np.arange(len(text), dtype=np.int64))
    # The hash of f"{dataset}|{day}|{position}|{row}", row = the cells (a missing one as NUL)
    # joined by the unit separator, or "ragged|<line>"; computed by DuckDB on both cores.
    row = " || chr(31) || ".join(f"coalesce(c{i}, chr(0))" for i in range(len(columns))) or "''"
    with duckdb.connect() as con:
        con.register("cells", pa.table(cells))
        digests = con.execute(
            "SELECT substr(sha256(? || CAST(position AS VARCHAR) || '|' || "
            f"CASE WHEN ragged IS NULL THEN {row} ELSE 'ragged|' || ragged END), 1, 24) AS id "
            "FROM cells ORDER BY position",
            [f"{spec.name}|{day}|"],
        ).to_arrow_table()
    hashed = pd.Series(digests.column("id").to_pylist(), index=text.index, dtype="string")
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
            values = _integers(text[name])
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


def _integers(cells: pd.Series) -> pd.Series:
    """Cells of the integer format as Int64 (sign, leading zeros and a `.0` tail allowed);
    missing where a cell is absent or not of that format."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = arrow_text(cells)
    valid = number_format(text, "integer")
    digits = pc.replace_substring_regex(pc.utf8_trim(text, " \t"), r"^\+|\..*$", "")
    numbers = pc.cast(pc.if_else(valid, digits, pa.scalar(None, pa.string())), pa.int64())
    return pd.Series(numbers.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get), index=cells.index)


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
