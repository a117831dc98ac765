"""new_data_sensor, the daily ingestion schedule, and the monitoring assets' automation (quiet
when nothing happens), evaluated against a real instance."""

import datetime as dt
import json
from pathlib import Path

import dagster as dg

from mlops_platform.definitions import build_definitions
from mlops_platform.defs.ingestion.sensors import contiguous_ranges
from mlops_platform.lib.landing import read_landing_file, simulate_batches, write_landing_file
from mlops_platform.settings import Settings
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


MONITORING = dg.AssetSelection.groups("monitoring")


def _log_prediction(settings: Settings, day: str, request_id: str) -> None:
    """Append one line to the server's log of `day`, as the model server writes it."""
    spec = settings.load_spec()
    record = {
        "request_id": request_id,
        "timestamp": f"{day}T12:00:00+00:00",
        "model_name": spec.registered_model_name,
        "model_version": "1",
        "role": "stable",
        "protocol": "v2",
        "row": 0,
        "entity_id": None,
        "inputs": {**dict.fromkeys(spec.features.numeric, 1.0), **dict.fromkeys(spec.features.categorical)},
        "probability": 0.25,
        "prediction": 0,
    }
    path = settings.inference_log_dir / f"date={day}" / "worker-1.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as log:
        log.write(json.dumps(record) + "\n")


def _deliver_label(settings: Settings, name: str, request_id: str) -> None:
    settings.ground_truth_dir.mkdir(parents=True, exist_ok=True)
    Path(settings.ground_truth_dir / f"{name}.csv").write_text(f"request_id,label\n{request_id},1\n")


class MonitoringTicks:
    """Ticks of monitoring_files_sensor (its observations stored as the daemon stores them) and of
    the automation that evaluates the monitoring assets, each with its cursor."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
        self.defs, self.instance = defs, instance
        self.sensor = defs.resolve_sensor_def("monitoring_files_sensor")
        self.sensor_cursor: str | None = None
        self.automation_cursor = None

    def observe(self) -> list[dg.AssetObservation]:
        result = self.sensor(dg.build_sensor_context(instance=self.instance, cursor=self.sensor_cursor))
        assert not result.run_requests
        self.sensor_cursor = result.cursor
        for event in result.asset_events:
            self.instance.report_runless_asset_event(event)
        return result.asset_events

    def requested(self) -> dict[str, set[str | None]]:
        """What the automation requests on this tick: asset -> partitions (None: unpartitioned)."""
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, asset_selection=MONITORING, cursor=self.automation_cursor
        )
        self.automation_cursor = result.cursor
        return {
            r.key.to_user_string(): (
                set(r.true_subset.expensively_compute_partition_keys())
                if r.true_subset.is_partitioned
                else {None}
            )
            for r in result.results
            if r.true_subset.size
        }


def test_monitoring_assets_materialize_only_after_new_predictions_or_labels(adult_settings, instance):
    adult_settings.home.mkdir(parents=True)
    defs = build_definitions(adult_settings)
    ticks = MonitoringTicks(defs, instance)
    today = dt.datetime.now(dt.UTC).date()
    yesterday = (today - dt.timedelta(days=1)).isoformat()
    today = today.isoformat()
    assert ticks.observe() == [] and ticks.requested() == {}  # nothing served yet

    # new predictions: today's partition of inference_log, nothing else yet
    _log_prediction(adult_settings, today, "req-1")
    [seen] = ticks.observe()
    assert (seen.asset_key, seen.partition) == (dg.AssetKey("prediction_log_files"), today)
    assert ticks.requested() == {"inference_log": {today}}
    assert ticks.requested() == {}  # requested once, not on every tick

    job = defs.resolve_implicit_global_asset_job_def()
    done = job.execute_in_process(
        asset_selection=[dg.AssetKey("inference_log")], partition_key=today, instance=instance
    )
    assert done.asset_materializations_for_node("inference_log")[0].metadata["rows"].value == 1
    # drift_report also waits for a training_set to sample: none in this warehouse yet
    assert ticks.requested() == {"live_performance": {None}}

    # idle: the sensor reports nothing, the automation requests nothing, no run starts
    runs = len(instance.get_run_records())
    for _ in range(2):
        assert ticks.observe() == [] and ticks.requested() == {}
    assert len(instance.get_run_records()) == runs

    # new labels: live_performance only
    _deliver_label(adult_settings, "20260101T000000Z", "req-1")
    [seen] = ticks.observe()
    assert seen.asset_key == dg.AssetKey("label_files")
    assert ticks.requested() == {"live_performance": {None}}

    # a late line in yesterday's log: that day's partition
    _log_prediction(adult_settings, yesterday, "req-0")
    assert [e.partition for e in ticks.observe()] == [yesterday]
    assert ticks.requested() == {"inference_log": {yesterday}}
    assert ticks.observe() == [] and ticks.requested() == {}

    # the same files observed again (an observation from the UI): the same data version, no request
    instance.report_runless_asset_event(
        dg.AssetObservation(
            "label_files",
            tags={"dagster/data_version": json.loads(ticks.sensor_cursor)["labels"]},
        )
    )
    assert ticks.requested() == {}
