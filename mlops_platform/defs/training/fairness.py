"""`fairness_report` per sensitive attribute of the spec, and its blocking gate."""

import math
from pathlib import Path

import dagster as dg
import numpy as np

from mlops_platform.datasets.metric_names import GAP_FLOORS
from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.defs.training.evaluation import gate_line, images_markdown, judge_limit
from mlops_platform.defs.training.model_ref import ModelRef
from mlops_platform.defs.training.training_set_reads import (
    ATTRIBUTES,
    TABLE,
    attribute_column,
    split_record_batches,
)
from mlops_platform.lib.fairness import gaps_markdown
from mlops_platform.resources.mlflow import MlflowTracking, url_metadata
from mlops_platform.settings import Settings

GROUP = "training"
JUDGED_ON = {"point": "the point value", "interval": "the worse end of its 95% interval"}
UNMEASURABLE = {"fail": "fails", "warn": "passes with a warning"}


def json_safe(value: object) -> object:
    """`value` with every NaN or infinite float as None (JSON null: "not measured")."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _measured(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def build_fairness_asset(
    settings: Settings, spec: DatasetSpec
) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    gates = spec.gates

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
            "a bootstrap 95% interval, measured over the groups with at least gates.min_group_size "
            "test rows (a gap with fewer than two such groups is not measured, never 0). Scores the "
            "test split in chunks read from the warehouse, keeping only predictions, labels and the "
            "sensitive attributes."
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
                bootstrap=gates.bootstrap_samples,
                min_group_size=gates.min_group_size,
            )
            reports.append(result)
            report[attr.column] = {
                "gaps": result.gaps,
                "limits": dict(attr.max_gaps),
                "groups": result.groups.to_dict(orient="records"),
                "min_group_size": gates.min_group_size,
                "unmeasured": result.unmeasured,
            }
            for entry in result.unmeasured:
                context.log.info(f"{attr.column}: group {entry['group']!r} {entry['reason']}")
        chart = plot_fairness(
            reports, settings.models_dir / trained_model.mlflow_run_id / "plots" / "fairness.png"
        )
        with mlflow.resume_run(trained_model.mlflow_run_id):
            mlflow_api.log_metrics(
                {
                    f"fairness_{a}_{g}": v["value"]
                    for a, e in report.items()
                    for g, v in e["gaps"].items()
                    if _measured(v["value"])
                }
            )
            mlflow_api.log_dict(json_safe(report), "evaluation/fairness_report.json")
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
                "min_group_size": dg.MetadataValue.int(gates.min_group_size),
                "mlflow_run_id": dg.MetadataValue.text(trained_model.mlflow_run_id),
                **url_metadata(mlflow_run=mlflow.run_url(trained_model.mlflow_run_id)),
            },
        )

    @dg.asset_check(
        asset=fairness_report,
        blocking=True,
        description=(
            "Every gated gap within the spec's limit for its attribute (differences at most, ratios "
            f"at least), judged on {JUDGED_ON[gates.judge]} (gates.judge); reports the measured value, "
            "its 95% interval and the limit. A gated attribute with a group under min_group_size "
            f"({gates.min_group_size} test rows) cannot be measured for that group: that "
            f"{UNMEASURABLE[gates.on_unmeasurable]} (gates.on_unmeasurable)."
        ),
    )
    def fairness_gaps_within_limits(fairness_report: dict) -> dg.AssetCheckResult:
        results, failed, passed_lines, unmeasurable, unmeasured = [], [], [], [], []
        for attribute, entry in fairness_report.items():
            limits = entry["limits"]
            minimum = entry.get("min_group_size", gates.min_group_size)
            for group in entry.get("unmeasured", []):
                gaps = [gap for gap in limits if gap in group["gaps"]]
                if not gaps:
                    continue
                unmeasured.append(
                    {
                        "attribute": attribute,
                        "group": group["group"],
                        "rows": group["rows"],
                        "minimum": minimum,
                        "reason": group["reason"],
                        "gaps": gaps,
                    }
                )
                unmeasurable.append(
                    f"{attribute}: group {group['group']!r} {group['reason']}: {', '.join(gaps)} not measured"
                )
            for gap, limit in limits.items():
                v = entry["gaps"][gap]
                floor = gap in GAP_FLOORS
                if not _measured(v["value"]):
                    results.append(
                        {
                            "attribute": attribute,
                            "gap": gap,
                            "limit": limit,
                            "evaluated": False,
                            "passed": None,
                        }
                    )
                    unmeasurable.append(
                        f"{attribute}: {gap} not measured ({v.get('measured_groups', 0)} group(s) with "
                        f"at least {minimum} test rows and a defined rate; it needs 2)"
                    )
                    continue
                verdict = judge_limit(v["value"], v["ci_low"], v["ci_high"], limit, floor, gates.judge)
                line = f"{attribute} " + gate_line(
                    gap, v["value"], v["ci_low"], v["ci_high"], limit, floor, verdict
                )
                results.append(
                    {
                        "attribute": attribute,
                        "gap": gap,
                        **json_safe(v),
                        "limit": limit,
                        "evaluated": True,
                        **verdict,
                    }
                )
                (passed_lines if verdict["passed"] else failed).append(line)
        metadata = {
            "judge": dg.MetadataValue.text(gates.judge),
            "on_unmeasurable": dg.MetadataValue.text(gates.on_unmeasurable),
            "results": dg.MetadataValue.json(results),
            "unmeasured": dg.MetadataValue.json(unmeasured),
        }
        if not results:
            return dg.AssetCheckResult(
                passed=True,
                description="not evaluated: no sensitive attribute of the spec has max_gaps",
                metadata={"evaluated": False, **metadata},
            )
        evaluated = any(r["evaluated"] for r in results)
        # `warn` covers gaps left partly unmeasured; a gate that measured no gated gap at all fails
        blocked = bool(unmeasurable) and (gates.on_unmeasurable == "fail" or not evaluated)
        parts = []
        if failed:
            parts.append("over the limit: " + "; ".join(failed))
        if unmeasurable:
            prefix = "warning (on_unmeasurable: warn)" if not blocked else "not measurable"
            if not evaluated and gates.on_unmeasurable == "warn":
                prefix = "no gated gap could be measured (on_unmeasurable: warn does not pass that)"
            parts.append(f"{prefix}: " + "; ".join(unmeasurable))
        if passed_lines:
            parts.append(
                (
                    "within the limit: "
                    if failed or unmeasurable
                    else f"{len(passed_lines)} gated gaps within limits: "
                )
                + "; ".join(passed_lines)
            )
        return dg.AssetCheckResult(
            passed=not failed and not blocked,
            description=" | ".join(parts),
            metadata={"evaluated": evaluated, **metadata},
        )

    return fairness_report, fairness_gaps_within_limits
