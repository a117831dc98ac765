"""`mlops trace REQUEST_ID`: one served prediction and its whole history.

The chain, each link read where the platform recorded it (nothing is copied into a store of
its own): the inference log (inputs, output, model version, stable or canary) → the MLflow
model version (aliases, metrics, gates, approval, rollout) → its MLflow run (metrics,
parameters) → the Dagster run that trained it (who started it, its gate verdicts) → the
`training_set` data version and the landed days it was built from, with their landing files'
sha256, checked against the files as they are now.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlops_platform.defs.registry.assets import gates_of_run
from mlops_platform.governance.stores import open_instance, registry, run_actor, utc
from mlops_platform.lib.approval import decision_of, decisions_of
from mlops_platform.lib.ui_links import dagster_run_url, mlflow_model_version_url, mlflow_run_url
from mlops_platform.serving.json_bodies import REQUEST_ID_RULE, is_request_id
from mlops_platform.settings import Settings

_TEST_METRICS = ("roc_auc", "pr_auc", "accuracy", "f1", "precision", "recall", "expected_calibration_error")


def find_request(log_dir: Path, request_id: str) -> list[dict[str, Any]]:
    """The inference log's records of one request (one per row), from every day's files."""
    import orjson

    if not is_request_id(request_id):
        raise ValueError(f"request id {request_id!r}: {REQUEST_ID_RULE} (a response's x-request-id)")
    needle = request_id.encode()
    found = []
    for path in sorted(Path(log_dir).glob("date=*/*.jsonl")):
        with open(path, "rb") as handle:
            for line in handle:
                if needle in line and line.endswith(b"\n"):
                    record = orjson.loads(line)
                    if record.get("request_id") == request_id:
                        found.append(record)
    return sorted(found, key=lambda r: r["row"])


def _model_version(settings: Settings, name: str, version: str) -> dict[str, Any]:
    client = registry(settings)
    found = client.get_model_version(name, version)
    tags = found.tags or {}
    run = client.get_run(found.run_id)
    made = decision_of(tags)
    return {
        "name": name,
        "version": str(version),
        "aliases": sorted(found.aliases or []),
        "registered_at": utc(found.creation_timestamp / 1000),
        "registered_by": tags.get("trigger", "?"),
        "registration_reason": {
            k.removeprefix("trigger."): v for k, v in tags.items() if k.startswith("trigger.")
        },
        "deployment_status": tags.get("deployment.status", "never deployed"),
        "deployment_reason": tags.get("deployment.reason", ""),
        "url": mlflow_model_version_url(settings.mlflow_ui_url, name, str(version)),
        "git_commit": tags.get("git_commit", "?"),
        "training_set_version": tags.get("training_set_version", "?"),
        "gates": json.loads(tags.get("gates") or "[]"),
        "fairness": json.loads(tags.get("fairness") or "{}"),
        "approval": None if made is None else made.__dict__,
        "approvals": [d.__dict__ for d in decisions_of(tags)],
        "approval_status": tags.get("approval.status", "not required" if made is None else made.decision),
        "mlflow_run": {
            "run_id": found.run_id,
            "url": mlflow_run_url(settings.mlflow_ui_url, run.info.experiment_id, found.run_id),
            "status": run.info.status,
            "test_metrics": {
                m: run.data.metrics[f"test_{m}"] for m in _TEST_METRICS if f"test_{m}" in run.data.metrics
            },
            "decision_threshold": run.data.metrics.get("decision_threshold"),
            "params": dict(run.data.params),
        },
        "dagster_run_id": tags.get("dagster_run_id"),
    }


def _dagster_run(settings: Settings, run_id: str | None) -> dict[str, Any]:
    """The Dagster run that trained and registered the version, with its gate verdicts."""

    if not run_id:
        return {"run_id": None, "note": "the version names no Dagster run"}
    with open_instance(settings) as instance:
        if instance is None:
            return {"run_id": run_id, "note": "no Dagster instance to read (set DAGSTER_HOME)"}
        run = instance.get_run_by_id(run_id)
        if run is None:
            return {"run_id": run_id, "note": f"not in the Dagster instance at {instance.root_directory}"}
        record = instance.get_run_record_by_id(run_id)
        gates = gates_of_run(instance, run_id)
        return {
            "run_id": run_id,
            "job": run.job_name,
            "status": run.status.value,
            "started_by": run_actor(dict(run.tags)),
            "started_at": utc(record.start_time) if record and record.start_time else None,
            "ended_at": utc(record.end_time) if record and record.end_time else None,
            "url": dagster_run_url(settings.dagster_ui_url, run_id),
            "gates": gates,
        }


def _training_data(settings: Settings, mlflow_run_id: str) -> dict[str, Any]:
    """The landed days the training set was built from, and whether each landing file is unchanged."""
    from mlops_platform.lib.lineage import landing_changes, read_lineage

    try:
        lineage = read_lineage(registry(settings), mlflow_run_id)
    except LookupError as exc:
        return {"note": str(exc)}
    changes = landing_changes(lineage, settings.landing_dir)
    days = []
    for day, entry in sorted(lineage.days.items()):
        changed = [c for c in changes if day in c]
        days.append({"day": day, **entry, "now": "; ".join(changed) if changed else "unchanged"})
    return {
        "data_version": lineage.training_set_version,
        "dataset": lineage.dataset,
        "spec_digest": lineage.spec_digest,
        "days": days,
        "params": lineage.params,
        "code_version": lineage.code_version,
    }


def trace(settings: Settings, request_id: str) -> dict[str, Any]:
    """Everything recorded about one served request, as one dict (see the module docstring)."""
    records = find_request(settings.inference_log_dir, request_id)
    if not records:
        raise LookupError(
            f"request {request_id} is not in the inference log under {settings.inference_log_dir} "
            "(the server writes it within seconds; is MLOPS_HOME the server's?)"
        )
    first = records[0]
    version = _model_version(settings, first["model_name"], str(first["model_version"]))
    run = _dagster_run(settings, version["dagster_run_id"])
    if run.get("started_by"):  # who started the registering run, as the instance says
        version["registered_by"] = run["started_by"]
    return {
        "request": {
            "request_id": request_id,
            "timestamp": first["timestamp"],
            "model_name": first["model_name"],
            "model_version": str(first["model_version"]),
            "role": first["role"],
            "protocol": first["protocol"],
            "rows": [
                {k: r.get(k) for k in ("row", "entity_id", "inputs", "probability", "prediction")}
                for r in records
            ],
        },
        "model_version": version,
        "dagster_run": run,
        "training_data": _training_data(settings, version["mlflow_run"]["run_id"]),
    }


def render(found: dict[str, Any]) -> str:
    """The trace as text, one link of the chain per block."""
    request, version, run, data = (
        found["request"],
        found["model_version"],
        found["dagster_run"],
        found["training_data"],
    )
    lines = [
        f"request {request['request_id']} at {request['timestamp']} ({request['protocol']}, "
        f"{len(request['rows'])} row(s))",
        f"  answered by {request['model_name']} v{request['model_version']} as {request['role']}",
    ]
    for row in request["rows"]:
        inputs = ", ".join(f"{k}={v}" for k, v in row["inputs"].items())
        entity = f" entity {row['entity_id']}" if row.get("entity_id") else ""
        lines.append(
            f"  row {row['row']}{entity}: probability {row['probability']:.4f} -> prediction "
            f"{row['prediction']}; inputs {inputs}"
        )
    mlflow_run = version["mlflow_run"]
    lines += [
        "",
        f"model version v{version['version']}: aliases {', '.join(version['aliases']) or '-'}; "
        f"deployment {version['deployment_status']}"
        + (f" ({version['deployment_reason']})" if version["deployment_reason"] else ""),
        f"  registered {version['registered_at']} by {version['registered_by']}"
        + (
            f" ({', '.join(f'{k} {v}' for k, v in version['registration_reason'].items())})"
            if version["registration_reason"]
            else ""
        ),
        f"  {version['url'] or '(no MLflow UI configured)'}",
        f"  git commit {version['git_commit']}",
        "  gates passed at registration: "
        + ("; ".join(g["gate"] for g in version["gates"] if g.get("passed")) or "(not recorded)"),
    ]
    approval = version["approval"]
    lines.append(
        f"  approval: {approval['decision']} by {approval['by']} at {approval['at']}: {approval['reason']}"
        if approval
        else f"  approval: {version['approval_status']}"
    )
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in mlflow_run["test_metrics"].items())
    lines += [
        "",
        f"MLflow run {mlflow_run['run_id']} ({mlflow_run['status']}): test {metrics or '-'}",
        f"  seed {mlflow_run['params'].get('seed', '?')}, device {mlflow_run['params'].get('device', '?')}",
        f"  {mlflow_run['url'] or '(no MLflow UI configured)'}",
        "",
    ]
    if run.get("job"):
        lines += [
            f"Dagster run {run['run_id']} ({run['job']}, {run['status']}), started by {run['started_by']} "
            f"at {run['started_at']}",
            f"  {run['url'] or '(no Dagster UI configured)'}",
            *(
                f"  gate {'passed' if g['passed'] else 'FAILED'}: {g['gate']}: {g['description']}"
                for g in run["gates"]
            ),
        ]
    else:
        lines.append(f"Dagster run {run['run_id']}: {run['note']}")
    lines.append("")
    if "days" in data:
        lines.append(
            f"training_set data version {data['data_version']} ({data['dataset']}, "
            f"spec {data['spec_digest']}), built from {len(data['days'])} landed day(s):"
        )
        for day in data["days"]:
            lines.append(
                f"  {day['day']}  {day.get('file')}  sha256 {day.get('sha256')}  {day['now']}"
                f"  (ingested by Dagster run {day.get('run_id')})"
            )
    else:
        lines.append(f"training data: {data['note']}")
    return "\n".join(lines)
