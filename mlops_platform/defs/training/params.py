"""Where a training run's hyperparameters come from: the spec's `training` section, then the
best trial of `hyperparameter_search` for the parameters it searched, then the run's config."""

import hashlib
import json
from typing import Any, Literal

import dagster as dg
from pydantic import Field, ValidationInfo, field_validator

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.lib.training_params import TrainingParams


class TrainingConfig(dg.Config):
    """Per-run overrides of the spec's `training` section, settable from the launchpad or
    `--config`; a field left null keeps the searched or the spec's value."""

    hidden_sizes: list[int] | None = None  # [] is a linear model
    dropout: float | None = Field(None, ge=0.0, lt=1.0)
    optimizer: str | None = None  # adamw | sgd (Dagster config has no optional Literal)
    learning_rate: float | None = Field(None, gt=0.0)
    weight_decay: float | None = Field(None, ge=0.0)
    epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    patience: int | None = Field(None, ge=1)
    seed: int | None = Field(None, ge=0)
    class_weighting: str | None = None  # none | balanced
    time_budget_minutes: float | None = Field(None, gt=0.0)
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @field_validator("hidden_sizes")
    @classmethod
    def _positive_widths(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(width < 1 for width in value):
            raise ValueError(f"hidden_sizes {value}: every layer needs at least 1 unit")
        return value

    @field_validator("optimizer", "class_weighting")
    @classmethod
    def _one_of(cls, value: str | None, info: ValidationInfo) -> str | None:
        allowed = {"optimizer": ("adamw", "sgd"), "class_weighting": ("none", "balanced")}[info.field_name]
        if value is not None and value not in allowed:
            raise ValueError(f"{info.field_name} must be one of {', '.join(allowed)}, not {value!r}")
        return value

    def overrides(self) -> dict[str, Any]:
        """The training values this run sets (device aside)."""
        return {k: v for k, v in self.model_dump(exclude={"device"}).items() if v is not None}


def resolve_params(
    spec: DatasetSpec, searched: dict[str, Any] | None = None, config: TrainingConfig | None = None
) -> TrainingParams:
    """The spec's values, replaced by the searched ones, replaced by the run's config."""
    overrides = config.overrides() if config is not None else {}
    return TrainingParams(**{**spec.training.model_dump(exclude={"search"}), **(searched or {}), **overrides})


def search_fingerprint(spec: DatasetSpec, training_set_version: str) -> str:
    """What a search result holds for: the spec's training values, the parameters searched and
    the data. `trained_model` refuses a search result made for anything else."""
    basis = {
        "training": spec.training.model_dump(mode="json", exclude={"search"}),
        "parameters": sorted(spec.training.search.parameters),
        "training_set_version": training_set_version,
    }
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]
