"""`failed_run_cleanup_sensor`: a Dagster run that failed leaves nothing RUNNING in MLflow.

A step that raises ends its MLflow run itself (`MlflowTracking.start_run`), but a run worker
that is killed cannot: its MLflow run would stay RUNNING and a rollout it drove would stay
`in_progress` for ever. Run monitoring marks such a Dagster run failed (`dagster.yaml`); this
sensor then ends its MLflow runs as KILLED and marks its rollout attempts `interrupted`.
"""

import dagster as dg

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.lib.deployment_record import interrupt_attempts_of_run
from mlops_platform.resources.mlflow import MlflowTracking


def end_mlflow_runs_of(mlflow: MlflowTracking, dagster_run_id: str) -> list[str]:
    """End the MLflow runs a Dagster run opened and left RUNNING, as KILLED; returns their ids."""
    client = mlflow.client()
    experiment = client.get_experiment_by_name(mlflow.experiment)
    if experiment is None:
        return []
    running = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`dagster.run_id` = '{dagster_run_id}' and attributes.status = 'RUNNING'",
    )
    for run in running:
        client.set_terminated(run.info.run_id, status="KILLED")
    return [run.info.run_id for run in running]


def build_failed_run_cleanup_sensor(spec: DatasetSpec) -> dg.RunStatusSensorDefinition:
    @dg.run_failure_sensor(
        name="failed_run_cleanup_sensor",
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=10,
        description=(
            "After any failed run (a killed run worker included, once run monitoring has failed it): "
            "ends the MLflow runs it left RUNNING as KILLED, and marks a rollout attempt it was "
            "driving as `interrupted` on the model version."
        ),
    )
    def failed_run_cleanup_sensor(context: dg.RunFailureSensorContext, mlflow: MlflowTracking) -> None:
        run = context.dagster_run
        ended = end_mlflow_runs_of(mlflow, run.run_id)
        interrupted = interrupt_attempts_of_run(
            mlflow.client(),
            spec.registered_model_name,
            run.run_id,
            f"Dagster run {run.run_id} failed: {context.failure_event.message or 'no message'}",
        )
        if ended or interrupted:
            context.log.info(
                f"run {run.run_id[:8]} ({run.job_name}): ended MLflow runs {ended} as KILLED; "
                f"rollouts of versions {interrupted} marked interrupted"
            )

    return failed_run_cleanup_sensor
