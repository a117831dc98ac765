"""Addresses of pages in the MLflow and Dagster web UIs, for links between the two.

An empty base URL means the UI is not published: no link is made.
"""

from __future__ import annotations

from urllib.parse import quote


def _join(base: str, path: str) -> str | None:
    return f"{base.rstrip('/')}/{path}" if base else None


def mlflow_run_url(base: str, experiment_id: str, run_id: str) -> str | None:
    """The MLflow UI page of one run: parameters, metrics, tags and artifacts."""
    return _join(base, f"#/experiments/{experiment_id}/runs/{run_id}")


def mlflow_artifact_url(base: str, experiment_id: str, run_id: str, path: str) -> str | None:
    """The MLflow UI page of a run with one of its artifacts open (an HTML report renders there)."""
    return _join(base, f"#/experiments/{experiment_id}/runs/{run_id}/artifactPath/{quote(path)}")


def mlflow_model_version_url(base: str, name: str, version: str) -> str | None:
    """The MLflow UI page of a registered model version: aliases, tags, source run."""
    return _join(base, f"#/models/{quote(name)}/versions/{version}")


def dagster_run_url(base: str, run_id: str) -> str | None:
    """The Dagster UI page of one run: its steps, logs and materializations."""
    return _join(base, f"runs/{run_id}")
