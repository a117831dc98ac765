"""Run the real data pipeline in-process on a test instance, and read what it produced."""

import shutil
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import pandas as pd

from mlops_platform.definitions import build_definitions
from mlops_platform.defs.jobs import DATA_PIPELINE, RETRAIN_MODEL
from mlops_platform.lib import warehouse
from mlops_platform.lib.landing import read_landing_file, simulate_batches, write_landing_file
from mlops_platform.settings import Settings

INGESTION = [dg.AssetKey("raw_data"), dg.AssetKey("quarantined_rows")]
DATA_HALF = {
    "raw_data",
    "quarantined_rows",
    "stg_records",
    "features",
    "labels",
    "feature_store",
    "training_set",
}


def copy_landed(landed_home: Path, folder: Path, **spec_overrides: object) -> Settings:
    """Settings over a copy of the session's landed Adult slice (the `landed_home` fixture), with
    its spec written in `folder` with these overrides; the copy leaves MLflow and models out."""
    from mlops_platform_tests.datasets import write_adult_spec

    home = folder / "home"
    shutil.copytree(landed_home, home, ignore=shutil.ignore_patterns("mlflow", "models", "dbt_target"))
    return Settings(home=home, dataset_spec_path=write_adult_spec(folder / "spec", 500, 4, **spec_overrides))


def land_reference(settings: Settings) -> list[str]:
    spec = settings.load_spec()
    return [p.stem for p in simulate_batches(spec, settings.landing_dir, days=0, reference=True)]


def run_pipeline(
    settings: Settings,
    instance: dg.DagsterInstance,
    first: str,
    last: str | None = None,
    assets: Sequence[dg.AssetKey] | None = None,
    defs: dg.Definitions | None = None,
) -> dg.ExecuteInProcessResult:
    """The `data_pipeline` job over `first..last` (or only `assets` and their checks)."""
    defs = defs or build_definitions(settings)
    return defs.resolve_job_def(DATA_PIPELINE).execute_in_process(
        instance=instance,
        asset_selection=list(assets) if assets else None,
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last or first,
        },
        raise_on_error=False,
    )


def retrain(settings: Settings, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """`retrain_model` with no run config: what a sensor or the weekly schedule launches."""
    return (
        build_definitions(settings)
        .resolve_job_def(RETRAIN_MODEL)
        .execute_in_process(instance=instance, raise_on_error=False)
    )


def deploy(settings: Settings, instance: dg.DagsterInstance, gateway_url: str) -> dg.ExecuteInProcessResult:
    """`deploy_model` with no run config against the gateway at `gateway_url`."""
    settings = settings.model_copy(update={"serving_url": gateway_url})
    return (
        build_definitions(settings)
        .resolve_job_def("deploy_model")
        .execute_in_process(instance=instance, raise_on_error=False)
    )


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def table(settings: Settings, name: str) -> pd.DataFrame:
    return warehouse.read_table(settings.warehouse_path, name)


def corrupt_landing_file(
    settings: Settings, day: str, edits: dict[tuple[int, str], str | None]
) -> pd.DataFrame:
    """Overwrite cells of a landing file ({(row, column): new text}); returns the new text."""
    path = settings.landing_dir / f"{day}.csv"
    text = read_landing_file(path)
    for (row, column), value in edits.items():
        text.loc[row, column] = value
    write_landing_file(text, settings.landing_dir, day)
    return text


def wait_for(what: str, found, timeout: float, daemon):
    """`found()`'s first truthy value, polled while the daemon runs; fails with the daemon's log
    tail when the daemon exits or `timeout` seconds pass ("`what` within N s")."""
    import time

    deadline = time.monotonic() + timeout
    while not (value := found()):
        assert daemon.running(), f"the daemon exited:\n{daemon.log_tail()}"
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s:\n{daemon.log_tail()}"
        time.sleep(0.5)
    return value
