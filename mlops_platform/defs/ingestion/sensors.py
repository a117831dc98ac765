"""`new_data_sensor`: a landing file appears (or changes), its day is ingested."""

import datetime as dt
import hashlib
import json

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from mlops_platform.defs.job_logs import job_run_config
from mlops_platform.lib.landing import landed_days, landing_path
from mlops_platform.settings import Settings

RAW_DATA = dg.AssetKey("raw_data")


def contiguous_ranges(days: list[str]) -> list[tuple[str, str]]:
    """Group sorted `YYYY-MM-DD` days into (first, last) runs of consecutive days."""
    ranges: list[tuple[str, str]] = []
    for day in sorted(days):
        if ranges and dt.date.fromisoformat(day) - dt.date.fromisoformat(ranges[-1][1]) == dt.timedelta(
            days=1
        ):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def build_new_data_sensor(settings: Settings, job: UnresolvedAssetJobDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name="new_data_sensor",
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Watches {settings.landing_dir} and starts the data pipeline for each new or changed "
            "landing file; consecutive days go in one run."
        ),
    )
    def new_data_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        pending = []
        for day in landed_days(settings.landing_dir):
            path = landing_path(settings.landing_dir, day)
            signature = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            if seen.get(day) == signature:
                continue
            seen[day] = signature
            latest = context.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=RAW_DATA, asset_partitions=[day]), limit=1
            ).records
            if latest and latest[0].timestamp >= path.stat().st_mtime:
                continue  # ingested after the file was written (e.g. by `mlops demo`)
            pending.append(day)
        cursor = json.dumps(seen, sort_keys=True)
        if not pending:
            return dg.SkipReason(f"no new landing files in {settings.landing_dir}")
        requests = [
            dg.RunRequest(
                run_config=job_run_config() or {},  # a range run gets no job default config
                run_key=f"{first}..{last}:" + ",".join(seen[d] for d in pending if first <= d <= last),
                tags={
                    "dagster/asset_partition_range_start": first,
                    "dagster/asset_partition_range_end": last,
                    "mlops/trigger": "new_data_sensor",
                },
            )
            for first, last in contiguous_ranges(pending)
        ]
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return new_data_sensor
