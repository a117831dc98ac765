"""Jobs over the asset graph."""

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.defs.ingestion.partitions import daily_partitions

DATA_PIPELINE = "data_pipeline"
RETRAIN_MODEL = "retrain_model"
# Both jobs write the warehouse (a retrain rebuilds a stale training_set): the run queue
# (dagster.yaml, tag_concurrency_limits) runs one of them at a time, so a retrain requested
# while new days are being ingested starts after them and trains on them.
WAREHOUSE_WRITER = {"mlops/writes": "warehouse"}


def build_data_pipeline_job(spec: DatasetSpec) -> UnresolvedAssetJobDefinition:
    """Land the run's days, validate them, then rebuild features, the feature store and the
    training set. Started by `new_data_sensor`, the daily schedule and `mlops demo`."""
    return dg.define_asset_job(
        DATA_PIPELINE,
        selection=dg.AssetSelection.groups("ingestion", "features"),
        partitions_def=daily_partitions(spec),
        description="Ingest landed days and refresh features, the feature store and the training set.",
        tags={"mlops/pipeline": "data", **WAREHOUSE_WRITER},
    )


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
