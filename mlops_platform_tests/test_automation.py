"""new_data_sensor and the daily ingestion schedule, evaluated against a real instance."""

import datetime as dt

import dagster as dg

from mlops_platform.definitions import build_definitions
from mlops_platform.defs.ingestion.sensors import contiguous_ranges
from mlops_platform.lib.landing import read_landing_file, simulate_batches, write_landing_file
from mlops_platform_tests.pipeline import INGESTION, land_reference, run_pipeline

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def _tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None):
    return sensor(dg.build_sensor_context(instance=instance, cursor=cursor))


def test_contiguous_days_are_grouped_into_ranges():
    days = ["2026-01-01", "2026-01-02", "2026-01-04", "2026-01-03", "2026-01-09"]
    assert contiguous_ranges(days) == [("2026-01-01", "2026-01-04"), ("2026-01-09", "2026-01-09")]


def test_new_data_sensor_runs_each_new_or_changed_file_once(adult_settings, instance):
    defs = build_definitions(adult_settings)
    sensor = defs.get_sensor_def("new_data_sensor")
    assert isinstance(_tick(sensor, instance, None), dg.SkipReason)

    land_reference(adult_settings)
    first = _tick(sensor, instance, None)
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in first.run_requests] == [
        ("2026-01-01", "2026-01-04")
    ]
    assert first.run_requests[0].job_name in (None, "data_pipeline")

    # the same files again: nothing to do
    assert isinstance(_tick(sensor, instance, first.cursor), dg.SkipReason)

    # a new day, and a changed old day: one run each, with distinct run keys
    simulate_batches(adult_settings.load_spec(), adult_settings.landing_dir, days=1)
    path = adult_settings.landing_dir / "2026-01-02.csv"
    write_landing_file(read_landing_file(path).head(100), adult_settings.landing_dir, "2026-01-02")
    second = _tick(sensor, instance, first.cursor)
    ranges = sorted((r.tags[RANGE_START], r.tags[RANGE_END]) for r in second.run_requests)
    assert ranges == [("2026-01-02", "2026-01-02"), ("2026-01-05", "2026-01-05")]
    keys = [r.run_key for r in [*first.run_requests, *second.run_requests]]
    assert len(set(keys)) == len(keys)


def test_new_data_sensor_skips_days_ingested_after_their_file_was_written(adult_settings, instance):
    days = land_reference(adult_settings)
    defs = build_definitions(adult_settings)
    assert run_pipeline(adult_settings, instance, days[0], days[1], assets=INGESTION, defs=defs).success
    result = _tick(defs.get_sensor_def("new_data_sensor"), instance, None)
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in result.run_requests] == [(days[2], days[3])]


def test_daily_schedule_ingests_yesterday_only_when_its_file_landed(adult_settings, instance):
    land_reference(adult_settings)
    schedule = build_definitions(adult_settings).get_schedule_def("daily_ingestion_schedule")
    at = dt.datetime(2026, 1, 4, 0, 30, tzinfo=dt.UTC)
    request = schedule(dg.build_schedule_context(instance=instance, scheduled_execution_time=at))
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == "2026-01-03"
    later = dt.datetime(2026, 2, 1, 0, 30, tzinfo=dt.UTC)
    skip = schedule(dg.build_schedule_context(instance=instance, scheduled_execution_time=later))
    assert isinstance(skip, dg.SkipReason) and "2026-01-31" in skip.skip_message
