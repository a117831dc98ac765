"""What a hand-written predictor does with V1 `instances`: dict lookups into two tensors.

Shared by the peer servers (KServe's ModelServer, bare FastAPI). No validation, no metrics,
no logging: each instance is a dict of feature values; missing numeric values become NaN,
unknown or missing categories index 0, like the artifact's own encoder.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from mlops_platform.lib.model_artifact import load_artifact


class DictScorer:
    """The TorchScript artifact at `path`, scoring lists of feature dicts."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._load()

    def _load(self) -> None:
        model = load_artifact(Path(self.path))
        self.module = model.module
        self.threshold = model.threshold
        self.numeric = list(model.encoder.numeric)
        self.categorical = list(model.encoder.categorical)
        self.lookups = [{v: i + 1 for i, v in enumerate(vocab)} for vocab in model.encoder.vocabularies]

    # A TorchScript module does not pickle; KServe's multi-worker server pickles the model
    # into each spawned worker, so the worker loads the file again instead.
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._load()

    def predict(self, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        numeric = torch.tensor(
            [[math.nan if row.get(n) is None else float(row[n]) for n in self.numeric] for row in instances],
            dtype=torch.float32,
        )
        categorical = torch.tensor(
            [
                [lookup.get(row.get(n), 0) for n, lookup in zip(self.categorical, self.lookups, strict=True)]
                for row in instances
            ],
            dtype=torch.int64,
        )
        with torch.inference_mode():
            probabilities = self.module.predict_proba(numeric, categorical).tolist()
        return [{"probability": p, "prediction": int(p >= self.threshold)} for p in probabilities]
