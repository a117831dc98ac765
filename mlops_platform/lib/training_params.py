"""Training hyperparameters and their defaults (no torch import: the code location reads them)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

DEFAULT_HIDDEN_SIZES = (64, 32)

# The automatic batch size, epochs and patience (`auto_batch_size`, `auto_epochs`,
# `auto_patience`): small data takes small batches, so that every epoch still makes at least
# MIN_STEPS optimizer steps, and many passes; each doubling of the rows past SMALL_ROWS
# doubles the batch (up to MAX_BATCH_SIZE) and makes the passes fewer (down to MIN_EPOCHS).
# On CPU, batches beyond 4,096 rows train fewer rows per second (their activations outgrow
# the cache); a GPU run can set a larger `batch_size` in the spec.
SMALL_ROWS = 50_000
MIN_STEPS = 16
TINY_BATCH_SIZE, MIN_BATCH_SIZE, MAX_BATCH_SIZE = 8, 256, 4096
MAX_EPOCHS, MIN_EPOCHS = 30, 3
NOISY_VALIDATION_ROWS = 5_000  # below this many train rows, validation loss is noisy: more patience


def auto_batch_size(rows: int) -> int:
    """At least MIN_STEPS steps per epoch: 8 on 150 rows, 256 from 4,096 to 50k rows; then the
    power of two nearest rows / 200: 512 at 100k, 4,096 from 1M (2,440 steps at 10M)."""
    if rows <= SMALL_ROWS:
        fitting = 2 ** math.floor(math.log2(max(rows, 1) / MIN_STEPS)) if rows >= MIN_STEPS else 1
        return int(min(MIN_BATCH_SIZE, max(TINY_BATCH_SIZE, fitting)))
    return int(min(MAX_BATCH_SIZE, max(MIN_BATCH_SIZE, 2 ** round(math.log2(rows / 200)))))


def auto_patience(rows: int, epochs: int) -> int:
    """Epochs without a better validation loss before stopping: 8 on small data (its validation
    loss is noisy), else a sixth of the epochs and at least 2 (5 at 30 epochs, 2 at 3)."""
    if rows < NOISY_VALIDATION_ROWS:
        return 8
    return max(2, epochs // 6)


def auto_epochs(rows: int) -> int:
    """30 up to 50k rows, then 30 * sqrt(50k / rows): 7 at 1M, 5 at 2M, 3 from 10M."""
    if rows <= SMALL_ROWS:
        return MAX_EPOCHS
    return max(MIN_EPOCHS, round(MAX_EPOCHS * math.sqrt(SMALL_ROWS / rows)))


@dataclass(frozen=True)
class TrainingParams:
    """What one training run uses; the spec's `training` section gives each (see spec.py)."""

    hidden_sizes: list[int] = field(default_factory=lambda: list(DEFAULT_HIDDEN_SIZES))
    dropout: float = 0.1
    optimizer: Literal["adamw", "sgd"] = "adamw"
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    epochs: int | None = None  # None: auto_epochs(train rows)
    batch_size: int | None = None  # None: auto_batch_size(train rows)
    # Training stops after the epoch that passes this many minutes (None: no limit).
    time_budget_minutes: float | None = None
    patience: int | None = None  # None: auto_patience(train rows, epochs)
    seed: int = 0
    # "none": plain log loss, imbalance handled by the decision threshold chosen on
    # validation (probabilities stay calibrated). "balanced": positives weighted n_neg/n_pos.
    class_weighting: Literal["none", "balanced"] = "none"

    def for_rows(self, rows: int) -> TrainingParams:
        """These parameters with the automatic batch size, epochs and patience filled in for
        `rows` train rows."""
        epochs = self.epochs if self.epochs is not None else auto_epochs(rows)
        return dataclasses.replace(
            self,
            epochs=epochs,
            batch_size=self.batch_size if self.batch_size is not None else auto_batch_size(rows),
            patience=self.patience if self.patience is not None else auto_patience(rows, epochs),
        )
