"""Registry: a gated model registered in MLflow, and the cleanup of runs that died mid-way."""

import dagster as dg

from mlops_platform.defs.project import Project
from mlops_platform.defs.registry.assets import build_registry_asset
from mlops_platform.defs.registry.sensors import build_failed_run_cleanup_sensor


def build(project: Project) -> dg.Definitions:
    return dg.Definitions(
        assets=[build_registry_asset(project.settings, project.spec)],
        sensors=[build_failed_run_cleanup_sensor(project.spec)],
    )
