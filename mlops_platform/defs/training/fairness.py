"""`fairness_report` per sensitive attribute of the spec, and its blocking gate."""

from pathlib import Path

import dagster as dg
import pandas as pd

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.defs.training.evaluation import images_markdown, test_split
from mlops_platform.defs.training.model_ref import ModelRef
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
        ins={
            "training_set": dg.AssetIn(input_manager_key="warehouse_io_manager"),
            "stg_records": dg.AssetIn(input_manager_key="warehouse_io_manager"),
        },
        kinds={"mlflow"},
        backfill_policy=dg.BackfillPolicy.single_run(),  # lets `--partition-range` runs include it
        description=(
            "Per sensitive attribute of the spec (numeric ones binned): selection rate, TPR, FPR, "
            "precision and count per group on the test split; demographic parity difference and "
            "ratio, equal opportunity, equalized odds and predictive parity differences, each with "
            "a bootstrap 95% interval."
        ),
    )
    def fairness_report(
        context: dg.AssetExecutionContext,
        trained_model: ModelRef,
        training_set: pd.DataFrame,
        stg_records: pd.DataFrame,
        mlflow: MlflowTracking,
    ) -> dg.Output[dict]:
        import mlflow as mlflow_api

        from mlops_platform.lib.fairness import attribute_fairness, group_values, plot_fairness
        from mlops_platform.lib.model_artifact import load_artifact

        model = load_artifact(Path(trained_model.artifact_path))
        test = test_split(training_set)
        predicted = model.predict(test)
        attributes = stg_records.set_index("record_id").loc[test["record_id"]].reset_index(drop=True)
        reports, report = [], {}
        for attr in spec.sensitive_attributes:
            result = attribute_fairness(
                group_values(attributes[attr.column], attr.bins),
                test["label"].to_numpy(),
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
                "test_rows": dg.MetadataValue.int(len(test)),
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
