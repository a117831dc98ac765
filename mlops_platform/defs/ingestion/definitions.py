"""Ingestion: landed days validated into `raw_data`, rejects into `quarantined_rows`, and the
`data_pipeline` job with the sensor and schedule that start it."""

import dagster as dg

from mlops_platform.defs.ingestion.assets import build_ingestion_assets
from mlops_platform.defs.ingestion.checks import build_ingestion_checks
from mlops_platform.defs.ingestion.jobs import build_data_pipeline_job
from mlops_platform.defs.ingestion.schedules import build_daily_ingestion_schedule
from mlops_platform.defs.ingestion.sensors import build_new_data_sensor
from mlops_platform.defs.project import Project


def build(project: Project) -> dg.Definitions:
    settings, spec = project.settings, project.spec
    data_pipeline = build_data_pipeline_job(spec)
    return dg.Definitions(
        assets=[build_ingestion_assets(settings, spec)],
        asset_checks=build_ingestion_checks(settings, spec),
        jobs=[data_pipeline],
        sensors=[build_new_data_sensor(settings, data_pipeline)],
        schedules=[build_daily_ingestion_schedule(settings, data_pipeline)],
    )
