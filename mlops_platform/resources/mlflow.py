"""MLflow tracking and registry as a typed resource.

A thin `ConfigurableResource` instead of dagster-mlflow's `mlflow_tracking`: that resource
is function-style (no typed parameter injection), cannot be overridden from run config
(dagster issue 21797), and its `end_mlflow_on_run_finished` hook can end the MLflow run
while later steps still log to it (dagster issue 21872). Here each asset opens the MLflow
run it needs in a `with` block, so a run never outlives the step that opened it, and
later assets reopen the training run by id to add their metrics and plots.

The links between the two UIs are built here: `run_url` and `model_version_url` give the MLflow
pages an asset's metadata links to (`url_metadata`), `dagster_run_url` the Dagster page an MLflow
run or model version is tagged with. An empty `ui_url` or `dagster_ui_url` makes no links.

The store is probed when a step that needs it starts (`setup_for_execution`): with the default
in-process executor that is the start of the run, so `retrain_model` fails in seconds, naming
the URI (password redacted), instead of rebuilding `training_set` and then waiting minutes on
MLflow's HTTP retries.
"""

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from mlops_platform.lib.model_registry import mlflow_client
from mlops_platform.lib.tracking_store import check_reachable, limit_client_retries
from mlops_platform.lib.ui_links import dagster_run_url, mlflow_model_version_url, mlflow_run_url

if TYPE_CHECKING:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


def code_version() -> str:
    """The git commit of the platform's code, or `unknown` outside a checkout."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def url_metadata(**urls: str | None) -> dict[str, dg.MetadataValue]:
    """Clickable metadata entries for the links that exist (None: that UI has no address)."""
    return {key: dg.MetadataValue.url(url) for key, url in urls.items() if url}


class MlflowTracking(dg.ConfigurableResource):
    """One MLflow experiment per dataset; tracking and registry in the same store."""

    tracking_uri: str
    artifact_root: str
    experiment: str
    ui_url: str = ""  # the MLflow UI that Dagster metadata links to; empty: no links
    dagster_ui_url: str = ""  # the Dagster UI that MLflow tags link back to; empty: no such tags
    probe_attempts: int = 3
    probe_timeout_seconds: float = 5.0

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        limit_client_retries(max_retries=2, timeout_seconds=30)
        self.check_reachable()

    def check_reachable(self) -> None:
        """Probe the tracking store `probe_attempts` times; raise `RegistryUnavailable` naming
        the URI, password redacted, if it never answers."""
        check_reachable(self.tracking_uri, self.probe_attempts, self.probe_timeout_seconds)

    def _configure(self) -> None:
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)

    def client(self) -> "MlflowClient":
        self._configure()
        return mlflow_client(self.tracking_uri)

    def version_for_alias(self, name: str, alias: str) -> "ModelVersion | None":
        """The version an alias points at, or None when the model or the alias does not exist."""
        from mlflow.exceptions import MlflowException

        client = self.client()
        try:
            model = client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        if alias not in model.aliases:
            return None
        return client.get_model_version(name, model.aliases[alias])

    def experiment_id(self, name: str | None = None) -> str:
        """The id of experiment `name` (this resource's by default), created under the artifact
        root when missing."""
        name = name or self.experiment
        client = self.client()
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = self.artifact_root if "://" in self.artifact_root else Path(self.artifact_root).as_uri()
        return client.create_experiment(name, artifact_location=f"{location}/{name}")

    def run_url(self, run_id: str) -> str | None:
        """The MLflow UI page of a run (in whichever experiment holds it)."""
        if not self.ui_url:
            return None
        experiment_id = self.client().get_run(run_id).info.experiment_id
        return mlflow_run_url(self.ui_url, experiment_id, run_id)

    def model_version_url(self, name: str, version: str) -> str | None:
        """The MLflow UI page of a registered model version."""
        return mlflow_model_version_url(self.ui_url, name, version)

    def dagster_run_url(self, dagster_run_id: str) -> str | None:
        """The Dagster UI page of a run, for the MLflow run or model version it wrote."""
        return dagster_run_url(self.dagster_ui_url, dagster_run_id)

    @contextlib.contextmanager
    def start_run(self, run_name: str, tags: dict[str, str]) -> Iterator["mlflow.ActiveRun"]:
        """A new MLflow run that ends when the block ends (with status FAILED on an error)."""
        import mlflow

        experiment_id = self.experiment_id()
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
            yield run

    @contextlib.contextmanager
    def resume_run(self, run_id: str) -> Iterator["mlflow.ActiveRun"]:
        """Reopen a finished run (the training run) to add evaluation results to it."""
        import mlflow

        self._configure()
        with mlflow.start_run(run_id=run_id) as run:
            yield run

    def log_report(
        self,
        experiment: str,
        run_name: str,
        report: Path,
        tags: dict[str, str],
        metrics: dict[str, float],
    ) -> tuple[str, str]:
        """A finished run in `experiment` (created beside this one's artifacts when missing) with
        `report` as its artifact, `tags` and `metrics`; returns (experiment id, run id)."""
        import time

        from mlflow.entities import Metric, RunTag

        client = self.client()
        experiment_id = self.experiment_id(experiment)
        run_id = client.create_run(experiment_id, run_name=run_name).info.run_id
        stamp = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), stamp, 0) for k, v in metrics.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )
        client.log_artifact(run_id, str(report))
        client.set_terminated(run_id)
        return experiment_id, run_id
