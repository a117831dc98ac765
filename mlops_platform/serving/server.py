"""`mlops serve`: seed the traffic state, prepare shared state, start uvicorn workers.

The process and every worker log in `MLOPS_LOG_FORMAT` (`mlops_platform.logs.server_log_config`):
uvicorn's lines, the platform's, and one access line per inference request.
"""

from __future__ import annotations

import logging
import os
import shutil

from mlops_platform.lib.model_registry import CHAMPION
from mlops_platform.logs import configure_server
from mlops_platform.settings import Settings

log = logging.getLogger("mlops_platform.serving")


def seed_traffic(settings: Settings, *, version: str | None, alias: str | None, reset: bool) -> str:
    """Write the first traffic state unless one survives from an earlier run; says what it did."""
    from mlops_platform.serving.revisions import (
        RegistryUnavailable,
        RevisionError,
        fetch_artifact,
        resolve_version,
    )
    from mlops_platform.serving.traffic import TrafficState, TrafficStore

    name = settings.load_spec().registered_model_name
    store = TrafficStore(settings.serving_dir)
    current = store.read()
    if current is not None and not reset and version is None and alias is None:
        return f"kept the traffic state of the last run: {current.shares() or 'no version rolled out'}"
    try:
        resolved = resolve_version(
            settings.tracking_uri, name, version=version, alias=alias or (None if version else CHAMPION)
        )
    except (RevisionError, RegistryUnavailable) as exc:
        if version is not None or alias is not None:
            raise
        store.write(TrafficState(model_name=name))
        return f"no version to serve yet ({exc}); the deploy_model job rolls one out"
    fetch_artifact(settings.tracking_uri, name, resolved, settings.serving_dir / "models")
    with store.locked():
        store.write(
            (TrafficState(model_name=name) if reset or current is None else current).with_revision(
                resolved, 100
            )
        )
    return f"serving {name} v{resolved} at 100 %"


def run_server(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    version: str | None = None,
    alias: str | None = None,
    reset: bool = False,
) -> None:
    import uvicorn

    log_config = configure_server()  # a bad MLOPS_LOG_FORMAT stops here, before anything starts
    # Every worker writes its metric samples here; /metrics sums them (prometheus_client's
    # multiprocess mode). Must be set before any worker imports prometheus_client.
    metrics_dir = settings.serving_dir / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    os.environ["MLOPS_HOME"] = str(settings.home)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # its warnings: our format, via root
    # MLflow resolves some URIs through its global store: point it at ours, not an inherited one.
    os.environ["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_REGISTRY_URI"] = settings.tracking_uri
    os.environ["MLOPS_DATASET_SPEC"] = str(settings.dataset_spec_path)

    from mlops_platform.serving.revisions import configure_mlflow_client
    from mlops_platform.serving.traffic import TrafficStore, admin_token

    configure_mlflow_client()  # seconds, not minutes of retries, when the registry is down
    store = TrafficStore(settings.serving_dir)
    store.reset_workers()
    admin_token(settings.serving_dir)  # created once here, before the workers read it
    log.info(seed_traffic(settings, version=version, alias=alias, reset=reset))
    # A canary that survived a restart with nobody driving it goes back to the stable version
    # (logged as a warning by the store).
    store.roll_back_orphan(at_startup=True)
    log.info("admin token in %s (or MLOPS_ADMIN_TOKEN)", settings.serving_dir / "admin_token")
    uvicorn.run(
        "mlops_platform.serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # uvicorn's lines lack the request id: the app writes its own access line
        log_config=log_config,
        log_level="info",
        timeout_graceful_shutdown=30,
    )
