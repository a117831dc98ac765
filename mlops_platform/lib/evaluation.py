"""Classification metrics, the decision threshold, and the plots a person looks at."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn import metrics as skm

if TYPE_CHECKING:
    import pyarrow as pa

    from mlops_platform.lib.model_artifact import ScoringModel

CALIBRATION_BINS = 10
SCORING_ROWS = 65_536  # rows scored at once when a split is read in chunks


@dataclass
class ScoredRows:
    """What scoring a split in chunks keeps: one score, label and row of `kept` per row."""

    scores: np.ndarray
    labels: np.ndarray
    kept: pd.DataFrame  # the columns asked to be kept (sensitive attributes), nothing else


def score_record_batches(
    score: Callable[[pa.RecordBatch], np.ndarray],
    batches: Iterable[pa.RecordBatch],
    keep: Sequence[str] = (),
) -> ScoredRows:
    """Score Arrow batches (features, `label`, the `keep` columns) one at a time, holding on to
    the scores, the labels and the `keep` columns only."""
    import pyarrow as pa

    scores, labels, kept = [], [], []
    for batch in batches:
        scores.append(np.asarray(score(batch), dtype=np.float64))
        labels.append(batch.column("label").to_numpy(zero_copy_only=False).astype(np.int64))
        kept.append(batch.select(list(keep)))
    if not scores:
        raise ValueError("there are no rows to score")
    return ScoredRows(
        scores=np.concatenate(scores),
        labels=np.concatenate(labels),
        kept=pa.Table.from_batches(kept).to_pandas(),
    )


def model_scores(model: ScoringModel) -> Callable[[pa.RecordBatch], np.ndarray]:
    """The artifact's positive-class probabilities of an Arrow batch (what
    `ScoringModel.predict_proba` gives for the same rows as a DataFrame)."""
    import torch

    def score(batch: pa.RecordBatch) -> np.ndarray:
        numeric, categorical = model.encoder.record_batch_arrays(batch)
        with torch.no_grad():
            probabilities = model.module.predict_proba(
                torch.from_numpy(numeric), torch.from_numpy(categorical)
            )
        return probabilities.numpy().astype(np.float64)

    return score


def choose_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold that maximizes F1 on the given (validation) split."""
    precision, recall, thresholds = skm.precision_recall_curve(labels, scores)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    best = int(np.argmax(f1[:-1])) if len(thresholds) else 0
    return float(thresholds[best]) if len(thresholds) else 0.5


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Mean |observed rate - mean score| over equal-width score bins, weighted by bin size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(labels[inside].mean() - scores[inside].mean())
    return float(error)


def classification_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Every metric the gates and the model card use, computed on one split."""
    labels = np.asarray(labels, dtype=int)
    scores = np.asarray(scores, dtype=float)
    predicted = (scores >= threshold).astype(int)
    clipped = np.clip(scores, 1e-7, 1 - 1e-7)
    return {
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "precision": float(skm.precision_score(labels, predicted, zero_division=0)),
        "recall": float(skm.recall_score(labels, predicted, zero_division=0)),
        "f1": float(skm.f1_score(labels, predicted, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(labels, scores)),
        "pr_auc": float(skm.average_precision_score(labels, scores)),
        "log_loss": float(skm.log_loss(labels, clipped, labels=[0, 1])),
        "brier_score": float(skm.brier_score_loss(labels, scores)),
        "expected_calibration_error": expected_calibration_error(labels, scores),
        "threshold": float(threshold),
        "positive_rate": float(labels.mean()),
        "rows": float(len(labels)),
    }


def plot_evaluation(
    labels: np.ndarray, scores: np.ndarray, threshold: float, folder: Path
) -> dict[str, Path]:
    """ROC, precision-recall, calibration and confusion-matrix PNGs in `folder`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}

    def save(name: str, figure) -> None:
        figure.tight_layout()
        paths[name] = folder / f"{name}.png"
        figure.savefig(paths[name], dpi=110)
        plt.close(figure)

    fpr, tpr, _ = skm.roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(fpr, tpr, label=f"AUC {skm.roc_auc_score(labels, scores):.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(loc="lower right")
    save("roc", fig)

    precision, recall, _ = skm.precision_recall_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(recall, precision, label=f"AP {skm.average_precision_score(labels, scores):.3f}")
    ax.axhline(labels.mean(), linestyle="--", color="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    ax.legend(loc="upper right")
    save("precision_recall", fig)

    edges = np.linspace(0, 1, CALIBRATION_BINS + 1)
    which = np.clip(np.digitize(scores, edges[1:-1]), 0, CALIBRATION_BINS - 1)
    filled = [b for b in range(CALIBRATION_BINS) if (which == b).any()]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.plot(
        [scores[which == b].mean() for b in filled], [labels[which == b].mean() for b in filled], marker="o"
    )
    ax.set(xlabel="mean predicted probability", ylabel="observed positive rate", title="Calibration")
    save("calibration", fig)

    matrix = skm.confusion_matrix(labels, (scores >= threshold).astype(int), labels=[0, 1])
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="black")
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xlabel="predicted",
        ylabel="actual",
        title=f"Confusion (t={threshold:.2f})",
    )
    save("confusion_matrix", fig)
    return paths
