"""The model artifact: one TorchScript file that needs no code of this project to load.

Why TorchScript: the network and its numeric preprocessing (means, standard deviations,
missing indicators) compile into the file, and the category vocabularies, feature order and
decision threshold travel in the same file as `extra_files`. `torch.jit.load` alone
restores a scorer; the MLflow `pt2` export (torch.export) would need an input example per
shape and loads back as a bare GraphModule without the vocabularies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mlops_platform.lib.files import atomic_target
from mlops_platform.lib.preprocessing import FeatureEncoder
from mlops_platform.lib.tabular_net import TabularNet

ENCODER_FILE = "encoder.json"
META_FILE = "model_meta.json"


def save_artifact(net: TabularNet, encoder: FeatureEncoder, meta: dict, path: Path) -> Path:
    """Script the network and write it with the encoder and `meta` (threshold, label, ...)."""
    scripted = torch.jit.script(net.cpu().eval())
    with atomic_target(Path(path)) as tmp:
        torch.jit.save(
            scripted,
            str(tmp),
            _extra_files={ENCODER_FILE: encoder.to_json(), META_FILE: json.dumps(meta, sort_keys=True)},
        )
    return Path(path)


@dataclass
class ScoringModel:
    """A loaded artifact: scores DataFrames with the spec's feature columns."""

    module: torch.jit.ScriptModule
    encoder: FeatureEncoder
    meta: dict

    @property
    def threshold(self) -> float:
        return float(self.meta["threshold"])

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        with torch.no_grad():
            numeric = torch.from_numpy(self.encoder.numeric_array(frame))
            categorical = torch.from_numpy(self.encoder.category_indices(frame))
            return self.module.predict_proba(numeric, categorical).numpy().astype(np.float64)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(frame) >= self.threshold).astype(np.int64)


def load_artifact(path: Path) -> ScoringModel:
    files = {ENCODER_FILE: "", META_FILE: ""}
    module = torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    # Freezing inlines the weights as constants: same outputs, about twice the rows per second
    # on one thread for large batches (measured: 1.6M -> 3.0M rows/s at 65,536 rows).
    frozen = torch.jit.freeze(module.eval(), preserved_attrs=["predict_proba"])
    return ScoringModel(
        module=frozen,
        encoder=FeatureEncoder.from_json(files[ENCODER_FILE]),
        meta=json.loads(files[META_FILE]),
    )
