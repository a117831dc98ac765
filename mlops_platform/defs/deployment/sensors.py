"""`auto_deploy_sensor`: start `deploy_model` after a run registers a new model version."""

import dagster as dg

REGISTERED = dg.AssetKey("registered_model_version")


def build_auto_deploy_sensor(deploy_job: dg.JobDefinition) -> dg.RunStatusSensorDefinition:
    @dg.run_status_sensor(
        name="auto_deploy_sensor",
        run_status=dg.DagsterRunStatus.SUCCESS,
        request_job=deploy_job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=15,
        description=(
            "After any successful run that materialized registered_model_version (every gate passed), "
            "requests deploy_model for the new challenger, once per registering run."
        ),
    )
    def auto_deploy_sensor(context: dg.RunStatusSensorContext) -> dg.RunRequest | dg.SkipReason:
        run = context.dagster_run
        if run.job_name == deploy_job.name:
            return dg.SkipReason("a deploy run registers nothing")
        latest = context.instance.get_latest_materialization_event(REGISTERED)
        if latest is None or latest.run_id != run.run_id:
            return dg.SkipReason(f"run {run.run_id[:8]} ({run.job_name}) registered no model version")
        materialization = latest.asset_materialization
        version = materialization.metadata["version"].value if materialization else "?"
        return dg.RunRequest(
            run_key=f"deploy-after-{run.run_id}",
            tags={
                "mlops/trigger": "auto_deploy",
                "mlops/registered_in_run": run.run_id,
                "mlops/version": str(version),
            },
        )

    return auto_deploy_sensor
