"""What the demo did, in a screenful: versions with their metrics and fairness, traffic, drift,
and where to look. Every figure is read back from MLflow, the instance or the assets' outputs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import dagster as dg
from dagster._core.scheduler.instigation import InstigatorTick

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.lib.model_registry import mlflow_client
from mlops_platform.lib.traffic import TrafficReport
from mlops_platform.lib.uris import redact_uri
from mlops_platform.settings import Settings

SHOWN_METRICS = ("roc_auc", "pr_auc", "accuracy", "f1")


@dataclass
class DemoRecord:
    """What each stage saw, for the summary."""

    calm_verdict: str | None = None
    calm_traffic: TrafficReport | None = None
    drifted_traffic: TrafficReport | None = None
    retrain_run: dg.DagsterRun | None = None
    deploy_run: dg.DagsterRun | None = None
    drift_ticks: list[InstigatorTick] = field(default_factory=list)
    retrain_runs: int = 0
    shares: dict[str, int] = field(default_factory=dict)
    drift_report: dict = field(default_factory=dict)
    live_performance: dict = field(default_factory=dict)


def _traffic_line(name: str, report: TrafficReport | None) -> str:
    if report is None:
        return f"  {name}: -"
    s = report.summary()
    served = ", ".join(f"v{v} {n}" for v, n in s["versions"].items())
    return (
        f"  {name}: {s['sent']} requests in {s['seconds']:.0f} s ({served}); statuses {s['statuses']}; "
        f"client p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms"
    )


def version_lines(settings: Settings, spec: DatasetSpec, live: dict) -> list[str]:
    """One block per registered version: aliases, why it was trained, metrics, fairness, rollout."""
    name = spec.registered_model_name
    client = mlflow_client(settings.tracking_uri)
    lines = [f"registered versions of {name} (MLflow registry):"]
    for found in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version)):
        v = client.get_model_version(name, found.version)  # search results carry no aliases
        tags = v.tags
        trigger = tags.get("trigger", "?")
        if "trigger.drift_share" in tags:
            trigger += (
                f" (drift share {float(tags['trigger.drift_share']):.2f} > {spec.gates.max_drift_share}: "
                f"{tags.get('trigger.drifted_columns', '').replace(',', ', ')})"
            )
        lines.append(f"  v{v.version}  aliases: {', '.join(v.aliases) or '-'}; trained because: {trigger}")
        metrics = ", ".join(
            f"{m} {float(tags[f'metric.{m}']):.4f}" for m in SHOWN_METRICS if f"metric.{m}" in tags
        )
        lines.append(f"      test split: {metrics}")
        fairness = json.loads(tags.get("fairness", "{}"))
        lines.append(
            "      fairness gaps: "
            + ", ".join(
                f"{k} {'not measured' if g is None else f'{g:.3f}'}" for k, g in sorted(fairness.items())
            )
        )
        entry = live.get("versions", {}).get(str(v.version), {})
        if "live" in entry:
            wanted = dict.fromkeys([*spec.monitoring.live_metrics, "accuracy"])
            shown = ", ".join(f"{m} {entry['live'][m]:.4f}" for m in wanted if m in entry["live"])
            lines.append(f"      live, on {entry['labelled_rows']} labelled predictions: {shown}")
        if "deployment.status" in tags:
            lines.append(f"      rollout: {tags['deployment.status']}: {tags.get('deployment.reason', '')}")
    return lines


def drift_lines(spec: DatasetSpec, record: DemoRecord) -> list[str]:
    limit = spec.gates.max_drift_share
    fired = [t for t in record.drift_ticks if t.run_ids]
    lines = [
        f"drift (limit: drift share {limit}):",
        f"  traffic without drift: {record.calm_verdict}",
        f"  drift_sensor looked {len(record.drift_ticks)} times, fired {len(fired)} time(s); "
        f"retrain_model runs: {record.retrain_runs} (one per drift episode)",
    ]
    run = record.retrain_run
    if run is not None and "mlops/drift_share" in run.tags:
        lines.append(
            f"  it fired at drift share {float(run.tags['mlops/drift_share']):.2f} over "
            f"{run.tags.get('mlops/window_rows')} predictions: {run.tags.get('mlops/drifted_columns')}"
        )
        lines.append(f"  Evidently report of that window: {run.tags.get('mlops/drift_report')}")
    report = record.drift_report
    if report.get("drift_share") is not None:
        lines.append(
            f"  drift_report (newest {report.get('current_rows')} predictions): drift share "
            f"{report['drift_share']:.2f}, drifted {report['drifted_columns']}; {report['report']}"
        )
    return lines


def summary_text(settings: Settings, spec: DatasetSpec, record: DemoRecord, elapsed_s: float) -> str:
    """The closing screenful."""
    run = record.retrain_run
    lines = [
        f"\n==> summary ({elapsed_s / 60:.1f} minutes)",
        *version_lines(settings, spec, record.live_performance),
        f"traffic now: {', '.join(f'v{v} {p} %' for v, p in record.shares.items()) or '-'}",
        _traffic_line("without drift", record.calm_traffic),
        _traffic_line("with drift", record.drifted_traffic),
        *drift_lines(spec, record),
        "where to look:",
        "  Dagster UI    make ui, then http://127.0.0.1:3000/runs"
        + (f" (the drift-triggered retrain: /runs/{run.run_id})" if run else ""),
        "                sensor ticks under Automation; asset checks on each asset's Checks tab",
        f"  MLflow UI     .venv/bin/mlflow ui --backend-store-uri {redact_uri(settings.tracking_uri)}",
        f"                then http://127.0.0.1:5000/#/models/{spec.registered_model_name}",
        f"  drift HTML    {settings.home / 'monitoring'}",
        "  serve again   make serve (resumes the champion); make deploy rolls out a new challenger",
    ]
    return "\n".join(lines)
