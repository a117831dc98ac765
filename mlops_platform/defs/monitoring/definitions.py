"""Monitoring: the served predictions, their drift and live performance, the sources and the
automation that refresh them when new predictions or labels arrive, and the drift sensor that
requests retraining."""

import dagster as dg

from mlops_platform.defs.jobs import WAREHOUSE_WRITER
from mlops_platform.defs.monitoring.assets import (
    GROUP,
    build_live_performance_asset,
    build_monitoring_assets,
    inference_partitions,
)
from mlops_platform.defs.monitoring.sensors import build_drift_sensor
from mlops_platform.defs.monitoring.sources import build_monitoring_sources
from mlops_platform.defs.project import Project


def build(project: Project) -> dg.Definitions:
    settings, spec = project.settings, project.spec
    sources, files_sensor = build_monitoring_sources(settings, inference_partitions(spec), GROUP)
    monitoring_assets, monitoring_checks = build_monitoring_assets(settings, spec)
    live_performance, live_performance_check = build_live_performance_asset(settings, spec)
    return dg.Definitions(
        assets=[*sources, *monitoring_assets, live_performance],
        asset_checks=[*monitoring_checks, live_performance_check],
        sensors=[
            build_drift_sensor(settings, spec),
            files_sensor,
            dg.AutomationConditionSensorDefinition(
                "monitoring_automation",
                target=dg.AssetSelection.assets("inference_log", "drift_report", "live_performance"),
                # inference_log writes the warehouse, drift_report samples it: queued behind (and
                # ahead of) data_pipeline and retrain_model, never beside them
                run_tags=WAREHOUSE_WRITER,
                default_status=dg.DefaultSensorStatus.RUNNING,
                description=(
                    "Evaluates the monitoring assets' automation conditions (on by default): each "
                    "one materializes only after new predictions or labels (or a new inference_log)."
                ),
            ),
        ],
    )
