"""The dbt project as Dagster assets; its manifest is prepared when the code location loads."""

import fcntl
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.defs.ingestion.checks import RAW_DATA_GATES
from mlops_platform.lib.preprocessing import MISSING_CATEGORY
from mlops_platform.settings import Settings

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"


def dbt_vars(settings: Settings, spec: DatasetSpec) -> dict[str, Any]:
    """What the dbt models know of the dataset and the platform's paths."""
    return {
        "warehouse_path": str(settings.warehouse_path),
        "lake_dir": str(settings.lake_dir),
        "numeric_features": spec.features.numeric,
        "categorical_features": spec.features.categorical,
        "required_features": [n for n in spec.features.numeric if not spec.columns[n].nullable],
        "label_column": spec.label.column,
        "positive_class": spec.label.positive_class,
        "missing_category": MISSING_CATEGORY,
        "raw_data_gates": list(RAW_DATA_GATES),  # a day reaches stg_records once all of these passed
    }


class _DbtRunsElsewhere(logging.Filter):
    """dbt runs from its own environment, so dagster-dbt cannot open an in-process dbt adapter
    (used only to fetch column metadata, which this project does not ask for). Drop the
    warning it logs with a traceback on every dbt invocation; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "creating a handle to the dbt adapter" not in record.getMessage()


dg.get_dagster_logger().addFilter(_DbtRunsElsewhere())


def dbt_cli(settings: Settings, project: DbtProject) -> DbtCliResource:
    return DbtCliResource(project_dir=project, dbt_executable=settings.dbt_executable)


def _fingerprint(variables: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(variables, sort_keys=True).encode())
    for path in sorted(DBT_PROJECT_DIR.rglob("*")):
        if path.suffix in {".sql", ".yml", ".yaml"} and "target" not in path.parts:
            digest.update(path.relative_to(DBT_PROJECT_DIR).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def prepared_dbt_project(settings: Settings, spec: DatasetSpec) -> DbtProject:
    """The dbt project with a manifest that matches its files and the spec.

    `dbt parse` runs only when the manifest is missing or stale (a file or the spec changed),
    under a file lock so parallel step processes do not parse at once.
    """
    settings.dbt_target_dir.mkdir(parents=True, exist_ok=True)
    project = DbtProject(
        project_dir=DBT_PROJECT_DIR, target_path=settings.dbt_target_dir, profiles_dir=DBT_PROJECT_DIR
    )
    variables = dbt_vars(settings, spec)
    stamp = settings.dbt_target_dir / "manifest.fingerprint"
    expected = _fingerprint(variables)
    with open(settings.dbt_target_dir / ".prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not project.manifest_path.exists() or not stamp.exists() or stamp.read_text() != expected:
            dbt_cli(settings, project).cli(
                ["parse", "--quiet", "--vars", json.dumps(variables)],
                target_path=project.target_path,
            ).wait()
            stamp.write_text(expected)
    return project


def build_dbt_assets(settings: Settings, spec: DatasetSpec, project: DbtProject) -> dg.AssetsDefinition:
    variables = json.dumps(dbt_vars(settings, spec))

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        name="dbt_feature_models",
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def dbt_feature_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
        """`dbt build`: staging and feature models, with their dbt tests as asset checks."""
        target = settings.dbt_target_dir / "runs" / context.run.run_id
        yield from dbt.cli(["build", "--vars", variables], context=context, target_path=target).stream()

    return dbt_feature_models
