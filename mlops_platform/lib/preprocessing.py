"""The feature encoder: statistics and vocabularies fitted on the training split only."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

UNKNOWN_INDEX = 0  # categories never seen in training (and the padding row of each embedding)
# How the dbt `features` model writes a missing categorical value; the training data carries it,
# so at scoring time a missing value (None, NaN) means this category, not an unknown one.
MISSING_CATEGORY = "__missing__"
_MISSING_AS_STR = frozenset({"nan", "None", "NaT", "<NA>"})  # what astype(str) makes of missing values


@dataclass(frozen=True)
class FeatureEncoder:
    """Turns feature columns into the two arrays the network reads.

    Numeric columns pass through as float32 (missing stays NaN: the network standardizes
    with `means`/`stds` and adds a missing indicator). Categorical values become indices
    into `vocabularies` (1-based; 0 = unknown).
    """

    numeric: list[str]
    categorical: list[str]
    means: list[float]
    stds: list[float]
    vocabularies: list[list[str]]

    @classmethod
    def fit(cls, train: pd.DataFrame, numeric: list[str], categorical: list[str]) -> FeatureEncoder:
        values = train[numeric].astype("float64")
        means = values.mean().fillna(0.0)
        stds = values.std(ddof=0).fillna(1.0).replace(0.0, 1.0)
        vocabularies = [sorted(train[c].dropna().astype(str).unique().tolist()) for c in categorical]
        return cls(
            numeric=list(numeric),
            categorical=list(categorical),
            means=[float(m) for m in means],
            stds=[float(s) for s in stds],
            vocabularies=vocabularies,
        )

    @classmethod
    def fit_sql(
        cls, con: duckdb.DuckDBPyConnection, rows: str, numeric: Sequence[str], categorical: Sequence[str]
    ) -> FeatureEncoder:
        """`fit` from SQL aggregates over the query `rows` (one scan; no row reaches Python).

        Equal to `fit` on the same rows: NaN counts as missing, the standard deviation is the
        population one, and vocabularies hold each distinct non-missing value as text, sorted.
        """
        values = [f"CAST({quote(name)} AS DOUBLE)" for name in numeric]
        aggregates = [
            f"{function}({value}) FILTER (WHERE NOT isnan({value}))"
            for value in values
            for function in ("avg", "stddev_pop")
        ] + [
            f"list(DISTINCT CAST({quote(name)} AS VARCHAR)) FILTER (WHERE {quote(name)} IS NOT NULL)"
            for name in categorical
        ]
        found = con.sql(f"SELECT {', '.join(aggregates)} FROM ({rows})").fetchall()[0] if aggregates else ()
        pairs = [found[2 * j : 2 * j + 2] for j in range(len(numeric))]
        return cls(
            numeric=list(numeric),
            categorical=list(categorical),
            means=[0.0 if mean is None else float(mean) for mean, _ in pairs],
            stds=[1.0 if std is None or std == 0.0 else float(std) for _, std in pairs],
            vocabularies=[sorted(found[2 * len(numeric) + j] or []) for j in range(len(categorical))],
        )

    def record_batch_arrays(self, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        """`numeric_array` and `category_indices` of an Arrow batch, without pandas.

        Numeric columns: any Arrow number type (null = NaN). Categorical columns: strings, or
        dictionary arrays of strings (as a Parquet reader returns them with `read_dictionary`),
        whose few distinct values are looked up once per batch.
        """
        numeric = np.empty((batch.num_rows, len(self.numeric)), dtype=np.float32)
        for j, name in enumerate(self.numeric):
            numeric[:, j] = batch.column(name).to_numpy(zero_copy_only=False)
        categorical = np.empty((batch.num_rows, len(self.categorical)), dtype=np.int64)
        for j, (name, vocabulary) in enumerate(zip(self.categorical, self.vocabularies, strict=True)):
            categorical[:, j] = _arrow_indices(batch.column(name), vocabulary)
        return numeric, categorical

    def numeric_array(self, frame: pd.DataFrame) -> np.ndarray:
        if not self.numeric:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return frame[self.numeric].astype("float64").to_numpy(dtype=np.float32, na_value=np.nan)

    def category_indices(self, frame: pd.DataFrame) -> np.ndarray:
        """Index of `str(value)` in each vocabulary; unknown values get UNKNOWN_INDEX, missing ones
        (None, NaN) the index of MISSING_CATEGORY (UNKNOWN_INDEX when training saw no missing value).

        A column of strings is factorized (one hash per row) and only its few distinct values
        are looked up: several times faster than mapping every row's string. Other columns
        (numbers, mixed objects, categoricals), and vocabularies that hold what `astype(str)`
        makes of a missing value ("nan", "None", ...), take the row-by-row `astype(str)` path.
        """
        indices = np.empty((len(frame), len(self.categorical)), dtype=np.int64)
        for j, (name, vocabulary) in enumerate(zip(self.categorical, self.vocabularies, strict=True)):
            lookup = {value: i + 1 for i, value in enumerate(vocabulary)}
            column = frame[name]
            missing = lookup.get(MISSING_CATEGORY, UNKNOWN_INDEX)
            if (
                (column.dtype == object or isinstance(column.dtype, pd.StringDtype))
                and _MISSING_AS_STR.isdisjoint(lookup)
                and pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty")
            ):
                codes, distinct = pd.factorize(column.to_numpy() if column.dtype == object else column)
                table = [lookup.get(value, UNKNOWN_INDEX) for value in distinct]
                indices[:, j] = np.array([*table, missing], dtype=np.int64)[codes]  # code -1: missing
            else:
                indices[:, j] = _as_text(column).map(lookup).fillna(UNKNOWN_INDEX).to_numpy(dtype=np.int64)
                indices[column.isna().to_numpy(), j] = missing
        return indices

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FeatureEncoder:
        return cls(**json.loads(text))


def quote(identifier: str) -> str:
    """A SQL identifier, quoted."""
    return '"' + identifier.replace('"', '""') + '"'


def _arrow_indices(column: pa.Array, vocabulary: list[str]) -> np.ndarray:
    """1-based vocabulary indices of an Arrow string column (see `category_indices`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    missing = vocabulary.index(MISSING_CATEGORY) + 1 if MISSING_CATEGORY in vocabulary else UNKNOWN_INDEX
    if pa.types.is_dictionary(column.type):  # look up the few dictionary values in Python
        lookup = {value: i + 1 for i, value in enumerate(vocabulary)}
        table = [
            missing if v is None else lookup.get(v, UNKNOWN_INDEX) for v in column.dictionary.to_pylist()
        ]
        indices = column.indices.fill_null(len(table)) if column.null_count else column.indices
        return np.array([*table, missing], dtype=np.int64)[indices.to_numpy()]  # a null points past the end
    found = pc.index_in(column, value_set=pa.array(vocabulary, type=column.type))
    indices = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64) + 1
    if column.null_count:
        indices[column.is_null().to_numpy(zero_copy_only=False)] = missing
    return indices


def _as_text(column: pd.Series) -> pd.Series:
    """Category values as text: whole floats as their integer (`2.0` -> `2`: pandas reads a column
    of integer codes with a missing value as floats), anything else as `astype(str)` writes it."""
    if not pd.api.types.is_float_dtype(column):
        return column.astype(str)
    values = column.to_numpy(dtype=np.float64)
    whole = np.isfinite(values) & (values == np.round(values)) & (np.abs(values) < 2**53)
    text = column.astype(str)
    text[whole] = values[whole].astype(np.int64).astype(str)
    return text
