"""The daily ingestion schedule: yesterday's landing file, once the day is over."""

import datetime as dt

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from mlops_platform.lib.landing import landing_path
from mlops_platform.settings import Settings


def build_daily_ingestion_schedule(
    settings: Settings, job: UnresolvedAssetJobDefinition
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="daily_ingestion_schedule",
        job=job,
        cron_schedule="30 0 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="At 00:30 UTC, ingest the day that just ended if its landing file is there.",
    )
    def daily_ingestion_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        day = (context.scheduled_execution_time.date() - dt.timedelta(days=1)).isoformat()
        if not landing_path(settings.landing_dir, day).is_file():
            return dg.SkipReason(f"no landing file for {day} in {settings.landing_dir}")
        return dg.RunRequest(run_key=f"daily:{day}", partition_key=day, tags={"mlops/trigger": "schedule"})

    return daily_ingestion_schedule
