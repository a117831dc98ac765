"""The code location: every stage folder of `defs/` contributes its own `Definitions`, merged
here with the resources and the executor, bound in this one place.

A stage is a package `mlops_platform/defs/<stage>/` whose `definitions.py` has
`build(project) -> dg.Definitions`; a new folder is picked up without an edit here. Built from
`Settings` (the environment) when Dagster loads the code location, never at import time;
backends are picked from settings, never by editing code.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import warnings

import dagster as dg

import mlops_platform.defs
from mlops_platform.defs.features.dbt import dbt_cli
from mlops_platform.defs.job_logs import job_logger_defs
from mlops_platform.defs.project import Project
from mlops_platform.resources.feast import FeastResource
from mlops_platform.resources.kserve import KServeInferenceService
from mlops_platform.resources.mlflow import MlflowTracking
from mlops_platform.resources.serving import LocalGateway, ServingBackend
from mlops_platform.resources.warehouse import WarehouseIOManager
from mlops_platform.settings import Settings

# Deliberate uses of Dagster beta APIs: single-run backfill policies (a whole partition range
# in one step) and data versions on outputs. Their warnings would print on every load.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def stage_names() -> list[str]:
    """The stage folders of `defs/`, in name order."""
    return sorted(m.name for m in pkgutil.iter_modules(mlops_platform.defs.__path__) if m.ispkg)


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    project = Project.load(settings)
    stages = [
        importlib.import_module(f"mlops_platform.defs.{name}.definitions").build(project)
        for name in stage_names()
    ]
    return dg.Definitions.merge(*stages, platform_definitions(project))


def platform_definitions(project: Project) -> dg.Definitions:
    """The resources every stage's assets ask for, and the executor."""
    settings, spec = project.settings, project.spec
    return dg.Definitions(
        # A chain of steps on a laptop: a process per step would reload the code location for each
        # one (about 6 s on 2 cores) and gain no parallelism; MLOPS_EXECUTOR=multiprocess for that.
        executor=dg.in_process_executor if settings.executor == "in_process" else dg.multiprocess_executor,
        loggers=job_logger_defs(),  # MLOPS_LOG_FORMAT=json: the jobs' JSON console logger
        resources={
            # Models refs and reports pickled under MLOPS_HOME: the volume every run pod mounts.
            "io_manager": dg.FilesystemIOManager(base_dir=str(settings.home / "dagster_io")),
            "warehouse_io_manager": WarehouseIOManager(
                warehouse_path=str(settings.warehouse_path), lake_dir=str(settings.lake_dir)
            ),
            "dbt": dbt_cli(settings, project.dbt_project),
            "feast": FeastResource(
                project=spec.name,
                repo_dir=str(settings.feast_dir),
                online_store=settings.feast_online_store,
                redis_url=from_env_var("MLOPS_REDIS_URL", settings.redis_url),
            ),
            "mlflow": MlflowTracking(
                tracking_uri=from_env_var("MLOPS_MLFLOW_TRACKING_URI", settings.tracking_uri),
                artifact_root=settings.artifact_root,
                experiment=spec.name,
                ui_url=settings.mlflow_ui_url,
                dagster_ui_url=settings.dagster_ui_url,
            ),
            "serving": serving_backend(settings, spec.registered_model_name),
        },
    )


def from_env_var(name: str, value: str) -> str | dg.EnvVar:
    """`value` as `dg.EnvVar(name)` when it came from that variable, so the UI, the run config and
    the logs show the variable's name, never a connection string (it may hold a password)."""
    return dg.EnvVar(name) if os.environ.get(name) == value else value


def serving_backend(settings: Settings, model_name: str) -> ServingBackend:
    """The backend the deploy job drives, from `MLOPS_SERVING_BACKEND` (`local` or `kserve`)."""
    if settings.serving_backend == "local":
        return LocalGateway(url=settings.serving_url, serving_dir=str(settings.serving_dir))
    config = settings.kserve
    missing = [
        f"MLOPS_KSERVE_{key.upper()}" for key in ("name", "image", "metrics_url") if not config.get(key)
    ]
    if missing:
        raise ValueError(
            f"MLOPS_SERVING_BACKEND=kserve needs {', '.join(missing)} (see deploy/kserve/README.md)"
        )
    return KServeInferenceService(
        namespace=config.get("namespace", "default"),
        name=config["name"],
        image=config["image"],
        model_name=model_name,
        metrics_url=config["metrics_url"],
        tracking_uri_secret=config.get("tracking_uri_secret", "mlflow-db"),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
