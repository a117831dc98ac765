"""`trained_model`: the torch network trained on `training_set`, tracked in MLflow."""

import dataclasses
import tempfile
from pathlib import Path

import dagster as dg

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.defs.training.model_ref import ModelRef
from mlops_platform.defs.training.params import TrainingConfig, resolve_params, search_fingerprint
from mlops_platform.defs.training.training_set_reads import (
    TABLE,
    load_splits,
    split_query,
    training_set_version,
)
from mlops_platform.feature_repo.definitions import ENTITY_KEY
from mlops_platform.lib import warehouse
from mlops_platform.lib.ingestion import spec_digest
from mlops_platform.lib.training_params import TrainingParams
from mlops_platform.resources.mlflow import MlflowTracking, code_version, url_metadata
from mlops_platform.settings import Settings

GROUP = "training"


def build_trained_model_asset(settings: Settings, spec: DatasetSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key="trained_model",
        group_name=GROUP,
        deps=[TABLE],
        ins={"hyperparameter_search": dg.AssetIn("hyperparameter_search")},
        kinds={"pytorch", "mlflow"},
        backfill_policy=dg.BackfillPolicy.single_run(),  # lets `--partition-range` runs include it
        description=(
            "A tabular MLP (standardized numerics with missing indicators, embeddings for "
            "categoricals) trained on the train split, early-stopped on validation, saved as one "
            "TorchScript file and logged to MLflow as a pyfunc model. Reads the splits in SQL and "
            "streams large ones from Parquet in bounded memory. Hyperparameters: the spec's `training` "
            "section, the best trial of hyperparameter_search, then the run's config. A logistic-"
            "regression baseline (the same preprocessing, no hidden layer) trains in the same run."
        ),
    )
    def trained_model(
        context: dg.AssetExecutionContext,
        config: TrainingConfig,
        mlflow: MlflowTracking,
        hyperparameter_search: dict,
    ) -> dg.Output[ModelRef]:
        import mlflow as mlflow_api
        import torch

        from mlops_platform.lib.evaluation import choose_threshold
        from mlops_platform.lib.lineage import TrainingLineage, write_lineage
        from mlops_platform.lib.model_artifact import save_artifact
        from mlops_platform.lib.pyfunc_model import log_pyfunc
        from mlops_platform.lib.training import choose_device, fit, predict_source
        from mlops_platform.lib.training_batches import ParquetBatches, select_sql

        data_version = training_set_version(settings.warehouse_path)
        landed = landed_days(settings.warehouse_path, data_version)
        searched = hyperparameter_search["best_params"] if hyperparameter_search["searched"] else {}
        if searched and hyperparameter_search["fingerprint"] != search_fingerprint(spec, data_version):
            raise dg.Failure(
                "hyperparameter_search's result was found for other training values or another "
                "training_set: materialize hyperparameter_search again (retrain_model does), or set "
                "its trials to 0"
            )
        requested = resolve_params(spec, searched, config)
        device = choose_device(config.device)
        tags = training_run_tags(context, spec, data_version, mlflow)
        features = select_sql(split_query("validation"), spec.features.numeric, spec.features.categorical)
        with tempfile.TemporaryDirectory(prefix="training_set-") as exports:
            with warehouse.connect(settings.warehouse_path, read_only=True) as con:
                data = load_splits(con, spec, requested, Path(exports))
                example = con.sql(f"{features} ORDER BY {ENTITY_KEY} LIMIT 3").df()[spec.features.all]
            params = data.params
            chosen = {**dataclasses.asdict(params), "device": config.device}
            provenance = {
                name: (
                    value,
                    "run config" if name in config.overrides() else "search" if name in searched else "spec",
                )
                for name, value in dataclasses.asdict(params).items()
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
                        "params_from_search": ",".join(sorted(searched)) or "-",
                        "params_from_run_config": ",".join(sorted(config.overrides())) or "-",
                        "device": str(device),
                        "train_rows": data.train.rows,
                        "validation_rows": data.validation.rows,
                        "streamed": streamed,
                    }
                )
                lineage = TrainingLineage(
                    training_set_version=data_version,
                    dataset=spec.name,
                    spec=spec.model_dump(mode="json"),
                    spec_digest=spec_digest(spec),
                    days=landed,
                    params=dataclasses.asdict(params),
                    device=str(device),
                    code_version=tags["mlops.code_version"],
                    torch_version=torch.__version__,
                    torch_threads=torch.get_num_threads(),
                )
                write_lineage(mlflow.client(), run.info.run_id, lineage)
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
                meta = {
                    "dataset": spec.name,
                    "label": spec.label.column,
                    "positive_class": spec.label.positive_class,
                    "features": spec.features.all,
                    "mlflow_run_id": run.info.run_id,
                    "training_set_version": data_version,
                }
                artifact = save_artifact(
                    outcome.net,
                    outcome.encoder,
                    {**meta, "threshold": threshold},
                    settings.models_dir / run.info.run_id / "model.pt",
                )
                mlflow_api.log_metrics({"best_epoch": outcome.best_epoch, "decision_threshold": threshold})
                baseline = fit(
                    dataclasses.replace(data, params=baseline_params(resolve_params(spec), params)),
                    device=device,
                )
                baseline_scores, _ = predict_source(baseline.net, data.validation)
                baseline_artifact = save_artifact(
                    baseline.net,
                    baseline.encoder,
                    {**meta, "threshold": choose_threshold(labels, baseline_scores), "baseline": True},
                    settings.models_dir / run.info.run_id / "baseline.pt",
                )
                mlflow_api.log_metric("baseline_best_epoch", baseline.best_epoch)
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
            baseline_artifact_path=str(baseline_artifact),
        )
        return dg.Output(
            ref,
            metadata={
                "mlflow_run_id": dg.MetadataValue.text(run.info.run_id),
                **url_metadata(mlflow_run=mlflow.run_url(run.info.run_id)),
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
                "params": dg.MetadataValue.md(
                    "| parameter | value | from |\n|---|---|---|\n"
                    + "\n".join(f"| {k} | {v} | {source} |" for k, (v, source) in provenance.items())
                ),
                "baseline_artifact": dg.MetadataValue.path(str(baseline_artifact)),
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


def landed_days(warehouse_path: Path, data_version: str) -> dict[str, dict]:
    """The landed days recorded with `training_set` when its recorded version is `data_version`
    (`{day: {"file", "sha256", "size", "run_id", "raw_version"}}`), else none."""
    record = warehouse.table_record(warehouse_path, TABLE)
    days = record.get("landed_days")
    return days if record.get("version") == data_version and isinstance(days, dict) else {}


def training_run_tags(
    context: dg.AssetExecutionContext, spec: DatasetSpec, data_version: str, mlflow: MlflowTracking
) -> dict:
    """The tags of an MLflow run a training asset opens: the Dagster run (id and UI page) and
    asset, the dataset, the `training_set` data version and the code's git commit."""
    tags = {
        "dagster.run_id": context.run.run_id,
        "dagster.asset": context.asset_key.to_user_string(),
        "mlops.dataset": spec.name,
        "mlops.training_set_version": data_version,
        "mlops.code_version": code_version(),
    }
    url = mlflow.dagster_run_url(context.run.run_id)
    return {**tags, "dagster.run_url": url} if url else tags


def baseline_params(spec_values: TrainingParams, model: TrainingParams) -> TrainingParams:
    """The logistic-regression baseline: no hidden layer or dropout, the spec's optimizer
    settings (never the searched ones, fitted to the network), the model's batches and epochs."""
    return dataclasses.replace(
        model,
        hidden_sizes=[],
        dropout=0.0,
        optimizer=spec_values.optimizer,
        learning_rate=spec_values.learning_rate,
        weight_decay=spec_values.weight_decay,
    )
