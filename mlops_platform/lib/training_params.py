"""Training hyperparameters and their defaults (no torch import: the code location reads them)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

DEFAULT_HIDDEN_SIZES = (64, 32)

# The automatic batch size and number of epochs (`auto_batch_size`, `auto_epochs`): small
# data keeps small batches and many passes; each doubling of the rows past SMALL_ROWS
# doubles the batch (up to MAX_BATCH_SIZE) and makes the passes fewer (down to MIN_EPOCHS).
# On CPU, batches beyond 4,096 rows train fewer rows per second (their activations outgrow
# the cache); a GPU run can set a larger `batch_size` in the spec.
SMALL_ROWS = 50_000
MIN_BATCH_SIZE, MAX_BATCH_SIZE = 256, 4096
MAX_EPOCHS, MIN_EPOCHS = 30, 3


def auto_batch_size(rows: int) -> int:
    """256 up to 50k rows, then the power of two nearest rows / 200: 512 at 100k, 4,096 from 1M."""
    if rows <= SMALL_ROWS:
        return MIN_BATCH_SIZE
    return int(min(MAX_BATCH_SIZE, max(MIN_BATCH_SIZE, 2 ** round(math.log2(rows / 200)))))


def auto_epochs(rows: int) -> int:
    """30 up to 50k rows, then 30 * sqrt(50k / rows): 7 at 1M, 5 at 2M, 3 from 10M."""
    if rows <= SMALL_ROWS:
        return MAX_EPOCHS
    return max(MIN_EPOCHS, round(MAX_EPOCHS * math.sqrt(SMALL_ROWS / rows)))


@dataclass(frozen=True)
class TrainingParams:
    hidden_sizes: list[int] = field(default_factory=lambda: list(DEFAULT_HIDDEN_SIZES))
    dropout: float = 0.1
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    epochs: int | None = None  # None: auto_epochs(train rows)
    batch_size: int | None = None  # None: auto_batch_size(train rows)
    # Training stops after the epoch that passes this many minutes (None: no limit).
    time_budget_minutes: float | None = None
    patience: int = 4
    seed: int = 0
    # "none": plain log loss, imbalance handled by the decision threshold chosen on
    # validation (probabilities stay calibrated). "balanced": positives weighted n_neg/n_pos.
    class_weighting: Literal["none", "balanced"] = "none"

    def for_rows(self, rows: int) -> TrainingParams:
        """These parameters with the automatic batch size and epochs filled in for `rows` train rows."""
        return dataclasses.replace(
            self,
            epochs=self.epochs if self.epochs is not None else auto_epochs(rows),
            batch_size=self.batch_size if self.batch_size is not None else auto_batch_size(rows),
        )
