"""The files the monitoring assets are computed from, as observable source assets, and the sensor
that reports their new versions.

`prediction_log_files` (the model server's JSON lines, a partition per day) and `label_files` (the
delivered ground truth) are versioned by a fingerprint of their files' names, sizes and
modification times. `monitoring_files_sensor` reports an observation when a fingerprint changed
and nothing otherwise; an observation reported by a sensor launches no run. The monitoring
assets' automation conditions fire on a new data version of these sources, so an idle system
runs nothing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg

from mlops_platform.settings import Settings

PREDICTION_LOG_FILES, LABEL_FILES = "prediction_log_files", "label_files"
DATA_VERSION_TAG = "dagster/data_version"
OBSERVE_INTERVAL_SECONDS = 15 * 60  # under steady traffic, the monitoring assets refresh this often


def fingerprint(files: list[Path]) -> str:
    """A cheap version of a set of files: their names, sizes and modification times, hashed."""
    digest = hashlib.sha256()
    for path in sorted(files):
        stat = path.stat()
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def prediction_log_versions(log_dir: Path, partitions: dg.PartitionsDefinition) -> dict[str, str]:
    """The fingerprint of each day's log files, for the days that are partitions."""
    versions = {}
    for folder in sorted(Path(log_dir).glob("date=*")):
        day, files = folder.name.removeprefix("date="), sorted(folder.glob("*.jsonl"))
        if files and partitions.has_partition_key(day):
            versions[day] = fingerprint(files)
    return versions


def label_version(truth_dir: Path) -> str | None:
    """The fingerprint of the delivered label files; None before the first one."""
    files = sorted(Path(truth_dir).glob("*.csv"))
    return fingerprint(files) if files else None


def build_monitoring_sources(
    settings: Settings, partitions: dg.PartitionsDefinition, group: str
) -> tuple[list[dg.AssetsDefinition], dg.SensorDefinition]:
    @dg.observable_source_asset(
        name=PREDICTION_LOG_FILES,
        group_name=group,
        partitions_def=partitions,
        description=(
            f"The model server's inference log, JSON lines per day and worker under "
            f"{settings.inference_log_dir}. Data version: a fingerprint of each day's files "
            f"(names, sizes, modification times), reported by monitoring_files_sensor."
        ),
    )
    def prediction_log_files() -> dg.DataVersionsByPartition:
        versions = prediction_log_versions(settings.inference_log_dir, partitions)
        return dg.DataVersionsByPartition({day: dg.DataVersion(v) for day, v in versions.items()})

    @dg.observable_source_asset(
        name=LABEL_FILES,
        group_name=group,
        description=(
            f"Delivered ground truth, CSV files of request_id and label under "
            f"{settings.ground_truth_dir}. Data version: a fingerprint of the files, reported by "
            f"monitoring_files_sensor."
        ),
    )
    def label_files() -> dg.DataVersion:
        return dg.DataVersion(label_version(settings.ground_truth_dir) or "none")

    @dg.sensor(
        name="monitoring_files_sensor",
        minimum_interval_seconds=OBSERVE_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Every {OBSERVE_INTERVAL_SECONDS // 60} minutes: fingerprints the prediction log (per day) "
            f"and the label files, and reports an observation of {PREDICTION_LOG_FILES} or "
            f"{LABEL_FILES} with the new data version when a fingerprint changed. Launches no run; "
            "the monitoring assets' automation conditions react to the new versions."
        ),
    )
    def monitoring_files_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        seen = json.loads(context.cursor) if context.cursor else {"logs": {}, "labels": None}
        logs = prediction_log_versions(settings.inference_log_dir, partitions)
        labels = label_version(settings.ground_truth_dir)
        events = [
            dg.AssetObservation(PREDICTION_LOG_FILES, partition=day, tags={DATA_VERSION_TAG: version})
            for day, version in logs.items()
            if seen["logs"].get(day) != version
        ]
        if labels is not None and labels != seen["labels"]:
            events.append(dg.AssetObservation(LABEL_FILES, tags={DATA_VERSION_TAG: labels}))
        cursor = json.dumps({"logs": logs, "labels": labels}, sort_keys=True)
        if not events:
            return dg.SensorResult(skip_reason="no new predictions or labels", cursor=cursor)
        return dg.SensorResult(asset_events=events, cursor=cursor)

    return [prediction_log_files, label_files], monitoring_files_sensor
