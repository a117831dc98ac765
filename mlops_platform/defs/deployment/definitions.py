"""Deployment: the `deploy_model` canary rollout, started after each registration."""

import dagster as dg

from mlops_platform.defs.deployment.canary import build_deploy_job
from mlops_platform.defs.deployment.sensors import build_auto_deploy_sensor
from mlops_platform.defs.project import Project


def build(project: Project) -> dg.Definitions:
    deploy_model = build_deploy_job(project.spec)
    return dg.Definitions(jobs=[deploy_model], sensors=[build_auto_deploy_sensor(deploy_model)])
