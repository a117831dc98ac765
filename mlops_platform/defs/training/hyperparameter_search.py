"""`hyperparameter_search`: Optuna trials on the train split, judged on validation only."""

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.defs.training.evaluation import images_markdown
from mlops_platform.defs.training.params import resolve_params, search_fingerprint
from mlops_platform.defs.training.trained_model import training_run_tags
from mlops_platform.defs.training.training_set_reads import TABLE, load_splits, training_set_version
from mlops_platform.lib import warehouse
from mlops_platform.lib.training_params import TrainingParams
from mlops_platform.resources.mlflow import MlflowTracking, url_metadata
from mlops_platform.settings import Settings

if TYPE_CHECKING:
    from mlops_platform.lib.training import TrainingData

GROUP = "training"


class SearchConfig(dg.Config):
    """Per-run overrides of the spec's `training.search` (null keeps the spec's value)."""

    trials: int | None = Field(None, ge=0)
    timeout_minutes: float | None = Field(None, gt=0.0)


def build_hyperparameter_search_asset(settings: Settings, spec: DatasetSpec) -> dg.AssetsDefinition:
    searched = ", ".join(spec.training.search.parameters)

    @dg.asset(
        key="hyperparameter_search",
        group_name=GROUP,
        deps=[TABLE],
        kinds={"optuna", "mlflow"},
        backfill_policy=dg.BackfillPolicy.single_run(),  # lets `--partition-range` runs include it
        description=(
            f"Optuna TPE search over {searched}: each trial trains on the train split and is judged "
            "by its validation loss (a median pruner stops weak trials early); the test split is "
            "never read. Every trial is a nested MLflow run. The best trial's values go to "
            "trained_model; with `training.search.trials: 0` the spec's values go as they are."
        ),
    )
    def hyperparameter_search(
        context: dg.AssetExecutionContext, config: SearchConfig, mlflow: MlflowTracking
    ) -> dg.Output[dict]:
        trials = spec.training.search.trials if config.trials is None else config.trials
        timeout = config.timeout_minutes or spec.training.search.timeout_minutes
        if trials == 0:
            context.log.info("training.search.trials is 0: trained_model takes the spec's values")
            return dg.Output(
                {"searched": False, "best_params": {}},
                metadata={
                    "searched": dg.MetadataValue.bool(False),
                    "reason": dg.MetadataValue.text("training.search.trials is 0"),
                },
            )
        import mlflow as mlflow_api

        from mlops_platform.lib.hyperparameter_search import Trial, plot_trials, search, trials_table
        from mlops_platform.lib.training import choose_device

        base = resolve_params(spec)
        device = choose_device("auto")
        data_version = training_set_version(settings.warehouse_path)
        tags = training_run_tags(context, spec, data_version, mlflow)

        def log_trial(trial: Trial) -> None:
            parent = mlflow_api.active_run()
            with mlflow_api.start_run(
                run_name=f"trial-{trial.number}",
                experiment_id=parent.info.experiment_id,
                nested=True,
                tags=tags,
            ):
                mlflow_api.log_params({k: str(v) for k, v in trial.params.items()})
                for epoch in trial.history:
                    mlflow_api.log_metrics(
                        {"train_loss": epoch["train_loss"], "validation_loss": epoch["validation_loss"]},
                        step=int(epoch["epoch"]),
                    )
                if trial.value is not None:
                    mlflow_api.log_metric("best_validation_loss", trial.value)
                mlflow_api.set_tag("optuna.state", trial.state)
            context.log.info(
                f"trial {trial.number}: {trial.state}, validation loss "
                f"{trial.value if trial.value is None else round(trial.value, 4)} after "
                f"{len(trial.history)} epochs, {trial.params}"
            )

        with (
            tempfile.TemporaryDirectory(prefix="search-") as exports,
            warehouse.connect(settings.warehouse_path, read_only=True) as con,
            mlflow.start_run(run_name=f"search-{context.run.run_id[:8]}", tags=tags) as run,
        ):
            mlflow_api.log_params(
                {
                    "trials": trials,
                    "timeout_minutes": timeout,
                    "parameters": searched,
                    "sampler": f"TPE(seed={base.seed})",
                }
            )

            def load(params: TrainingParams) -> "TrainingData":
                """The splits for a trial's batch size, exported (when large) to a folder of their own."""
                folder = Path(exports) / f"batch_size_{params.batch_size or 'auto'}"
                folder.mkdir(exist_ok=True)
                return load_splits(con, spec, params, folder)

            result = search(
                load,
                base,
                spec.training.search.parameters,
                trials,
                timeout,
                device=device,
                on_trial=log_trial,
            )
            chart = plot_trials(result, settings.models_dir / run.info.run_id / "plots" / "search.png")
            mlflow_api.log_artifact(str(chart), artifact_path="search")
            mlflow_api.log_params({f"best_{k}": str(v) for k, v in result.best_params.items()})
            mlflow_api.log_metric("best_validation_loss", result.best.value)

        states = [t.state for t in result.trials]
        context.log.info(
            f"best trial {result.best.number} of {len(result.trials)} (validation loss "
            f"{result.best.value:.4f}): {result.best_params}"
        )
        return dg.Output(
            {
                "searched": True,
                "best_params": result.best_params,
                "fingerprint": search_fingerprint(spec, data_version),
                "best_trial": result.best.number,
                "best_validation_loss": result.best.value,
                "trials": len(result.trials),
                "mlflow_run_id": run.info.run_id,
            },
            metadata={
                "searched": dg.MetadataValue.bool(True),
                "best_params": dg.MetadataValue.json(result.best_params),
                "best_trial": dg.MetadataValue.int(result.best.number),
                "best_validation_loss": dg.MetadataValue.float(result.best.value),
                "trials_run": dg.MetadataValue.int(len(result.trials)),
                "trials_pruned": dg.MetadataValue.int(states.count("PRUNED")),
                "trials": dg.MetadataValue.md(trials_table(result)),
                "chart": dg.MetadataValue.md(images_markdown({"search": chart})),
                "mlflow_run_id": dg.MetadataValue.text(run.info.run_id),
                **url_metadata(mlflow_run=mlflow.run_url(run.info.run_id)),
                "training_set_version": dg.MetadataValue.text(data_version),
            },
        )

    return hyperparameter_search
