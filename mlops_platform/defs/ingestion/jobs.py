"""`data_pipeline`: a day's data from its landing file to the training set."""

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.defs.ingestion.partitions import daily_partitions
from mlops_platform.defs.job_logs import job_run_config
from mlops_platform.defs.jobs import DATA_PIPELINE, WAREHOUSE_WRITER


def build_data_pipeline_job(spec: DatasetSpec) -> UnresolvedAssetJobDefinition:
    """Land the run's days, validate them, then rebuild features, the feature store and the
    training set. Started by `new_data_sensor`, the daily schedule and `mlops demo`."""
    return dg.define_asset_job(
        DATA_PIPELINE,
        selection=dg.AssetSelection.groups("ingestion", "features"),
        partitions_def=daily_partitions(spec),
        description="Ingest landed days and refresh features, the feature store and the training set.",
        tags={"mlops/pipeline": "data", **WAREHOUSE_WRITER},
        config=job_run_config(),  # MLOPS_LOG_FORMAT=json: the JSON console logger
    )
