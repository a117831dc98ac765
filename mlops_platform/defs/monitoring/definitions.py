"""Monitoring: the served predictions, their drift and live performance, the automation that
refreshes them and the drift sensor that requests retraining."""

import dagster as dg

from mlops_platform.defs.monitoring.assets import build_live_performance_asset, build_monitoring_assets
from mlops_platform.defs.monitoring.sensors import build_drift_sensor
from mlops_platform.defs.project import Project


def build(project: Project) -> dg.Definitions:
    settings, spec = project.settings, project.spec
    monitoring_assets, monitoring_checks = build_monitoring_assets(settings, spec)
    live_performance, live_performance_check = build_live_performance_asset(settings, spec)
    return dg.Definitions(
        assets=[*monitoring_assets, live_performance],
        asset_checks=[*monitoring_checks, live_performance_check],
        sensors=[
            build_drift_sensor(settings, spec),
            dg.AutomationConditionSensorDefinition(
                "monitoring_automation",
                target=dg.AssetSelection.groups("monitoring"),
                default_status=dg.DefaultSensorStatus.RUNNING,
                description="Evaluates the monitoring assets' automation conditions (on by default).",
            ),
        ],
    )
