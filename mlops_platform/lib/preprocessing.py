"""The feature encoder: statistics and vocabularies fitted on the training split only."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

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
                indices[:, j] = column.astype(str).map(lookup).fillna(UNKNOWN_INDEX).to_numpy(dtype=np.int64)
                indices[column.isna().to_numpy(), j] = missing
        return indices

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FeatureEncoder:
        return cls(**json.loads(text))
