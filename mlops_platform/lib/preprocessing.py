"""The feature encoder: statistics and vocabularies fitted on the training split only."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

UNKNOWN_INDEX = 0  # categories never seen in training (and the padding row of each embedding)


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
        columns = []
        for name, vocabulary in zip(self.categorical, self.vocabularies, strict=True):
            lookup = {value: i + 1 for i, value in enumerate(vocabulary)}
            columns.append(frame[name].astype(str).map(lookup).fillna(UNKNOWN_INDEX).to_numpy(dtype=np.int64))
        if not columns:
            return np.zeros((len(frame), 0), dtype=np.int64)
        return np.stack(columns, axis=1)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FeatureEncoder:
        return cls(**json.loads(text))
