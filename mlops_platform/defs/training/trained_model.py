"""`trained_model`: the torch network trained on `training_set`, tracked in MLflow."""

from typing import Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.defs.training.model_ref import ModelRef
from mlops_platform.lib.batches import content_hash
from mlops_platform.lib.training_params import DEFAULT_HIDDEN_SIZES, TrainingParams
from mlops_platform.resources.mlflow import MlflowTracking, code_version
from mlops_platform.settings import Settings

GROUP = "training"


class TrainingConfig(dg.Config):
    """Hyperparameters (`lib.training.TrainingParams`), settable per run from the launchpad."""

    hidden_sizes: list[int] = Field(default_factory=lambda: list(DEFAULT_HIDDEN_SIZES))
    dropout: float = TrainingParams.dropout
    learning_rate: float = TrainingParams.learning_rate
    weight_decay: float = TrainingParams.weight_decay
    epochs: int = TrainingParams.epochs
    batch_size: int = TrainingParams.batch_size
    patience: int = TrainingParams.patience
    seed: int = TrainingParams.seed
    class_weighting: Literal["none", "balanced"] = TrainingParams.class_weighting
    device: Literal["auto", "cpu", "cuda"] = "auto"


def build_trained_model_asset(settings: Settings, spec: DatasetSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key="trained_model",
        group_name=GROUP,
        ins={"training_set": dg.AssetIn(input_manager_key="warehouse_io_manager")},
        kinds={"pytorch", "mlflow"},
        backfill_policy=dg.BackfillPolicy.single_run(),  # lets `--partition-range` runs include it
        description=(
            "A tabular MLP (standardized numerics with missing indicators, embeddings for "
            "categoricals) trained on the train split, early-stopped on validation, saved as one "
            "TorchScript file and logged to MLflow as a pyfunc model."
        ),
    )
    def trained_model(
        context: dg.AssetExecutionContext,
        config: TrainingConfig,
        training_set: pd.DataFrame,
        mlflow: MlflowTracking,
    ) -> dg.Output[ModelRef]:
        import mlflow as mlflow_api

        from mlops_platform.lib.evaluation import choose_threshold
        from mlops_platform.lib.model_artifact import save_artifact
        from mlops_platform.lib.pyfunc_model import log_pyfunc
        from mlops_platform.lib.training import choose_device, predict_proba, train_model

        train = training_set[training_set["split"] == "train"]
        validation = training_set[training_set["split"] == "validation"]
        params = TrainingParams(**config.model_dump(exclude={"device"}))
        data_version = content_hash(training_set)
        device = choose_device(config.device)
        tags = {
            "dagster.run_id": context.run.run_id,
            "dagster.asset": "trained_model",
            "mlops.dataset": spec.name,
            "mlops.training_set_version": data_version,
            "mlops.code_version": code_version(),
        }
        with mlflow.start_run(run_name=f"train-{context.run.run_id[:8]}", tags=tags) as run:
            mlflow_api.log_params({**config.model_dump(), "device": str(device), "train_rows": len(train)})
            outcome = train_model(
                train,
                validation,
                spec.features.numeric,
                spec.features.categorical,
                params,
                device=device,
                on_epoch=lambda r: mlflow_api.log_metrics(
                    {"train_loss": r["train_loss"], "validation_loss": r["validation_loss"]},
                    step=int(r["epoch"]),
                ),
            )
            threshold = choose_threshold(
                validation["label"].to_numpy(), predict_proba(outcome.net, outcome.encoder, validation)
            )
            folder = settings.models_dir / run.info.run_id
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
                folder / "model.pt",
            )
            mlflow_api.log_metrics({"best_epoch": outcome.best_epoch, "decision_threshold": threshold})
            example = (
                validation[spec.features.all].head(3).astype({n: "float64" for n in spec.features.numeric})
            )
            logged = log_pyfunc(artifact, example)
            context.log.info(
                f"trained on {device} for {len(outcome.history)} epochs (best {outcome.best_epoch}), "
                f"threshold {threshold:.3f}; MLflow run {run.info.run_id}"
            )
        best = outcome.history[outcome.best_epoch - 1]
        ref = ModelRef(
            mlflow_run_id=run.info.run_id,
            model_uri=logged.model_uri,
            artifact_path=str(artifact),
            threshold=threshold,
            training_set_version=data_version,
            device=str(device),
            params=config.model_dump(),
        )
        return dg.Output(
            ref,
            metadata={
                "mlflow_run_id": dg.MetadataValue.text(run.info.run_id),
                "model_uri": dg.MetadataValue.text(logged.model_uri),
                "artifact": dg.MetadataValue.path(str(artifact)),
                "device": dg.MetadataValue.text(str(device)),
                "epochs_run": dg.MetadataValue.int(len(outcome.history)),
                "best_epoch": dg.MetadataValue.int(outcome.best_epoch),
                "best_validation_loss": dg.MetadataValue.float(best["validation_loss"]),
                "decision_threshold": dg.MetadataValue.float(threshold),
                "training_set_version": dg.MetadataValue.text(data_version),
                "loss_curve": dg.MetadataValue.md(
                    "| epoch | train loss | validation loss |\n|---:|---:|---:|\n"
                    + "\n".join(
                        f"| {int(r['epoch'])} | {r['train_loss']:.4f} | {r['validation_loss']:.4f} |"
                        for r in outcome.history
                    )
                ),
            },
        )

    return trained_model
