"""Data and prediction drift with Evidently: a recent inference window against the training data.

Evidently chooses each column's test by type and sample size (numeric: Kolmogorov-Smirnov
below 1,000 reference rows, normed Wasserstein distance above; categorical: chi-square or
Z-test, Jensen-Shannon distance above); a column has drifted when a test's p-value falls
below its threshold or a distance reaches it. The drift share is the fraction of feature
columns that drifted; prediction drift is the same test on the model's probability, current
window against the model's scores on the reference rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from mlops_platform.lib import warehouse
from mlops_platform.lib.preprocessing import MISSING_CATEGORY

PREDICTION = "probability"
REFERENCE_SEED = 0


class Scorer(Protocol):
    """A model that scores feature rows (`ScoringModel`)."""

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray: ...


def training_reference(
    warehouse_path: Path, columns: Sequence[str], rows: int, seed: int = REFERENCE_SEED
) -> pd.DataFrame:
    """A seeded sample of `rows` records of `training_set`'s train split, drawn in DuckDB.

    The split is selected first and sampled after (DuckDB applies `USING SAMPLE` before the
    `WHERE` of its own SELECT); reservoir sampling on one thread draws the same rows from the
    same table every time, in memory for `rows` records, not the table.
    """
    if rows < 1:
        raise ValueError(f"reference rows must be at least 1, got {rows}")
    selected = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    with warehouse.connect(warehouse_path, read_only=True) as con:
        if not warehouse.table_exists(con, "training_set"):
            raise LookupError(
                f"table training_set is not in the warehouse {warehouse_path}: materialize it first"
            )
        con.execute("SET threads = 1")
        return con.execute(
            f"SELECT * FROM (SELECT {selected} FROM training_set WHERE split = 'train') "
            f"USING SAMPLE reservoir({int(rows)} ROWS) REPEATABLE ({int(seed)})"
        ).df()


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    drift_share: float
    drifted_columns: list[str]
    columns: list[ColumnDrift]
    prediction: ColumnDrift | None
    reference_rows: int
    current_rows: int
    snapshot: Any = field(default=None, repr=False, compare=False)  # Evidently's run, for the HTML

    def as_dict(self) -> dict[str, Any]:
        return {
            "drift_share": self.drift_share,
            "drifted_columns": list(self.drifted_columns),
            "columns": [asdict(c) for c in self.columns],
            "prediction": None if self.prediction is None else asdict(self.prediction),
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
        }

    def save_html(self, path: Path) -> Path:
        """Evidently's HTML report of this measurement (no second run)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.snapshot.save_html(str(path))
        return path


def _column_drift(config: dict, value: float) -> ColumnDrift:
    method, threshold = str(config["method"]), float(config["threshold"])
    drifted = value < threshold if "p_value" in method else value >= threshold
    return ColumnDrift(str(config["column"]), method, float(value), threshold, bool(drifted))


def measure_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    max_drift_share: float,
) -> DriftResult:
    """Per-column drift of the features (and of `probability` when both frames have it); the
    result can save Evidently's HTML report of the same run (`save_html`)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    if reference.empty or current.empty:
        raise ValueError(
            f"drift needs rows on both sides: reference {len(reference)}, current {len(current)}"
        )
    features = [*numeric, *categorical]
    with_prediction = PREDICTION in reference.columns and PREDICTION in current.columns
    columns = [*features, PREDICTION] if with_prediction else features
    definition = DataDefinition(
        numerical_columns=[*numeric, PREDICTION] if with_prediction else list(numeric),
        categorical_columns=list(categorical),
    )
    metrics: list[Any] = [DataDriftPreset(columns=features, drift_share=max_drift_share)]
    if with_prediction:
        metrics.append(ValueDrift(column=PREDICTION))

    def prepared(frame: pd.DataFrame) -> pd.DataFrame:
        # the training data spells a missing category MISSING_CATEGORY; served inputs say None
        frame = frame[columns].reset_index(drop=True)
        return frame.assign(**{c: frame[c].fillna(MISSING_CATEGORY) for c in categorical})

    snapshot = Report(metrics).run(
        current_data=Dataset.from_pandas(prepared(current), data_definition=definition),
        reference_data=Dataset.from_pandas(prepared(reference), data_definition=definition),
    )
    per_column: dict[str, ColumnDrift] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift"):
            per_column[config["column"]] = _column_drift(config, metric["value"])
    feature_drift = [per_column[c] for c in features]
    drifted = [c.column for c in feature_drift if c.drifted]
    return DriftResult(
        drift_share=len(drifted) / len(features),
        drifted_columns=drifted,
        columns=feature_drift,
        prediction=per_column.get(PREDICTION),
        reference_rows=len(reference),
        current_rows=len(current),
        snapshot=snapshot,
    )


def newest_predictions(predictions: pd.DataFrame, rows: int) -> pd.DataFrame:
    """The `rows` most recent logged predictions, in time order (ties by request and row)."""
    ordered = predictions.sort_values(["timestamp", "request_id", "row"], kind="stable")
    return ordered.tail(rows).reset_index(drop=True)


def served_version(window: pd.DataFrame) -> str:
    """The model version that served most of the window."""
    return str(window["model_version"].astype(str).mode().iloc[0])


def window_drift(
    window: pd.DataFrame,
    reference: pd.DataFrame,
    model: Scorer,
    numeric: list[str],
    categorical: list[str],
    max_drift_share: float,
) -> DriftResult:
    """Data and prediction drift of a served `window` (inputs and `probability`) against the
    `reference` sample, which `model`, the version that served the window, scores."""
    scored = reference.assign(**{PREDICTION: model.predict_proba(reference)})
    return measure_drift(scored, window, numeric, categorical, max_drift_share)


def prune_reports(folder: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` HTML reports in `folder`; returns the deleted paths."""
    reports = sorted(Path(folder).glob("*.html"), key=lambda p: (p.stat().st_mtime_ns, p.name))
    stale = reports[: max(len(reports) - keep, 0)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
