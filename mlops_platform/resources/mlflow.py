"""MLflow tracking and registry as a typed resource.

A thin `ConfigurableResource` instead of dagster-mlflow's `mlflow_tracking`: that resource
is function-style (no typed parameter injection), cannot be overridden from run config
(dagster issue 21797), and its `end_mlflow_on_run_finished` hook can end the MLflow run
while later steps still log to it (dagster issue 21872). Here each asset opens the MLflow
run it needs in a `with` block, so a run never outlives the step that opened it, and
later assets reopen the training run by id to add their metrics and plots.

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


class MlflowTracking(dg.ConfigurableResource):
    """One MLflow experiment per dataset; tracking and registry in the same store."""

    tracking_uri: str
    artifact_root: str
    experiment: str
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

    def experiment_id(self) -> str:
        client = self.client()
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        location = self.artifact_root if "://" in self.artifact_root else Path(self.artifact_root).as_uri()
        return client.create_experiment(self.experiment, artifact_location=f"{location}/{self.experiment}")

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
