"""The two stores the governance commands read and write: the MLflow registry, and the Dagster
instance (`DAGSTER_HOME`, else the one `make demo` and `make ui` use, `$MLOPS_HOME/dagster`,
when it exists)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_platform.lib.model_registry import mlflow_client
from mlops_platform.settings import Settings

if TYPE_CHECKING:
    import dagster as dg
    from mlflow import MlflowClient

REGISTERED = "registered_model_version"


def registry(settings: Settings) -> MlflowClient:
    """A client on the platform's MLflow store; an error, not a new empty database, when the
    embedded store does not exist."""
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise LookupError(f"no MLflow store at {uri}: nothing is registered yet (is MLOPS_HOME right?)")
    return mlflow_client(uri)


def instance_home(settings: Settings) -> Path | None:
    """The instance folder: `DAGSTER_HOME`, else `$MLOPS_HOME/dagster` when it holds a dagster.yaml."""
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"]).expanduser()
    beside = settings.home / "dagster"
    return beside if (beside / "dagster.yaml").is_file() else None


@contextlib.contextmanager
def open_instance(settings: Settings) -> Iterator[dg.DagsterInstance | None]:
    """The Dagster instance, or None when there is none to read (no DAGSTER_HOME, no demo instance)."""
    import dagster as dg

    home = instance_home(settings)
    if home is None:
        yield None
        return
    if not home.is_dir():
        raise FileNotFoundError(f"DAGSTER_HOME={home} is not a folder: point it at the Dagster instance")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def run_actor(tags: dict[str, str]) -> str:
    """Who started a Dagster run, from its tags: a sensor, a schedule, a backfill, the demo, a person."""
    if tags.get("dagster/sensor_name"):
        return f"sensor {tags['dagster/sensor_name']}"
    if tags.get("dagster/schedule_name"):
        return f"schedule {tags['dagster/schedule_name']}"
    if tags.get("dagster/backfill"):
        return f"backfill {tags['dagster/backfill']}"
    if tags.get("mlops/trigger"):
        return tags["mlops/trigger"]
    if tags.get("dagster/auto_materialize") or tags.get("dagster/from_automation_condition"):
        return "automation condition"
    if tags.get("user"):
        return f"user {tags['user']}"
    return "manual (Dagster UI or CLI)"


def utc(seconds: float) -> str:
    """A POSIX time as ISO 8601 UTC to the second, the form every governance record is shown in."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")
