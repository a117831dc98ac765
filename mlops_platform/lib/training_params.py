"""Training hyperparameters and their defaults (no torch import: the code location reads them)."""

from dataclasses import dataclass, field
from typing import Literal

DEFAULT_HIDDEN_SIZES = (64, 32)


@dataclass(frozen=True)
class TrainingParams:
    hidden_sizes: list[int] = field(default_factory=lambda: list(DEFAULT_HIDDEN_SIZES))
    dropout: float = 0.1
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    epochs: int = 30
    batch_size: int = 256
    patience: int = 4
    seed: int = 0
    # "none": plain log loss, imbalance handled by the decision threshold chosen on
    # validation (probabilities stay calibrated). "balanced": positives weighted n_neg/n_pos.
    class_weighting: Literal["none", "balanced"] = "none"
