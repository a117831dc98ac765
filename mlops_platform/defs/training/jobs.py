"""`retrain_model` and its weekly schedule."""

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from mlops_platform.defs.job_logs import job_run_config
from mlops_platform.defs.jobs import RETRAIN_MODEL, WAREHOUSE_WRITER


def build_retrain_job() -> UnresolvedAssetJobDefinition:
    """Rebuild the training set from what has landed, then train, evaluate, gate and register."""
    return dg.define_asset_job(
        RETRAIN_MODEL,
        # monitoring reads training_set too, but is not part of a retrain
        selection=dg.AssetSelection.assets("training_set").downstream()
        - dg.AssetSelection.groups("monitoring"),
        description=(
            "Refresh training_set (reused when its inputs did not change) and everything down to "
            "registered_model_version; "
            "the blocking gates decide whether a new version is registered."
        ),
        tags={"mlops/pipeline": "training", **WAREHOUSE_WRITER},
        config=job_run_config(),  # MLOPS_LOG_FORMAT=json: the JSON console logger
    )


def build_weekly_retrain_schedule(job: UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="weekly_retrain_schedule",
        job=job,
        cron_schedule="0 3 * * 1",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Mondays 03:00 UTC: retrain on everything landed so far.",
    )
