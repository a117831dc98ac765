"""`drift_sensor`: watch served traffic for drift and request a retrain, once per drift episode."""

import datetime as dt
import json
import time
from dataclasses import asdict, dataclass, field

import dagster as dg
import pandas as pd

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.defs.jobs import RETRAIN_MODEL
from mlops_platform.resources.mlflow import MlflowTracking
from mlops_platform.settings import Settings


@dataclass
class DriftCursor:
    """Bytes read per log file; whether drift is ongoing; when the last retrain was requested."""

    offsets: dict[str, int] = field(default_factory=dict)
    in_episode: bool = False
    last_request_at: float | None = None

    @classmethod
    def parse(cls, text: str | None) -> "DriftCursor":
        return cls(**json.loads(text)) if text else cls()

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def build_drift_sensor(settings: Settings, spec: DatasetSpec) -> dg.SensorDefinition:
    monitoring = spec.monitoring
    limit = spec.gates.max_drift_share
    window_path = settings.home / "monitoring" / "drift_window.parquet"

    @dg.sensor(
        name="drift_sensor",
        job_name=RETRAIN_MODEL,  # defined by the training stage
        minimum_interval_seconds=monitoring.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Every {monitoring.sensor_interval_seconds} s: reads the predictions logged since its "
            f"cursor, keeps the newest {monitoring.window_rows}, and once {monitoring.min_window_rows} "
            f"are there compares them with {monitoring.reference_rows} rows of the training split, "
            f"scored by the model that served them (Evidently; the same measurement as drift_report). "
            f"Drift share above {limit} requests retrain_model, tagged with the share and the drifted "
            f"columns: once per drift episode and at most every "
            f"{monitoring.retrain_cooldown_minutes:g} minutes. The Evidently report of the window that "
            f"fired is logged to MLflow (experiment {spec.name}-monitoring) and linked in the run's tags."
        ),
    )
    def drift_sensor(
        context: dg.SensorEvaluationContext, mlflow: MlflowTracking
    ) -> dg.SensorResult | dg.SkipReason:
        from mlops_platform.defs.monitoring.reports import measure_served_drift, publish_report
        from mlops_platform.lib.drift import newest_predictions
        from mlops_platform.lib.files import atomic_target
        from mlops_platform.lib.inference_records import read_new_records

        cursor = DriftCursor.parse(context.cursor)
        if context.cursor is None:  # a fresh sensor starts a fresh window
            window_path.unlink(missing_ok=True)
        yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
        fresh, offsets = read_new_records(
            settings.inference_log_dir, cursor.offsets, skip_days_before=yesterday
        )
        cursor.offsets = offsets
        if fresh.empty:
            return dg.SensorResult(skip_reason="no new predictions since the last look", cursor=cursor.dump())
        window = pd.concat([pd.read_parquet(window_path), fresh]) if window_path.exists() else fresh
        window = newest_predictions(window, monitoring.window_rows)
        with atomic_target(window_path) as tmp:
            window.to_parquet(tmp, index=False)
        if len(window) < monitoring.min_window_rows:
            return dg.SensorResult(
                skip_reason=f"{len(window)} predictions in the window, {monitoring.min_window_rows} needed",
                cursor=cursor.dump(),
            )
        if not settings.warehouse_path.exists():
            return dg.SensorResult(skip_reason="no training_set in the warehouse yet", cursor=cursor.dump())
        result, version = measure_served_drift(settings, spec, window)
        measured = f"drift share {result.drift_share:.2f} (limit {limit}), drifted: {result.drifted_columns}"
        if result.drift_share <= limit:
            if cursor.in_episode:
                context.log.info(f"drift episode over: {measured}")
            cursor.in_episode = False
            return dg.SensorResult(skip_reason=f"no drift: {measured}", cursor=cursor.dump())
        if cursor.in_episode:
            return dg.SensorResult(
                skip_reason=f"drift continues, retrain already requested for this episode: {measured}",
                cursor=cursor.dump(),
            )
        now = time.time()
        cooldown = monitoring.retrain_cooldown_minutes * 60
        if cursor.last_request_at is not None and now - cursor.last_request_at < cooldown:
            return dg.SensorResult(
                skip_reason=f"{measured}; last retrain requested {now - cursor.last_request_at:.0f} s ago "
                f"(cooldown {cooldown:.0f} s)",
                cursor=cursor.dump(),
            )
        cursor.in_episode, cursor.last_request_at = True, now
        run_key = f"drift-{int(now)}"
        evidence = publish_report(
            settings,
            spec,
            mlflow,
            result,
            version,
            source="drift_sensor",
            tags={"dagster.sensor": "drift_sensor", "dagster.run_key": run_key},
        )
        context.log.info(f"requesting retrain_model: {measured}; report {evidence.url or evidence.path}")
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=run_key,
                    tags={
                        "mlops/trigger": "drift",
                        "mlops/drift_share": f"{result.drift_share:.4f}",
                        "mlops/drifted_columns": ",".join(result.drifted_columns),
                        "mlops/window_rows": str(result.current_rows),
                        "mlops/drift_report": str(evidence.path),
                        **({"mlops/drift_report_url": evidence.url} if evidence.url else {}),
                    },
                )
            ],
            cursor=cursor.dump(),
        )

    return drift_sensor
