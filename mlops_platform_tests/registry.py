"""Real registered model versions for serving tests, without running the whole graph.

Trains the real network on a slice of Adult (a few seconds), writes the real TorchScript
artifact, logs it as the same pyfunc `trained_model` logs and registers it. `kind` makes
deliberately broken versions: `failing` raises on every request, `slow` burns ~50 ms of CPU
per request (100 times the real model's call here); both are still real TorchScript files
served by the real server.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from torch import nn

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.lib.model_artifact import save_artifact
from mlops_platform.lib.training import train_model
from mlops_platform.lib.training_params import TrainingParams
from mlops_platform.settings import Settings


class _Failing(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return self.inner(numeric, categorical)

    @torch.jit.export
    def predict_proba(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("deliberately broken canary")


class _Slow(_Failing):
    @torch.jit.export
    def predict_proba(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        # depends on the input, so freezing the module at load cannot fold it into a constant
        x = torch.ones(512, 512) + torch.nan_to_num(numeric).sum() * 0.0
        for _ in range(48):
            x = torch.tanh(x @ x / 512.0)
        return torch.sigmoid(self.inner(numeric, categorical)) + x[0, 0] * 0.0


def adult_rows(spec: DatasetSpec, rows: int, seed: int = 0) -> pd.DataFrame:
    """`rows` records of the shipped Adult source with a 0/1 `label`."""
    frame = pd.read_csv(spec.source.path).sample(n=rows, random_state=seed).reset_index(drop=True)
    frame["label"] = (frame[spec.label.column] == spec.label.positive_class).astype(int)
    return frame


def write_training_set(settings: Settings, spec: DatasetSpec, rows: int, seed: int = 5) -> None:
    """A `training_set` table of `rows` Adult train rows (missing categories as the marker dbt
    writes) in the settings' warehouse: the reference a drift measurement reads."""
    from mlops_platform.lib import warehouse
    from mlops_platform.lib.preprocessing import MISSING_CATEGORY

    train = adult_rows(spec, rows, seed=seed)
    train = train.assign(
        record_id=[f"r{i}" for i in range(len(train))],
        split="train",
        **{c: train[c].fillna(MISSING_CATEGORY) for c in spec.features.categorical},
    )[["record_id", "split", "label", *spec.features.all]]
    settings.home.mkdir(parents=True)
    warehouse.replace_table(settings.warehouse_path, "training_set", train)


def register_version(settings: Settings, kind: str = "good", seed: int = 0, alias: str | None = None) -> str:
    """Train, save, log and register one version; returns its version number. Every version
    learns from the same 3,000 rows; `seed` changes the initialization and the batch order, so
    two good versions differ as two retrains of one dataset do."""
    import mlflow

    from mlops_platform.lib.pyfunc_model import log_pyfunc
    from mlops_platform.resources.mlflow import MlflowTracking

    spec = settings.load_spec()
    frame = adult_rows(spec, 3000)
    params = TrainingParams(hidden_sizes=[32], epochs=10, seed=seed)
    outcome = train_model(
        frame.iloc[:2400], frame.iloc[2400:], spec.features.numeric, spec.features.categorical, params
    )
    net = {"good": outcome.net, "failing": _Failing(outcome.net), "slow": _Slow(outcome.net)}[kind]
    meta = {"threshold": 0.4, "dataset": spec.name, "features": spec.features.all, "kind": kind}
    tracking = MlflowTracking(
        tracking_uri=settings.tracking_uri, artifact_root=settings.artifact_root, experiment="serving-tests"
    )
    with tracking.start_run(f"serving-test-{kind}", tags={}):
        artifact = save_artifact(net, outcome.encoder, meta, Path(settings.models_dir) / kind / f"{seed}.pt")
        logged = log_pyfunc(artifact)
    version = str(mlflow.register_model(logged.model_uri, spec.registered_model_name).version)
    if alias:
        tracking.client().set_registered_model_alias(spec.registered_model_name, alias, version)
    return version
