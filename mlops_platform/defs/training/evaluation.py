"""`model_evaluation` on the held-out test split, and its blocking quality gates."""

import base64
import math
from pathlib import Path

import dagster as dg

from mlops_platform.datasets.metric_names import CLASSIFICATION_METRICS, LOWER_IS_BETTER
from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.defs.training.model_ref import ModelRef
from mlops_platform.defs.training.training_set_reads import TABLE, split_record_batches
from mlops_platform.lib.model_registry import CHAMPION
from mlops_platform.resources.mlflow import MlflowTracking, url_metadata
from mlops_platform.settings import Settings

GROUP = "training"
BOOTSTRAP_SEED = 0


def images_markdown(paths: dict[str, Path]) -> str:
    """PNG plots inlined as markdown images (shown in the asset's metadata)."""
    return "\n\n".join(
        f"**{name}**\n\n![{name}](data:image/png;base64,{base64.b64encode(Path(p).read_bytes()).decode()})"
        for name, p in paths.items()
    )


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def metrics_table(
    rows: dict[str, dict[str, float]], intervals: dict[str, dict[str, float]] | None = None
) -> str:
    """Metrics side by side (one column per split or model); `intervals` adds the test 95% CI."""
    names = list(next(iter(rows.values())))
    header = [*rows, *(["test 95% CI"] if intervals else [])]
    lines = ["| metric | " + " | ".join(header) + " |", "|---|" + "---:|" * len(header)]
    for n in names:
        cells = [_number(rows[c].get(n)) for c in rows]
        if intervals:
            ci = intervals.get(n)
            cells.append(f"[{_number(ci['ci_low'])}, {_number(ci['ci_high'])}]" if ci else "-")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def judge_limit(value: float, ci_low: float, ci_high: float, limit: float, floor: bool, judge: str) -> dict:
    """One limit applied as the spec's `judge` says: to the value (`point`) or to the worse end
    of its interval (`interval`: a floor judges ci_low, a ceiling ci_high)."""
    if judge == "interval":
        judged_on, judged = ("ci_low", ci_low) if floor else ("ci_high", ci_high)
    else:
        judged_on, judged = "point", value
    measured = judged is not None and math.isfinite(judged)
    passed = measured and (judged >= limit if floor else judged <= limit)
    return {"judged_on": judged_on, "judged_value": judged if measured else None, "passed": bool(passed)}


def gate_line(
    name: str, value: float, ci_low: float, ci_high: float, limit: float, floor: bool, verdict: dict
) -> str:
    """`roc_auc 0.812 [95% CI 0.740, 0.880] >= 0.8 (judged on: point)`."""
    measured = all(v is not None and math.isfinite(v) for v in (ci_low, ci_high))
    interval = (
        f"[95% CI {_number(ci_low, 3)}, {_number(ci_high, 3)}]" if measured else "[95% CI not measured]"
    )
    judged = verdict["judged_on"]
    if judged != "point":
        judged = f"{judged} {_number(verdict['judged_value'], 3)}"
    return f"{name} {_number(value, 3)} {interval} {'>=' if floor else '<='} {limit:g} (judged on: {judged})"


def build_evaluation_asset(
    settings: Settings, spec: DatasetSpec
) -> tuple[dg.AssetsDefinition, list[dg.AssetChecksDefinition]]:
    gates = spec.gates

    @dg.asset(
        key="model_evaluation",
        group_name=GROUP,
        deps=[TABLE],
        kinds={"mlflow"},
        backfill_policy=dg.BackfillPolicy.single_run(),  # lets `--partition-range` runs include it
        description=(
            "Test-split metrics (accuracy, precision, recall, F1, ROC AUC, PR AUC, log loss, Brier, "
            "ECE) at the threshold chosen on validation, each with a seeded percentile bootstrap 95% "
            "interval, with ROC, PR, calibration and confusion plots, logged to the training run in "
            "MLflow; beside them the logistic-regression baseline's validation and test metrics. "
            "Scores each split in chunks read from the warehouse, both models in one pass."
        ),
    )
    def model_evaluation(
        context: dg.AssetExecutionContext, trained_model: ModelRef, mlflow: MlflowTracking
    ) -> dg.Output[dict]:
        import mlflow as mlflow_api

        from mlops_platform.lib.evaluation import (
            SCORING_ROWS,
            bootstrap_intervals,
            classification_metrics,
            model_scores,
            plot_evaluation,
            score_record_batches,
        )
        from mlops_platform.lib.model_artifact import load_artifact

        model = load_artifact(Path(trained_model.artifact_path))
        baseline = (
            load_artifact(Path(trained_model.baseline_artifact_path))
            if trained_model.baseline_artifact_path
            else None
        )
        also = {"baseline": model_scores(baseline)} if baseline else None
        scored = {
            split: score_record_batches(
                model_scores(model),
                split_record_batches(settings.warehouse_path, spec, split, SCORING_ROWS),
                also=also,
            )
            for split in ("validation", "test")
        }
        splits = {
            split: classification_metrics(rows.labels, rows.scores, model.threshold)
            for split, rows in scored.items()
        }
        bootstrap = bootstrap_intervals(
            scored["test"].labels,
            scored["test"].scores,
            model.threshold,
            samples=gates.bootstrap_samples,
            seed=BOOTSTRAP_SEED,
        )
        intervals = {m: {"ci_low": lo, "ci_high": hi} for m, (lo, hi) in bootstrap.intervals.items()}
        baseline_metrics = (
            {
                split: classification_metrics(rows.labels, rows.also["baseline"], baseline.threshold)
                for split, rows in scored.items()
            }
            if baseline
            else None
        )
        plots = plot_evaluation(
            scored["test"].labels,
            scored["test"].scores,
            model.threshold,
            settings.models_dir / trained_model.mlflow_run_id / "plots",
        )
        logged = {f"{split}_{k}": v for split, values in splits.items() for k, v in values.items()}
        for metric, ci in intervals.items():
            logged |= {f"test_{metric}_{end}": v for end, v in ci.items() if math.isfinite(v)}
        for split, values in (baseline_metrics or {}).items():
            logged |= {f"baseline_{split}_{k}": v for k, v in values.items()}
        with mlflow.resume_run(trained_model.mlflow_run_id):
            mlflow_api.log_metrics(logged)
            for path in plots.values():
                mlflow_api.log_artifact(str(path), artifact_path="evaluation")
        test = splits["test"]
        context.log.info(
            f"test ROC AUC {test['roc_auc']:.4f} [95% CI {_number(intervals['roc_auc']['ci_low'])}, "
            f"{_number(intervals['roc_auc']['ci_high'])}], accuracy {test['accuracy']:.4f}"
            + (
                f"; baseline validation ROC AUC {baseline_metrics['validation']['roc_auc']:.4f}"
                if baseline_metrics
                else "; no baseline artifact"
            )
        )
        side_by_side = (
            {
                "model (validation)": splits["validation"],
                "baseline (validation)": baseline_metrics["validation"],
                "model (test)": test,
                "baseline (test)": baseline_metrics["test"],
            }
            if baseline_metrics
            else None
        )
        return dg.Output(
            {
                "metrics": test,
                "validation_metrics": splits["validation"],
                "intervals": intervals,
                "bootstrap": {
                    "method": bootstrap.method,
                    "samples": bootstrap.samples,
                    "cells": bootstrap.cells,
                    "seed": BOOTSTRAP_SEED,
                    # share of resamples a metric was undefined in (one class only); above
                    # lib.evaluation.MAX_UNDEFINED_SHARE its interval is not measured
                    "undefined": {m: round(v, 4) for m, v in bootstrap.undefined.items() if v > 0},
                },
                "baseline_metrics": baseline_metrics,
                "plots": {k: str(v) for k, v in plots.items()},
            },
            metadata={
                **{f"test_{k}": dg.MetadataValue.float(v) for k, v in test.items()},
                **{
                    f"test_{m}_{end}": dg.MetadataValue.float(v)
                    for m, ci in intervals.items()
                    for end, v in ci.items()
                    if math.isfinite(v)
                },
                "metrics": dg.MetadataValue.md(
                    metrics_table(
                        {s: {m: v[m] for m in CLASSIFICATION_METRICS} for s, v in splits.items()}, intervals
                    )
                ),
                "bootstrap": dg.MetadataValue.text(
                    f"{bootstrap.samples} resamples ({bootstrap.method}, {bootstrap.cells} cells), "
                    f"seed {BOOTSTRAP_SEED}"
                ),
                "baseline": dg.MetadataValue.md(
                    metrics_table(
                        {c: {m: v[m] for m in CLASSIFICATION_METRICS} for c, v in side_by_side.items()}
                    )
                    if side_by_side
                    else "no baseline artifact: this model was trained without one"
                ),
                "plots": dg.MetadataValue.md(images_markdown(plots)),
                "mlflow_run_id": dg.MetadataValue.text(trained_model.mlflow_run_id),
                **url_metadata(mlflow_run=mlflow.run_url(trained_model.mlflow_run_id)),
            },
        )

    @dg.asset_check(
        asset=model_evaluation,
        blocking=True,
        description=(
            f"Test metrics meet the spec's gates (min_metrics, max_metrics), judged on "
            f"{'the point value' if gates.judge == 'point' else 'the worse end of the 95% interval'} "
            "(gates.judge); reports value, interval and limit of every gated metric."
        ),
    )
    def meets_metric_thresholds(model_evaluation: dict) -> dg.AssetCheckResult:
        measured = model_evaluation["metrics"]
        intervals = model_evaluation.get("intervals", {})
        limits = [(n, limit, True) for n, limit in gates.min_metrics.items()]
        limits += [(n, limit, False) for n, limit in gates.max_metrics.items()]
        if not limits:
            return dg.AssetCheckResult(
                passed=True,
                description="not evaluated: the spec's gates name no min_metrics or max_metrics",
                metadata={"evaluated": False},
            )
        results, lines, failed = {}, [], []
        for name, limit, floor in limits:
            ci = intervals.get(name, {"ci_low": math.nan, "ci_high": math.nan})
            verdict = judge_limit(measured[name], ci["ci_low"], ci["ci_high"], limit, floor, gates.judge)
            line = gate_line(name, measured[name], ci["ci_low"], ci["ci_high"], limit, floor, verdict)
            results[name] = {
                "value": measured[name],
                "ci_low": ci["ci_low"] if math.isfinite(ci["ci_low"]) else None,
                "ci_high": ci["ci_high"] if math.isfinite(ci["ci_high"]) else None,
                "limit": limit,
                "direction": "min" if floor else "max",
                **verdict,
            }
            lines.append(line)
            if not verdict["passed"]:
                failed.append(line)
        passed_lines = [line for line in lines if line not in failed]
        description = (
            f"failed the limit: {'; '.join(failed)}"
            + (f" | within the limit: {'; '.join(passed_lines)}" if passed_lines else "")
            if failed
            else f"every metric within its limit: {'; '.join(lines)}"
        )
        return dg.AssetCheckResult(
            passed=not failed,
            description=description,
            metadata={
                "evaluated": True,
                "judge": dg.MetadataValue.text(gates.judge),
                "results": dg.MetadataValue.json(results),
                **{
                    f"{name}_{key}": dg.MetadataValue.float(float(r[key]))
                    for name, r in results.items()
                    for key in ("value", "ci_low", "ci_high", "limit")
                    if r[key] is not None
                },
            },
        )

    @dg.asset_check(
        asset=model_evaluation,
        blocking=True,
        additional_ins={"trained_model": dg.AssetIn("trained_model")},
        additional_deps=[TABLE],
        description=(
            "No regression: the current champion is scored on the same test split; the challenger "
            f"may trail it by at most the spec's tolerance ({gates.regression_tolerance}) on "
            f"{', '.join(gates.regression_metrics)}. With no champion yet (or this model being it) "
            "there is nothing to compare: it passes with evaluated: false."
        ),
    )
    def no_regression_vs_champion(
        model_evaluation: dict, trained_model: ModelRef, mlflow: MlflowTracking
    ) -> dg.AssetCheckResult:
        from mlops_platform.lib.evaluation import SCORING_ROWS, classification_metrics, score_record_batches

        champion = mlflow.version_for_alias(spec.registered_model_name, CHAMPION)
        if champion is None:
            return dg.AssetCheckResult(
                passed=True,
                description="no champion yet: nothing to regress from (not evaluated)",
                metadata={"evaluated": False},
            )
        client = mlflow.client()
        if champion.run_id == trained_model.mlflow_run_id:
            return dg.AssetCheckResult(
                passed=True,
                description=f"this model is champion v{champion.version}: nothing to compare (not evaluated)",
                metadata={
                    "evaluated": False,
                    "champion_version": dg.MetadataValue.text(str(champion.version)),
                },
            )
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
        tolerance = gates.regression_tolerance
        comparison, regressed = {}, []
        for name in gates.regression_metrics:
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
                "evaluated": True,
                "champion_version": dg.MetadataValue.text(str(champion.version)),
                "comparison": dg.MetadataValue.json(comparison),
                "tolerance": dg.MetadataValue.float(tolerance),
            },
        )

    @dg.asset_check(
        asset=model_evaluation,
        blocking=True,
        description=(
            "The model's validation ROC AUC is not below the logistic-regression baseline's (trained "
            f"in the same run on the same encoder) by more than {gates.baseline_tolerance} "
            "(gates.baseline_tolerance). A model trained without a baseline passes with evaluated: false."
        ),
    )
    def beats_baseline(model_evaluation: dict) -> dg.AssetCheckResult:
        baseline = model_evaluation.get("baseline_metrics")
        tolerance = gates.baseline_tolerance
        if not baseline:  # trained_model always trains one: a model without it was not made here
            return dg.AssetCheckResult(
                passed=False,
                description="not evaluated: this model has no baseline artifact to compare with; "
                "retrain it (trained_model trains the baseline beside the model)",
                metadata={"evaluated": False, "tolerance": dg.MetadataValue.float(tolerance)},
            )
        ours = model_evaluation["validation_metrics"]["roc_auc"]
        theirs = baseline["validation"]["roc_auc"]
        passed = ours >= theirs - tolerance
        return dg.AssetCheckResult(
            passed=passed,
            description=(
                f"validation ROC AUC {ours:.4f} vs logistic baseline {theirs:.4f}: "
                + (
                    f"within the tolerance {tolerance}"
                    if passed
                    else f"below it by {theirs - ours:.4f} > tolerance {tolerance}"
                )
            ),
            metadata={
                "evaluated": True,
                "model_validation_roc_auc": dg.MetadataValue.float(ours),
                "baseline_validation_roc_auc": dg.MetadataValue.float(theirs),
                "model_test_roc_auc": dg.MetadataValue.float(model_evaluation["metrics"]["roc_auc"]),
                "baseline_test_roc_auc": dg.MetadataValue.float(baseline["test"]["roc_auc"]),
                "tolerance": dg.MetadataValue.float(tolerance),
            },
        )

    return model_evaluation, [meets_metric_thresholds, no_regression_vs_champion, beats_baseline]
