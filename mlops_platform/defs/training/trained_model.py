"""`trained_model`: the torch network trained on `training_set`, tracked in MLflow."""

import tempfile
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.defs.training.model_ref import ModelRef
from mlops_platform.defs.training.training_set_reads import TABLE, split_query, training_set_version
from mlops_platform.feature_repo.definitions import ENTITY_KEY
from mlops_platform.lib import warehouse
from mlops_platform.lib.training_params import DEFAULT_HIDDEN_SIZES, TrainingParams
from mlops_platform.resources.mlflow import MlflowTracking, code_version
from mlops_platform.settings import Settings

GROUP = "training"


class TrainingConfig(dg.Config):
    """Hyperparameters (`lib.training_params.TrainingParams`), settable per run from the launchpad.

    `epochs`, `batch_size`, `time_budget_minutes`: None takes the spec's `training` value;
    where that is null too, epochs and batch size follow the number of train rows and there
    is no time budget.
    """

    hidden_sizes: list[int] = Field(default_factory=lambda: list(DEFAULT_HIDDEN_SIZES))
    dropout: float = TrainingParams.dropout
    learning_rate: float = TrainingParams.learning_rate
    weight_decay: float = TrainingParams.weight_decay
    epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    time_budget_minutes: float | None = Field(None, gt=0.0)
    patience: int = TrainingParams.patience
    seed: int = TrainingParams.seed
    class_weighting: Literal["none", "balanced"] = TrainingParams.class_weighting
    device: Literal["auto", "cpu", "cuda"] = "auto"


def build_trained_model_asset(settings: Settings, spec: DatasetSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key="trained_model",
        group_name=GROUP,
        deps=[TABLE],
        kinds={"pytorch", "mlflow"},
        backfill_policy=dg.BackfillPolicy.single_run(),  # lets `--partition-range` runs include it
        description=(
            "A tabular MLP (standardized numerics with missing indicators, embeddings for "
            "categoricals) trained on the train split, early-stopped on validation, saved as one "
            "TorchScript file and logged to MLflow as a pyfunc model. Reads the splits in SQL and "
            "streams large ones from Parquet in bounded memory; batch size and epochs follow the "
            "spec or the number of train rows."
        ),
    )
    def trained_model(
        context: dg.AssetExecutionContext, config: TrainingConfig, mlflow: MlflowTracking
    ) -> dg.Output[ModelRef]:
        import mlflow as mlflow_api

        from mlops_platform.lib.evaluation import choose_threshold
        from mlops_platform.lib.model_artifact import save_artifact
        from mlops_platform.lib.pyfunc_model import log_pyfunc
        from mlops_platform.lib.training import choose_device, fit, load_training_data, predict_source
        from mlops_platform.lib.training_batches import ParquetBatches, select_sql

        requested = TrainingParams(
            **config.model_dump(exclude={"device", "epochs", "batch_size", "time_budget_minutes"}),
            epochs=config.epochs or spec.training.epochs,
            batch_size=config.batch_size or spec.training.batch_size,
            time_budget_minutes=config.time_budget_minutes or spec.training.time_budget_minutes,
        )
        data_version = training_set_version(settings.warehouse_path)
        device = choose_device(config.device)
        tags = {
            "dagster.run_id": context.run.run_id,
            "dagster.asset": "trained_model",
            "mlops.dataset": spec.name,
            "mlops.training_set_version": data_version,
            "mlops.code_version": code_version(),
        }
        features = select_sql(split_query("validation"), spec.features.numeric, spec.features.categorical)
        with tempfile.TemporaryDirectory(prefix="training_set-") as exports:
            with warehouse.connect(settings.warehouse_path, read_only=True) as con:
                data = load_training_data(
                    con,
                    split_query("train"),
                    split_query("validation"),
                    ENTITY_KEY,
                    spec.features.numeric,
                    spec.features.categorical,
                    requested,
                    Path(exports),
                )
                example = con.sql(f"{features} ORDER BY {ENTITY_KEY} LIMIT 3").df()[spec.features.all]
            params = data.params
            chosen = {
                **config.model_dump(),
                "epochs": params.epochs,
                "batch_size": params.batch_size,
                "time_budget_minutes": params.time_budget_minutes,
            }
            streamed = isinstance(data.train, ParquetBatches)
            context.log.info(
                f"{data.train.rows} train rows ({'streamed from Parquet' if streamed else 'in memory'}): "
                f"batch size {params.batch_size}, at most {params.epochs} epochs"
            )
            with mlflow.start_run(run_name=f"train-{context.run.run_id[:8]}", tags=tags) as run:
                mlflow_api.log_params(
                    {
                        **chosen,
                        "device": str(device),
                        "train_rows": data.train.rows,
                        "validation_rows": data.validation.rows,
                        "streamed": streamed,
                    }
                )
                outcome = fit(
                    data,
                    device=device,
                    on_epoch=lambda r: mlflow_api.log_metrics(
                        {
                            "train_loss": r["train_loss"],
                            "validation_loss": r["validation_loss"],
                            "rows_per_second": r["rows_per_second"],
                        },
                        step=int(r["epoch"]),
                    ),
                )
                scores, labels = predict_source(outcome.net, data.validation)
                threshold = choose_threshold(labels, scores)
                artifact = save_artifact(
                    outcome.net,
                    outcome.encoder,
                    {
                        "threshold": threshold,
                        "dataset": spec.name,
                        "label": spec.label.column,
                        "positive_class": spec.label.positive_class,
                        "features": spec.features.all,
                        "mlflow_run_id": run.info.run_id,
                        "training_set_version": data_version,
                    },
                    settings.models_dir / run.info.run_id / "model.pt",
                )
                mlflow_api.log_metrics({"best_epoch": outcome.best_epoch, "decision_threshold": threshold})
                mlflow_api.set_tag("mlops.stop_reason", outcome.stop_reason)
                logged = log_pyfunc(artifact, example)
                context.log.info(
                    f"trained on {device} for {len(outcome.history)} epochs (best {outcome.best_epoch}, "
                    f"stop: {outcome.stop_reason}), threshold {threshold:.3f}; MLflow run {run.info.run_id}"
                )
        best = outcome.history[outcome.best_epoch - 1]
        ref = ModelRef(
            mlflow_run_id=run.info.run_id,
            model_uri=logged.model_uri,
            artifact_path=str(artifact),
            threshold=threshold,
            training_set_version=data_version,
            device=str(device),
            params=chosen,
        )
        return dg.Output(
            ref,
            metadata={
                "mlflow_run_id": dg.MetadataValue.text(run.info.run_id),
                "model_uri": dg.MetadataValue.text(logged.model_uri),
                "artifact": dg.MetadataValue.path(str(artifact)),
                "device": dg.MetadataValue.text(str(device)),
                "train_rows": dg.MetadataValue.int(data.train.rows),
                "streamed": dg.MetadataValue.bool(streamed),
                "batch_size": dg.MetadataValue.int(params.batch_size),
                "epochs": dg.MetadataValue.int(params.epochs),
                "time_budget_minutes": dg.MetadataValue.float(params.time_budget_minutes)
                if params.time_budget_minutes is not None
                else dg.MetadataValue.null(),
                "stop_reason": dg.MetadataValue.text(outcome.stop_reason),
                "epochs_run": dg.MetadataValue.int(len(outcome.history)),
                "best_epoch": dg.MetadataValue.int(outcome.best_epoch),
                "best_validation_loss": dg.MetadataValue.float(best["validation_loss"]),
                "rows_per_second": dg.MetadataValue.float(
                    sum(r["rows_per_second"] for r in outcome.history) / len(outcome.history)
                ),
                "decision_threshold": dg.MetadataValue.float(threshold),
                "training_set_version": dg.MetadataValue.text(data_version),
                "loss_curve": dg.MetadataValue.md(
                    "| epoch | train loss | validation loss | rows/s |\n|---:|---:|---:|---:|\n"
                    + "\n".join(
                        f"| {int(r['epoch'])} | {r['train_loss']:.4f} | {r['validation_loss']:.4f} "
                        f"| {r['rows_per_second']:,.0f} |"
                        for r in outcome.history
                    )
                ),
            },
        )

    return trained_model
