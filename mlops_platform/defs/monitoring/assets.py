"""Monitoring: the served predictions in the warehouse, their drift against the training data, and
their live performance once labels arrive. Each asset refreshes when its inputs have news: new
prediction log files or label files (`sources.py`), or a newly materialized `inference_log`."""

import dagster as dg
import pandas as pd

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.defs.monitoring.sources import LABEL_FILES, PREDICTION_LOG_FILES
from mlops_platform.resources.mlflow import MlflowTracking
from mlops_platform.settings import Settings

GROUP = "monitoring"


def inference_partitions(spec: DatasetSpec) -> dg.DailyPartitionsDefinition:
    """Daily, UTC, including today: the server keeps appending to today's log."""
    return dg.DailyPartitionsDefinition(
        start_date=spec.simulation.start_date.isoformat(), timezone="UTC", end_offset=1
    )


def on_new_data(*upstream: str) -> dg.AutomationCondition:
    """True once one of `upstream` has a new data version or materialization (partition by
    partition) since this asset was last requested, when no run of it or of its deps is going on."""
    return (
        dg.AutomationCondition.any_deps_updated()
        .allow(dg.AssetSelection.assets(*upstream))
        .since_last_handled()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label(f"new {' or '.join(upstream)}")


def build_monitoring_assets(
    settings: Settings, spec: DatasetSpec
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    numeric, categorical = spec.features.numeric, spec.features.categorical

    @dg.asset(
        key="inference_log",
        group_name=GROUP,
        partitions_def=inference_partitions(spec),
        io_manager_key="warehouse_io_manager",
        deps=[PREDICTION_LOG_FILES],
        kinds={"duckdb"},
        automation_condition=on_new_data(PREDICTION_LOG_FILES),
        description=(
            "Every prediction the model server logged on the day (request id, time, model version, "
            "stable/canary, inputs, probability, prediction), compacted from its JSON lines into the "
            f"warehouse. Materializes the days whose {PREDICTION_LOG_FILES} have a new version."
        ),
    )
    def inference_log(context: dg.AssetExecutionContext) -> dg.Output[pd.DataFrame]:
        from mlops_platform.lib.inference_records import log_files, read_inference_log

        frames = [
            # ingestion_date: the day of the log partition, the warehouse's partition column
            read_inference_log(log_files(settings.inference_log_dir, day), numeric, categorical).assign(
                ingestion_date=pd.Timestamp(day)
            )
            for day in context.partition_keys
        ]
        frame = pd.concat(frames, ignore_index=True)
        per_version = frame.groupby("model_version").size().to_dict() if len(frame) else {}
        requests = frame["request_id"].nunique() if len(frame) else 0
        context.log.info(f"{len(frame)} logged predictions, {requests} requests, per version {per_version}")
        return dg.Output(
            frame,
            metadata={
                "rows": dg.MetadataValue.int(len(frame)),
                "requests": dg.MetadataValue.int(int(requests)),
                "rows_per_model_version": dg.MetadataValue.json(
                    {str(k): int(v) for k, v in per_version.items()}
                ),
                "first": dg.MetadataValue.text(str(frame["timestamp"].min()) if len(frame) else "-"),
                "last": dg.MetadataValue.text(str(frame["timestamp"].max()) if len(frame) else "-"),
            },
        )

    @dg.asset(
        key="drift_report",
        group_name=GROUP,
        ins={"inference_log": dg.AssetIn(partition_mapping=dg.LastPartitionMapping())},
        deps=["training_set"],  # sampled in the warehouse, never loaded whole
        kinds={"evidently", "mlflow"},
        automation_condition=on_new_data("inference_log") & ~dg.AutomationCondition.any_deps_missing(),
        description=(
            f"Evidently data drift (a test per feature chosen by its type, and the share of drifted "
            f"features) and prediction drift of the newest {spec.monitoring.window_rows} predictions "
            f"of inference_log against {spec.monitoring.reference_rows} rows of the training split, "
            f"scored by the model that served the window: the same measurement as drift_sensor's "
            f"(sizes from the spec's monitoring section). The HTML report is logged to MLflow "
            f"(experiment {spec.name}-monitoring) and linked here. Materializes after inference_log's "
            f"newest day does."
        ),
    )
    def drift_report(
        context: dg.AssetExecutionContext, inference_log: pd.DataFrame, mlflow: MlflowTracking
    ) -> dg.Output[dict]:
        from mlops_platform.defs.monitoring.reports import measure_served_drift, publish_report
        from mlops_platform.lib.ui_links import dagster_run_url

        if inference_log.empty:  # a quiet day (or none served yet): nothing to compare, said so
            context.log.info("inference_log's newest day holds no predictions: nothing to compare")
            return dg.Output(
                {"drift_share": None, "drifted_columns": [], "current_rows": 0},
                metadata={"window_rows": dg.MetadataValue.int(0), "drift_share": dg.MetadataValue.text("-")},
            )
        result, version = measure_served_drift(settings, spec, inference_log)
        run_url = dagster_run_url(settings.dagster_ui_url, context.run_id)
        report = publish_report(
            settings,
            spec,
            mlflow,
            result,
            version,
            source="drift_report",
            tags={"dagster.run_id": context.run_id, **({"dagster.run_url": run_url} if run_url else {})},
        )
        table = "\n".join(
            ["| column | method | score | threshold | drifted |", "|---|---|---|---|---|"]
            + [
                f"| {c.column} | {c.method} | {c.score:.4g} | {c.threshold:g} "
                f"| {'yes' if c.drifted else 'no'} |"
                for c in [*result.columns, *([result.prediction] if result.prediction else [])]
            ]
        )
        context.log.info(
            f"drift share {result.drift_share:.2f}: {result.drifted_columns or 'no drifted feature'}"
        )
        links = {"report_url": report.url, "mlflow_run_url": report.run_url}
        return dg.Output(
            {
                **result.as_dict(),
                "model_version": version,
                "report": str(report.path),
                "mlflow_run_id": report.run_id,
                **links,
            },
            metadata={
                "drift_share": dg.MetadataValue.float(result.drift_share),
                "drifted_columns": dg.MetadataValue.json(result.drifted_columns),
                "prediction_drift": dg.MetadataValue.json(result.as_dict()["prediction"]),
                "columns": dg.MetadataValue.md(table),
                "model_version": dg.MetadataValue.text(version),
                "window_rows": dg.MetadataValue.int(result.current_rows),
                "reference_rows": dg.MetadataValue.int(result.reference_rows),
                "report": dg.MetadataValue.path(str(report.path)),
                **{key: dg.MetadataValue.url(url) for key, url in links.items() if url},
            },
        )

    @dg.asset_check(
        asset="drift_report",
        name="drift_within_limits",
        description=(
            f"The share of drifted features stays at most the spec's max_drift_share "
            f"({spec.gates.max_drift_share})."
        ),
    )
    def drift_within_limits(drift_report: dict) -> dg.AssetCheckResult:
        share, limit = drift_report["drift_share"], spec.gates.max_drift_share
        if share is None:
            return dg.AssetCheckResult(
                passed=True,
                description="not evaluated: no predictions in the window, nothing to compare",
                metadata={
                    "evaluated": False,
                    "window_rows": dg.MetadataValue.int(drift_report.get("current_rows", 0)),
                    "limit": dg.MetadataValue.float(limit),
                },
            )
        return dg.AssetCheckResult(
            passed=share <= limit,
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                f"drift share {share:.2f} {'<=' if share <= limit else '>'} limit {limit:.2f}; "
                f"drifted: {', '.join(drift_report['drifted_columns']) or 'none'}"
            ),
            metadata={
                "evaluated": True,
                "drift_share": dg.MetadataValue.float(share),
                "limit": dg.MetadataValue.float(limit),
                "drifted_columns": dg.MetadataValue.json(drift_report["drifted_columns"]),
            },
        )

    return [inference_log, drift_report], [drift_within_limits]


def build_live_performance_asset(
    settings: Settings, spec: DatasetSpec
) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    monitoring = spec.monitoring

    @dg.asset(
        key="live_performance",
        group_name=GROUP,
        ins={"inference_log": dg.AssetIn()},
        deps=[LABEL_FILES],
        kinds={"mlflow"},
        automation_condition=on_new_data("inference_log", LABEL_FILES),
        description=(
            "Metrics per served model version on the predictions whose ground truth has arrived "
            "(delayed labels joined to inference_log by request id), next to the metrics the version "
            f"was registered with. Materializes after inference_log or {LABEL_FILES} change."
        ),
    )
    def live_performance(
        context: dg.AssetExecutionContext, inference_log: pd.DataFrame, mlflow: MlflowTracking
    ) -> dg.Output[dict]:
        from mlops_platform.lib.evaluation import classification_metrics
        from mlops_platform.lib.ground_truth import read_ground_truth
        from mlops_platform.lib.model_artifact import load_artifact
        from mlops_platform.serving.revisions import fetch_artifact

        labelled = inference_log.merge(read_ground_truth(settings.ground_truth_dir), on="request_id")
        client = mlflow.client()
        versions: dict[str, dict] = {}
        for version, rows in labelled.groupby("model_version"):
            entry: dict = {"labelled_rows": len(rows)}
            registered = client.get_model_version(spec.registered_model_name, str(version)).tags
            entry["registered"] = {
                m: float(registered[f"metric.{m}"])
                for m in monitoring.live_metrics
                if f"metric.{m}" in registered
            }
            if len(rows) >= monitoring.min_labelled_rows and rows["label"].nunique() == 2:
                artifact = fetch_artifact(
                    settings.tracking_uri,
                    spec.registered_model_name,
                    str(version),
                    settings.serving_dir / "models",
                )
                threshold = load_artifact(artifact).threshold
                entry["live"] = classification_metrics(
                    rows["label"].to_numpy(), rows["probability"].to_numpy(), threshold
                )
            versions[str(version)] = entry
        context.log.info(
            f"labelled predictions per version: { {v: e['labelled_rows'] for v, e in versions.items()} }"
        )
        not_measured = f"not measured (needs {monitoring.min_labelled_rows} labelled, both classes)"

        def shown(value: float | None, missing: str) -> str:
            return missing if value is None else f"{value:.4f}"

        table = "\n".join(
            ["| version | labelled | metric | live | registered |", "|---|---|---|---|---|"]
            + [
                f"| {v} | {e['labelled_rows']} | {m} | {shown(e.get('live', {}).get(m), not_measured)} "
                f"| {shown(e['registered'].get(m), '-')} |"
                for v, e in versions.items()
                for m in monitoring.live_metrics
            ]
        )
        return dg.Output(
            {"versions": versions, "labelled_rows": len(labelled)},
            metadata={
                "labelled_rows": dg.MetadataValue.int(len(labelled)),
                "served_rows": dg.MetadataValue.int(len(inference_log)),
                "versions": dg.MetadataValue.md(table),
            },
        )

    @dg.asset_check(
        asset="live_performance",
        name="live_performance_holds",
        description=(
            f"For each version with at least {monitoring.min_labelled_rows} labelled predictions: "
            f"{', '.join(monitoring.live_metrics)} live at most {monitoring.max_live_degradation} below "
            "the value the version was registered with."
        ),
    )
    def live_performance_holds(live_performance: dict) -> dg.AssetCheckResult:
        judged, failures, skipped, versions_judged = [], [], [], set()
        for version, entry in live_performance["versions"].items():
            if "live" not in entry:
                skipped.append(
                    f"v{version}: {entry['labelled_rows']} labelled predictions "
                    f"(needs {monitoring.min_labelled_rows} with both classes)"
                )
                continue
            for metric in monitoring.live_metrics:
                registered = entry["registered"].get(metric)
                if registered is None:
                    skipped.append(f"v{version} {metric}: registered without it, nothing to compare")
                    continue
                live = entry["live"][metric]
                versions_judged.add(version)
                judged.append(f"v{version} {metric} {live:.4f} (registered {registered:.4f})")
                if live < registered - monitoring.max_live_degradation:
                    failures.append(
                        f"v{version} {metric} live {live:.4f} < registered {registered:.4f} - "
                        f"{monitoring.max_live_degradation} ({entry['labelled_rows']} labelled predictions)"
                    )
        if not judged:
            return dg.AssetCheckResult(
                passed=True,
                severity=dg.AssetCheckSeverity.WARN,
                description="not evaluated: "
                + ("; ".join(skipped) if skipped else "no labelled predictions yet"),
                metadata={"evaluated": False, "not_judged": dg.MetadataValue.json(skipped)},
            )
        return dg.AssetCheckResult(
            passed=not failures,
            severity=dg.AssetCheckSeverity.WARN,
            description="; ".join(failures or judged)
            + (f" | not judged: {'; '.join(skipped)}" if skipped else ""),
            metadata={
                "evaluated": True,
                "versions_judged": dg.MetadataValue.int(len(versions_judged)),
                "judged": dg.MetadataValue.json(judged),
                "not_judged": dg.MetadataValue.json(skipped),
            },
        )

    return live_performance, live_performance_holds
