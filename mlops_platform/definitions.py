"""The one `Definitions` object: every stage's assets, checks, jobs, sensors and resources.

Built from `Settings` (the environment) when Dagster loads the code location, never at
import time. Backends are picked from settings, never by editing code.
"""

from __future__ import annotations

import os
import warnings

import dagster as dg

from mlops_platform.datasets.check import require_matching_source
from mlops_platform.defs.deployment.canary import build_deploy_job
from mlops_platform.defs.deployment.sensors import build_auto_deploy_sensor
from mlops_platform.defs.features.dbt import build_dbt_assets, dbt_cli, prepared_dbt_project
from mlops_platform.defs.features.feature_store import build_feature_store_asset
from mlops_platform.defs.features.training_set import build_training_set_asset
from mlops_platform.defs.ingestion.assets import build_ingestion_assets
from mlops_platform.defs.ingestion.checks import build_ingestion_checks
from mlops_platform.defs.ingestion.schedules import build_daily_ingestion_schedule
from mlops_platform.defs.ingestion.sensors import build_new_data_sensor
from mlops_platform.defs.jobs import build_data_pipeline_job, build_retrain_job, build_weekly_retrain_schedule
from mlops_platform.defs.monitoring.assets import build_live_performance_asset, build_monitoring_assets
from mlops_platform.defs.monitoring.sensors import build_drift_sensor
from mlops_platform.defs.registry.assets import build_registry_asset
from mlops_platform.defs.registry.sensors import build_failed_run_cleanup_sensor
from mlops_platform.defs.training.evaluation import build_evaluation_asset
from mlops_platform.defs.training.fairness import build_fairness_asset
from mlops_platform.defs.training.hyperparameter_search import build_hyperparameter_search_asset
from mlops_platform.defs.training.trained_model import build_trained_model_asset
from mlops_platform.resources.feast import FeastResource
from mlops_platform.resources.kserve import KServeInferenceService
from mlops_platform.resources.mlflow import MlflowTracking
from mlops_platform.resources.serving import LocalGateway, ServingBackend
from mlops_platform.resources.warehouse import WarehouseIOManager
from mlops_platform.settings import Settings

# Deliberate uses of Dagster beta APIs: single-run backfill policies (a whole partition range
# in one step) and data versions on outputs. Their warnings would print on every load.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    spec = settings.load_spec()
    require_matching_source(spec, settings.dataset_spec_path)  # the spec against its source data
    dbt_project = prepared_dbt_project(settings, spec)
    data_pipeline = build_data_pipeline_job(spec)
    feature_store, online_matches_offline = build_feature_store_asset(settings, spec)
    training_set, training_set_is_sound = build_training_set_asset(settings, spec)
    model_evaluation, evaluation_gates = build_evaluation_asset(settings, spec)
    fairness_report, fairness_gate = build_fairness_asset(settings, spec)
    retrain_model = build_retrain_job()
    deploy_model = build_deploy_job(spec)
    monitoring_assets, monitoring_checks = build_monitoring_assets(settings, spec)
    live_performance, live_performance_check = build_live_performance_asset(settings, spec)
    return dg.Definitions(
        assets=[
            build_ingestion_assets(settings, spec),
            build_dbt_assets(settings, spec, dbt_project),
            feature_store,
            training_set,
            build_hyperparameter_search_asset(settings, spec),
            build_trained_model_asset(settings, spec),
            model_evaluation,
            fairness_report,
            build_registry_asset(settings, spec),
            *monitoring_assets,
            live_performance,
        ],
        asset_checks=[
            *build_ingestion_checks(settings, spec),
            online_matches_offline,
            training_set_is_sound,
            *evaluation_gates,
            fairness_gate,
            *monitoring_checks,
            live_performance_check,
        ],
        jobs=[data_pipeline, retrain_model, deploy_model],
        sensors=[
            build_new_data_sensor(settings, data_pipeline),
            build_auto_deploy_sensor(deploy_model),
            build_drift_sensor(settings, spec, retrain_model),
            build_failed_run_cleanup_sensor(spec),
            dg.AutomationConditionSensorDefinition(
                "monitoring_automation",
                target=dg.AssetSelection.groups("monitoring"),
                default_status=dg.DefaultSensorStatus.RUNNING,
                description="Evaluates the monitoring assets' automation conditions (on by default).",
            ),
        ],
        schedules=[
            build_daily_ingestion_schedule(settings, data_pipeline),
            build_weekly_retrain_schedule(retrain_model),
        ],
        # A chain of steps on a laptop: a process per step would reload the code location for each
        # one (about 6 s on 2 cores) and gain no parallelism; MLOPS_EXECUTOR=multiprocess for that.
        executor=dg.in_process_executor if settings.executor == "in_process" else dg.multiprocess_executor,
        resources={
            # Models refs and reports pickled under MLOPS_HOME: the volume every run pod mounts.
            "io_manager": dg.FilesystemIOManager(base_dir=str(settings.home / "dagster_io")),
            "warehouse_io_manager": WarehouseIOManager(
                warehouse_path=str(settings.warehouse_path), lake_dir=str(settings.lake_dir)
            ),
            "dbt": dbt_cli(settings, dbt_project),
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
