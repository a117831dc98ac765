"""`model_evaluation` on the held-out test split, and its blocking quality gates."""

import base64
from pathlib import Path

import dagster as dg

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.defs.training.model_ref import ModelRef
from mlops_platform.defs.training.training_set_reads import TABLE, split_record_batches
from mlops_platform.lib.metric_names import LOWER_IS_BETTER
from mlops_platform.resources.mlflow import MlflowTracking
from mlops_platform.settings import Settings

GROUP = "training"
CHAMPION = "champion"


def images_markdown(paths: dict[str, Path]) -> str:
    """PNG plots inlined as markdown images (shown in the asset's metadata)."""
    return "\n\n".join(
        f"**{name}**\n\n![{name}](data:image/png;base64,{base64.b64encode(Path(p).read_bytes()).decode()})"
        for name, p in paths.items()
    )


def metrics_table(rows: dict[str, dict[str, float]]) -> str:
    names = list(next(iter(rows.values())))
    lines = ["| metric | " + " | ".join(rows) + " |", "|---|" + "---:|" * len(rows)]
    lines += [f"| {n} | " + " | ".join(f"{rows[c][n]:.4f}" for c in rows) + " |" for n in names]
    return "\n".join(lines)


def build_evaluation_asset(
    settings: Settings, spec: DatasetSpec
) -> tuple[dg.AssetsDefinition, list[dg.AssetChecksDefinition]]:
    @dg.asset(
        key="model_evaluation",
        group_name=GROUP,
        deps=[TABLE],
        kinds={"mlflow"},
        backfill_policy=dg.BackfillPolicy.single_run(),  # lets `--partition-range` runs include it
        description=(
            "Test-split metrics (accuracy, precision, recall, F1, ROC AUC, PR AUC, log loss, Brier, "
            "ECE) at the threshold chosen on validation, with ROC, PR, calibration and confusion "
            "plots, logged to the training run in MLflow. Scores each split in chunks read from "
            "the warehouse."
        ),
    )
    def model_evaluation(
        context: dg.AssetExecutionContext, trained_model: ModelRef, mlflow: MlflowTracking
    ) -> dg.Output[dict]:
        import mlflow as mlflow_api

        from mlops_platform.lib.evaluation import (
            SCORING_ROWS,
            classification_metrics,
            model_scores,
            plot_evaluation,
            score_record_batches,
        )
        from mlops_platform.lib.model_artifact import load_artifact

        model = load_artifact(Path(trained_model.artifact_path))
        scored = {
            split: score_record_batches(
                model_scores(model), split_record_batches(settings.warehouse_path, spec, split, SCORING_ROWS)
            )
            for split in ("validation", "test")
        }
        splits = {
            split: classification_metrics(rows.labels, rows.scores, model.threshold)
            for split, rows in scored.items()
        }
        plots = plot_evaluation(
            scored["test"].labels,
            scored["test"].scores,
            model.threshold,
            settings.models_dir / trained_model.mlflow_run_id / "plots",
        )
        with mlflow.resume_run(trained_model.mlflow_run_id):
            for split, values in splits.items():
                mlflow_api.log_metrics({f"{split}_{k}": v for k, v in values.items()})
            for path in plots.values():
                mlflow_api.log_artifact(str(path), artifact_path="evaluation")
        context.log.info(
            f"test ROC AUC {splits['test']['roc_auc']:.4f}, accuracy {splits['test']['accuracy']:.4f}"
        )
        return dg.Output(
            {
                "metrics": splits["test"],
                "validation_metrics": splits["validation"],
                "plots": {k: str(v) for k, v in plots.items()},
            },
            metadata={
                **{f"test_{k}": dg.MetadataValue.float(v) for k, v in splits["test"].items()},
                "metrics": dg.MetadataValue.md(metrics_table(splits)),
                "plots": dg.MetadataValue.md(images_markdown(plots)),
                "mlflow_run_id": dg.MetadataValue.text(trained_model.mlflow_run_id),
            },
        )

    @dg.asset_check(
        asset=model_evaluation,
        blocking=True,
        description="Test metrics meet the spec's gates (min_metrics, max_metrics).",
    )
    def meets_metric_thresholds(model_evaluation: dict) -> dg.AssetCheckResult:
        measured = model_evaluation["metrics"]
        results = {}
        for name, limit in spec.gates.min_metrics.items():
            results[name] = {
                "measured": measured[name],
                "limit": f">= {limit}",
                "passed": measured[name] >= limit,
            }
        for name, limit in spec.gates.max_metrics.items():
            results[name] = {
                "measured": measured[name],
                "limit": f"<= {limit}",
                "passed": measured[name] <= limit,
            }
        failed = [
            f"{n} {r['measured']:.4f} (limit {r['limit']})" for n, r in results.items() if not r["passed"]
        ]
        return dg.AssetCheckResult(
            passed=not failed,
            description="failed: " + "; ".join(failed) if failed else "every metric within its limit",
            metadata={"results": dg.MetadataValue.json(results)},
        )

    @dg.asset_check(
        asset=model_evaluation,
        blocking=True,
        additional_ins={"trained_model": dg.AssetIn("trained_model")},
        additional_deps=[TABLE],
        description=(
            "No regression: the current champion is scored on the same test split; the challenger "
            f"may trail it by at most the spec's tolerance ({spec.gates.regression_tolerance}) on "
            f"{', '.join(spec.gates.regression_metrics)}. Passes when there is no champion yet."
        ),
    )
    def no_regression_vs_champion(
        model_evaluation: dict, trained_model: ModelRef, mlflow: MlflowTracking
    ) -> dg.AssetCheckResult:
        from mlops_platform.lib.evaluation import SCORING_ROWS, classification_metrics, score_record_batches

        champion = mlflow.version_for_alias(spec.registered_model_name, CHAMPION)
        if champion is None:
            return dg.AssetCheckResult(passed=True, description="no champion yet: nothing to regress from")
        client = mlflow.client()
        if champion.run_id == trained_model.mlflow_run_id:
            return dg.AssetCheckResult(passed=True, description="this model is the champion")
        import mlflow as mlflow_api

        scorer = mlflow_api.pyfunc.load_model(f"models:/{spec.registered_model_name}@{CHAMPION}")
        scored = score_record_batches(
            lambda batch: scorer.predict(batch.select(spec.features.all).to_pandas())[
                "probability"
            ].to_numpy(),
            split_record_batches(settings.warehouse_path, spec, "test", SCORING_ROWS),
        )
        threshold = float(client.get_run(champion.run_id).data.metrics.get("decision_threshold", 0.5))
        baseline = classification_metrics(scored.labels, scored.scores, threshold)
        tolerance = spec.gates.regression_tolerance
        comparison, regressed = {}, []
        for name in spec.gates.regression_metrics:
            ours, theirs = model_evaluation["metrics"][name], baseline[name]
            worse_by = (ours - theirs) if name in LOWER_IS_BETTER else (theirs - ours)
            comparison[name] = {"challenger": ours, "champion": theirs, "worse_by": worse_by}
            if worse_by > tolerance:
                regressed.append(
                    f"{name} {ours:.4f} vs champion {theirs:.4f} (worse by {worse_by:.4f} > {tolerance})"
                )
        return dg.AssetCheckResult(
            passed=not regressed,
            description="regressed: " + "; ".join(regressed)
            if regressed
            else f"no metric worse than champion v{champion.version} by more than {tolerance}",
            metadata={
                "champion_version": dg.MetadataValue.text(str(champion.version)),
                "comparison": dg.MetadataValue.json(comparison),
                "tolerance": dg.MetadataValue.float(tolerance),
            },
        )

    return model_evaluation, [meets_metric_thresholds, no_regression_vs_champion]
