"""What `drift_report` and `drift_sensor` share: one drift measurement of the served window, sized
by the spec's `monitoring` section, exported as Prometheus gauges (`MLOPS_HOME/metrics/drift.prom`),
and its Evidently report, kept in MLflow (a run per report in the `<dataset>-monitoring`
experiment) and locally (the newest `drift_reports_kept`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.lib.drift import DriftResult
from mlops_platform.resources.mlflow import MlflowTracking
from mlops_platform.settings import Settings


def monitoring_experiment(spec: DatasetSpec) -> str:
    """The MLflow experiment of the drift reports, beside the training experiment."""
    return f"{spec.name}-monitoring"


def measure_served_drift(
    settings: Settings, spec: DatasetSpec, predictions: pd.DataFrame
) -> tuple[DriftResult, str]:
    """Drift of the newest `window_rows` of `predictions` against `reference_rows` of the training
    split, scored by the version that served most of the window; and that version. The share, the
    drifted features and the limit are written to `MLOPS_HOME/metrics/drift.prom` for Prometheus."""
    from mlops_platform.lib.drift import newest_predictions, served_version, training_reference, window_drift
    from mlops_platform.lib.metrics_textfile import write_drift_gauges
    from mlops_platform.lib.model_artifact import load_artifact
    from mlops_platform.serving.revisions import fetch_artifact

    monitoring = spec.monitoring
    window = newest_predictions(predictions, monitoring.window_rows)
    version = served_version(window)
    reference = training_reference(settings.warehouse_path, spec.features.all, monitoring.reference_rows)
    artifact = fetch_artifact(
        settings.tracking_uri, spec.registered_model_name, version, settings.serving_dir / "models"
    )
    result = window_drift(
        window,
        reference,
        load_artifact(artifact),
        spec.features.numeric,
        spec.features.categorical,
        spec.gates.max_drift_share,
    )
    write_drift_gauges(
        settings.home,
        spec.registered_model_name,
        result.drift_share,
        len(result.drifted_columns),
        spec.gates.max_drift_share,
    )
    return result, version


@dataclass(frozen=True)
class PublishedReport:
    path: Path  # the local copy
    experiment_id: str
    run_id: str
    url: str | None  # the report open in the MLflow UI (None: no MLflow UI address)
    run_url: str | None


def publish_report(
    settings: Settings,
    spec: DatasetSpec,
    mlflow: MlflowTracking,
    result: DriftResult,
    version: str,
    source: str,
    tags: dict[str, str],
) -> PublishedReport:
    """Save the HTML under `MLOPS_HOME/monitoring/<source>/` (pruned to the newest
    `drift_reports_kept`) and log it to MLflow, tagged with the model version and `tags`."""
    from mlops_platform.lib.drift import prune_reports
    from mlops_platform.lib.ui_links import mlflow_artifact_url, mlflow_run_url

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = result.save_html(settings.home / "monitoring" / source / f"drift-{stamp}.html")
    prune_reports(path.parent, settings.drift_reports_kept)
    metrics = {"drift_share": result.drift_share, "drifted_features": len(result.drifted_columns)}
    if result.prediction is not None:
        metrics["prediction_drift_score"] = result.prediction.score
    experiment_id, run_id = mlflow.log_report(
        monitoring_experiment(spec),
        f"{source} v{version} {stamp[:15]}",
        path,
        tags={
            "model_version": version,
            "mlops.source": source,
            "window_rows": str(result.current_rows),
            "reference_rows": str(result.reference_rows),
            **tags,
        },
        metrics=metrics,
    )
    return PublishedReport(
        path=path,
        experiment_id=experiment_id,
        run_id=run_id,
        url=mlflow_artifact_url(settings.mlflow_ui_url, experiment_id, run_id, path.name),
        run_url=mlflow_run_url(settings.mlflow_ui_url, experiment_id, run_id),
    )
