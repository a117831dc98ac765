"""`mlops reproduce VERSION`: rebuild a registered model from its data version and compare.

Reads the version's training run and its `lineage.json` (`lib/lineage.py`), checks that every
landing file it was built from is unchanged (sha256), copies those files into a scratch data
directory with the recorded dataset spec, runs the real `data_pipeline` there (one run per
stretch of consecutive days) and compares the rebuilt `training_set` data version with the
recorded one. Then it retrains on CPU with the recorded parameters, seed and torch thread count
(`hyperparameter_search` off) and compares every test metric with the registered run's, to
`TOLERANCE`. The outcome is recorded on the model version as tag `reproduction`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_platform.governance.stores import registry
from mlops_platform.lib.landing import landing_path
from mlops_platform.lib.lineage import TrainingLineage, landing_changes, read_lineage
from mlops_platform.lib.uris import redact_uri
from mlops_platform.settings import Settings

if TYPE_CHECKING:
    import dagster as dg
    from mlflow import MlflowClient

TOLERANCE = 1e-6
TAG = "reproduction"
# The test metrics shown first; every other `test_*` metric of the run follows.
_FIRST = ("roc_auc", "pr_auc", "accuracy", "f1", "threshold")
_QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@dataclass(frozen=True)
class MetricComparison:
    name: str
    registered: float
    reproduced: float | None  # None: the reproduction did not report it
    difference: float | None  # reproduced - registered
    match: bool


@dataclass(frozen=True)
class Reproduction:
    """What `reproduce` found."""

    model_name: str
    version: str
    run_id: str  # the registered version's training run
    reproduced_run_id: str  # the retraining's run, in the scratch MLflow store
    training_set_version: str  # recorded
    rebuilt_training_set_version: str
    days: list[str]
    params: dict[str, Any]  # as the retraining was configured
    torch_threads: int
    metrics: list[MetricComparison]
    tolerance: float
    recorded_code_version: str
    code_version: str
    recorded_torch_version: str
    torch_version: str
    warnings: list[str] = field(default_factory=list)
    workdir: str | None = None  # where the scratch data directory was kept (None: removed)
    at: str = ""

    @property
    def matched(self) -> bool:
        return all(m.match for m in self.metrics)

    @property
    def max_difference(self) -> float:
        return max((abs(m.difference) for m in self.metrics if m.difference is not None), default=0.0)


def reproduce(
    settings: Settings,
    version: str,
    workdir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Reproduction:
    """Rebuild version `version` of the spec's registered model from its recorded inputs and
    compare (see the module docstring). Raises LookupError for a version, run or lineage that
    does not exist, ValueError when the inputs changed or the training set rebuilds differently.
    `workdir` (empty or new) keeps the scratch data directory; without it a temporary one is
    removed afterwards. `progress` receives a line per stage."""
    say = progress or (lambda line: None)
    version = str(version).removeprefix("v")
    name = settings.load_spec().registered_model_name
    client = registry(settings)
    model_version = _model_version(client, name, version, settings.tracking_uri)
    run_id = model_version.run_id
    lineage = read_lineage(client, run_id)
    if not lineage.days:
        raise LookupError(
            f"{name} v{version}: its lineage records no landed days (training_set was built before "
            "landing files were recorded with it)"
        )
    label = f"{name} v{version} cannot be reproduced"
    if changes := landing_changes(lineage, settings.landing_dir):
        raise ValueError(f"{label}: " + "; ".join(changes))
    run = client.get_run(run_id)
    registered = {
        key.removeprefix("test_"): value
        for key, value in run.data.metrics.items()
        if key.startswith("test_") and not key.endswith(("_ci_low", "_ci_high"))
    }
    if not registered:
        raise LookupError(f"{label}: its MLflow run {run_id} has no test metrics (no model_evaluation)")
    days = sorted(lineage.days)
    warnings = _warnings(lineage, run.data.tags)
    params = _retrain_params(client, run_id, lineage, run.data.tags, warnings)

    if workdir is not None:
        workdir = Path(workdir).resolve()
        if workdir.exists() and any(workdir.iterdir()):
            raise ValueError(f"workdir {workdir} is not empty: name a new or empty folder")
    scratch = Path(tempfile.mkdtemp(prefix="mlops-reproduce-")) if workdir is None else workdir
    try:
        scratch_settings = _scratch_settings(settings, lineage, scratch, warnings)
        if changes := landing_changes(lineage, scratch_settings.landing_dir):  # changed while copied
            raise ValueError(f"{label}: " + "; ".join(changes))
        with _mlflow_uris_kept(), _ephemeral_instance(scratch) as instance:
            from mlops_platform.definitions import build_definitions

            defs = build_definitions(scratch_settings)
            rebuilt = _rebuild_training_set(defs, instance, scratch_settings, days, say)
            if rebuilt != lineage.training_set_version:
                _record(client, name, version, matched=False, difference=None, data_version=rebuilt)
                raise ValueError(
                    f"{label}: the training set rebuilt from its {len(days)} landing file(s) has data "
                    f"version {rebuilt}, the version was trained on {lineage.training_set_version}"
                )
            say(f"training_set rebuilt: {rebuilt}, as recorded; retraining on CPU")
            with _torch_threads(lineage.torch_threads):
                reproduced, reproduced_run_id = _retrain(defs, instance, params)
    finally:
        if workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)
    code, torch_version = _code_version(), _torch_version()
    if code != lineage.code_version:
        warnings.append(f"code: trained at commit {lineage.code_version}, now {code}")
    if torch_version != lineage.torch_version:
        warnings.append(f"torch: trained with {lineage.torch_version}, now {torch_version}")
    result = Reproduction(
        model_name=name,
        version=version,
        run_id=run_id,
        reproduced_run_id=reproduced_run_id,
        training_set_version=lineage.training_set_version,
        rebuilt_training_set_version=rebuilt,
        days=days,
        params=params,
        torch_threads=lineage.torch_threads,
        metrics=_compare(registered, reproduced),
        tolerance=TOLERANCE,
        recorded_code_version=lineage.code_version,
        code_version=code,
        recorded_torch_version=lineage.torch_version,
        torch_version=torch_version,
        warnings=warnings,
        workdir=str(workdir) if workdir is not None else None,
        at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    _record(
        client,
        name,
        version,
        matched=result.matched,
        difference=result.max_difference,
        data_version=rebuilt,
        at=result.at,
    )
    return result


def render(result: Reproduction) -> str:
    """The result as plain text."""
    days = result.days
    lines = [
        f"{result.model_name} v{result.version} (MLflow run {result.run_id})",
        f"  landing files   {len(days)} day(s), {days[0]} .. {days[-1]}: sha256 as recorded",
        f"  training_set    recorded {result.training_set_version}, rebuilt "
        f"{result.rebuilt_training_set_version}",
        f"  retrained       on cpu, {result.torch_threads} torch thread(s), "
        + ", ".join(f"{k} {v}" for k, v in result.params.items() if k != "device"),
        f"  code            recorded {result.recorded_code_version}, now {result.code_version}",
        f"  torch           recorded {result.recorded_torch_version}, now {result.torch_version}",
        "",
        f"  {'test metric':<28} {'registered':>20} {'reproduced':>20} {'difference':>12}  match",
    ]
    for m in result.metrics:
        reproduced = "-" if m.reproduced is None else f"{m.reproduced:.12g}"
        difference = "-" if m.difference is None else f"{m.difference:.3g}"
        lines.append(
            f"  {m.name:<28} {m.registered:>20.12g} {reproduced:>20} {difference:>12}  "
            f"{'yes' if m.match else 'NO'}"
        )
    lines.append("")
    lines.extend(f"  warning: {w}" for w in result.warnings)
    if result.workdir:
        lines.append(f"  scratch data directory kept: {result.workdir}")
    failed = [m.name for m in result.metrics if not m.match]
    lines.append(
        f"reproduced: every test metric within {result.tolerance:g} (largest difference "
        f"{result.max_difference:.3g})"
        if not failed
        else f"NOT reproduced: {', '.join(failed)} differ by more than {result.tolerance:g} "
        f"(largest difference {result.max_difference:.3g})"
    )
    return "\n".join(lines)


def as_json(result: Reproduction) -> str:
    """The result as JSON, with `matched` and `max_difference`."""
    return json.dumps(
        {**dataclasses.asdict(result), "matched": result.matched, "max_difference": result.max_difference},
        indent=2,
        allow_nan=True,
    )


def run_reproduce(args: argparse.Namespace) -> int:
    """`mlops reproduce`: progress on stderr, the result on stdout; 0 reproduced, 1 not.
    LookupError and ValueError propagate for the CLI to print as one line (exit code 2)."""
    import sys

    with _stdout_to_stderr():  # dbt and the pipeline print; stdout carries the result only
        result = reproduce(
            Settings.from_env(),
            args.version,
            args.workdir,
            progress=lambda line: print(f"reproduce: {line}", file=sys.stderr, flush=True),
        )
    print(as_json(result) if args.json else render(result))
    return 0 if result.matched else 1


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what this process and its children write to stdout to stderr instead, file
    descriptor and all."""
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _model_version(client: MlflowClient, name: str, version: str, tracking_uri: str) -> Any:
    from mlflow.exceptions import MlflowException

    if not version.isdigit():
        raise ValueError(f"version {version!r}: give a version number of {name}, e.g. 3")
    try:
        found = client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise LookupError(
                f"{name} has no version {version} in the registry at {redact_uri(tracking_uri)}"
            ) from None
        raise
    if not found.run_id:
        raise LookupError(f"{name} v{version} names no MLflow run: it was not registered by trained_model")
    return found


def _warnings(lineage: TrainingLineage, tags: dict[str, str]) -> list[str]:
    warnings = []
    if lineage.device != "cpu":
        warnings.append(
            f"trained on {lineage.device}: the reproduction trains on cpu, whose arithmetic can differ"
        )
    if tags.get("mlops.stop_reason") == "time_budget":
        warnings.append(
            "training stopped on its time budget, which depends on the machine's speed: reproduction "
            "of the budget cannot be exact, so the retraining runs the same number of epochs instead"
        )
    return warnings


def _retrain_params(
    client: MlflowClient, run_id: str, lineage: TrainingLineage, tags: dict[str, str], warnings: list[str]
) -> dict[str, Any]:
    """`trained_model`'s run config: every recorded parameter, no time budget (the scratch spec
    has none), on CPU; after a stop on the time budget, the epochs the run trained."""
    params = {k: v for k, v in lineage.params.items() if k != "time_budget_minutes" and v is not None}
    if tags.get("mlops.stop_reason") == "time_budget":
        params["epochs"] = len(client.get_metric_history(run_id, "train_loss"))
    return {**params, "device": "cpu"}


def _scratch_settings(
    settings: Settings, lineage: TrainingLineage, scratch: Path, warnings: list[str]
) -> Settings:
    """A data directory under `scratch` holding copies of the recorded landing files, and the
    recorded spec (without a time budget) beside it."""
    import yaml

    from mlops_platform.lib.ingestion import spec_digest

    home = scratch / "home"
    landing = home / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    for day in lineage.days:
        shutil.copy2(landing_path(settings.landing_dir, day), landing_path(landing, day))
    spec = json.loads(json.dumps(lineage.spec))
    spec.setdefault("training", {})["time_budget_minutes"] = None
    spec_path = scratch / "spec" / f"{lineage.dataset}.yaml"
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    scratch_settings = Settings(
        home=home,
        dataset_spec_path=spec_path,
        mlflow_tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
        mlflow_artifact_root=str(home / "mlflow" / "artifacts"),
        dbt_executable=settings.dbt_executable,
        mlflow_ui_url="",
        dagster_ui_url="",
    )
    loaded = scratch_settings.load_spec()
    budget = lineage.spec.get("training", {}).get("time_budget_minutes")
    as_recorded = loaded.model_copy(
        update={"training": loaded.training.model_copy(update={"time_budget_minutes": budget})}
    )
    if spec_digest(as_recorded) != lineage.spec_digest:
        warnings.append(
            f"the recorded dataset spec of {lineage.dataset} loads back with digest "
            f"{spec_digest(as_recorded)}, recorded {lineage.spec_digest}"
        )
    return scratch_settings


def stretches(days: list[str]) -> list[tuple[str, str]]:
    """Runs of consecutive days as (first, last), oldest first."""
    found: list[tuple[str, str]] = []
    for day in sorted(days):
        if found and dt.date.fromisoformat(day) - dt.date.fromisoformat(found[-1][1]) == dt.timedelta(days=1):
            found[-1] = (found[-1][0], day)
        else:
            found.append((day, day))
    return found


def _rebuild_training_set(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    settings: Settings,
    days: list[str],
    say: Callable[[str], None],
) -> str:
    """`data_pipeline` over each stretch of consecutive days; the rebuilt training_set's version."""
    from mlops_platform.defs.jobs import DATA_PIPELINE
    from mlops_platform.lib import warehouse

    for first, last in stretches(days):
        say(f"data_pipeline over {first} .. {last}")
        result = defs.resolve_job_def(DATA_PIPELINE).execute_in_process(
            instance=instance,
            run_config=_QUIET,
            tags={
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last,
                "mlops/trigger": "mlops reproduce",
            },
            raise_on_error=False,
        )
        if not result.success:
            raise ValueError(f"rebuilding days {first} .. {last} failed: {_failure(result)}")
    version = warehouse.table_version(settings.warehouse_path, "training_set")
    if version is None:
        raise ValueError("the data pipeline ran but recorded no training_set version")
    return version


def _retrain(
    defs: dg.Definitions, instance: dg.DagsterInstance, params: dict[str, Any]
) -> tuple[dict[str, float], str]:
    """`trained_model` and `model_evaluation` of `retrain_model` with `params` and no search;
    the test metrics and the MLflow run id."""
    import dagster as dg

    from mlops_platform.defs.jobs import RETRAIN_MODEL

    result = defs.resolve_job_def(RETRAIN_MODEL).execute_in_process(
        instance=instance,
        run_config={
            **_QUIET,
            "ops": {
                "hyperparameter_search": {"config": {"trials": 0}},
                "trained_model": {"config": params},
            },
        },
        asset_selection=[
            dg.AssetKey("hyperparameter_search"),
            dg.AssetKey("trained_model"),
            dg.AssetKey("model_evaluation"),
        ],
        tags={"mlops/trigger": "mlops reproduce"},
        raise_on_error=False,
    )
    if not (result.is_node_success("trained_model") and result.is_node_success("model_evaluation")):
        raise ValueError(f"retraining failed: {_failure(result)}")
    evaluation = result.output_for_node("model_evaluation")
    return dict(evaluation["metrics"]), result.output_for_node("trained_model").mlflow_run_id


def _failure(result: dg.ExecuteInProcessResult) -> str:
    """Why a run failed, on one line: its failed steps' errors and failed checks."""
    reasons = [
        f"{event.step_key}: {event.event_specific_data.error.message.strip()}"
        for event in result.get_step_failure_events()
        if event.event_specific_data is not None and event.event_specific_data.error is not None
    ]
    reasons += [
        f"check {e.asset_key.to_user_string()}:{e.check_name} failed: {e.description}"
        for e in result.get_asset_check_evaluations()
        if not e.passed
    ]
    return "; ".join(line.replace("\n", " ") for line in reasons) or "see the run's logs"


def _compare(registered: dict[str, float], reproduced: dict[str, float]) -> list[MetricComparison]:
    names = [n for n in _FIRST if n in registered] + sorted(set(registered) - set(_FIRST))
    compared = []
    for name in names:
        value = registered[name]
        again = reproduced.get(name)
        if again is None:
            compared.append(MetricComparison(name, value, None, None, False))
            continue
        both_nan = math.isnan(value) and math.isnan(again)
        difference = 0.0 if both_nan else float(again) - float(value)
        match = both_nan or abs(difference) <= TOLERANCE
        compared.append(MetricComparison(name, value, float(again), difference, match))
    return compared


def _record(
    client: MlflowClient,
    name: str,
    version: str,
    matched: bool,
    difference: float | None,
    data_version: str,
    at: str | None = None,
) -> None:
    """The outcome as tag `reproduction` on the model version (the audit trail reads it)."""
    outcome = {
        "at": at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "matched": matched,
        "max_difference": difference,
        "training_set_version": data_version,
    }
    client.set_model_version_tag(name, version, TAG, json.dumps(outcome))


@contextlib.contextmanager
def _ephemeral_instance(scratch: Path) -> Iterator[dg.DagsterInstance]:
    import dagster as dg

    with dg.DagsterInstance.ephemeral(tempdir=str(scratch / "dagster")) as instance:
        yield instance


@contextlib.contextmanager
def _mlflow_uris_kept() -> Iterator[None]:
    """Restore MLflow's process-wide tracking and registry URIs (and their variables) afterwards:
    the scratch runs point them at the scratch store."""
    import mlflow

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {n: os.environ.get(n) for n in names}
    tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        yield
    finally:
        mlflow.set_tracking_uri(tracking)
        mlflow.set_registry_uri(registry)
        for n, value in saved.items():
            if value is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = value


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Train on the recorded number of torch threads: CPU reductions split by thread, so another
    count can change the weights in their last bits."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _code_version() -> str:
    from mlops_platform.resources.mlflow import code_version

    return code_version()


def _torch_version() -> str:
    import torch

    return torch.__version__
