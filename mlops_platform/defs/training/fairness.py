"""`fairness_report` per sensitive attribute of the spec, and its blocking gate."""

from pathlib import Path

import dagster as dg
import numpy as np

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.defs.training.evaluation import images_markdown
from mlops_platform.defs.training.model_ref import ModelRef
from mlops_platform.defs.training.training_set_reads import (
    ATTRIBUTES,
    TABLE,
    attribute_column,
    split_record_batches,
)
from mlops_platform.lib.fairness import gaps_markdown
from mlops_platform.lib.metric_names import GAP_FLOORS
from mlops_platform.resources.mlflow import MlflowTracking
from mlops_platform.settings import Settings

GROUP = "training"


def build_fairness_asset(
    settings: Settings, spec: DatasetSpec
) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    @dg.asset(
        key="fairness_report",
        group_name=GROUP,
        deps=[TABLE, ATTRIBUTES],
        kinds={"mlflow"},
        backfill_policy=dg.BackfillPolicy.single_run(),  # lets `--partition-range` runs include it
        description=(
            "Per sensitive attribute of the spec (numeric ones binned): selection rate, TPR, FPR, "
            "precision and count per group on the test split; demographic parity difference and "
            "ratio, equal opportunity, equalized odds and predictive parity differences, each with "
            "a bootstrap 95% interval. Scores the test split in chunks read from the warehouse, "
            "keeping only predictions, labels and the sensitive attributes."
        ),
    )
    def fairness_report(
        context: dg.AssetExecutionContext, trained_model: ModelRef, mlflow: MlflowTracking
    ) -> dg.Output[dict]:
        import mlflow as mlflow_api

        from mlops_platform.lib.evaluation import SCORING_ROWS, model_scores, score_record_batches
        from mlops_platform.lib.fairness import attribute_fairness, group_values, plot_fairness
        from mlops_platform.lib.model_artifact import load_artifact

        model = load_artifact(Path(trained_model.artifact_path))
        attributes = [attr.column for attr in spec.sensitive_attributes]
        test = score_record_batches(
            model_scores(model),
            split_record_batches(settings.warehouse_path, spec, "test", SCORING_ROWS, attributes),
            keep=[attribute_column(a) for a in attributes],
        )
        predicted = (test.scores >= model.threshold).astype(np.int64)
        reports, report = [], {}
        for attr in spec.sensitive_attributes:
            result = attribute_fairness(
                group_values(test.kept[attribute_column(attr.column)], attr.bins),
                test.labels,
                predicted,
                attr.column,
                bootstrap=spec.gates.bootstrap_samples,
                min_group_size=spec.gates.min_group_size,
            )
            reports.append(result)
            report[attr.column] = {
                "gaps": result.gaps,
                "limits": dict(attr.max_gaps),
                "groups": result.groups.to_dict(orient="records"),
            }
        chart = plot_fairness(
            reports, settings.models_dir / trained_model.mlflow_run_id / "plots" / "fairness.png"
        )
        with mlflow.resume_run(trained_model.mlflow_run_id):
            mlflow_api.log_metrics(
                {f"fairness_{a}_{g}": v["value"] for a, e in report.items() for g, v in e["gaps"].items()}
            )
            mlflow_api.log_dict(report, "evaluation/fairness_report.json")
            mlflow_api.log_artifact(str(chart), artifact_path="evaluation")
        tables = "\n\n".join(
            f"**{r.attribute}**\n\n{r.groups.round(4).to_markdown(index=False)}" for r in reports
        )
        return dg.Output(
            report,
            metadata={
                "gaps": dg.MetadataValue.md(gaps_markdown(report)),
                "groups": dg.MetadataValue.md(tables),
                "chart": dg.MetadataValue.md(images_markdown({"fairness": chart})),
                "test_rows": dg.MetadataValue.int(len(test.labels)),
            },
        )

    @dg.asset_check(
        asset=fairness_report,
        blocking=True,
        description=(
            "Every gated gap within the spec's limit for its attribute (differences at most, "
            "ratios at least); reports the measured value, its 95% interval and the limit."
        ),
    )
    def fairness_gaps_within_limits(fairness_report: dict) -> dg.AssetCheckResult:
        results, failed = [], []
        for attribute, entry in fairness_report.items():
            for gap, limit in entry["limits"].items():
                v = entry["gaps"][gap]
                passed = v["value"] >= limit if gap in GAP_FLOORS else v["value"] <= limit
                line = (
                    f"{attribute} {gap} {v['value']:.3f} "
                    f"[95% CI {v['ci_low']:.3f}, {v['ci_high']:.3f}] limit {limit}"
                )
                results.append({"attribute": attribute, "gap": gap, **v, "limit": limit, "passed": passed})
                if not passed:
                    failed.append(line)
        return dg.AssetCheckResult(
            passed=not failed,
            description="over the limit: " + "; ".join(failed)
            if failed
            else f"{len(results)} gated gaps within limits",
            metadata={"results": dg.MetadataValue.json(results)},
        )

    return fairness_report, fairness_gaps_within_limits
