"""`mlops audit`: every decision about a model, in time order, with who made it and why.

Read from the two places that hold the facts, never from a copy: the MLflow registry
(registrations, approvals, rollout attempts and their outcomes, retirements, reproductions: the
`trigger`, `approval.*`, `deployment.*` and `reproduction` tags) and the Dagster instance (the
runs that trained and deployed, who started them, each gate verdict, each canary step).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mlops_platform.defs.jobs import DEPLOY_MODEL, RETRAIN_MODEL
from mlops_platform.governance.stores import REGISTERED, open_instance, registry, run_actor, utc
from mlops_platform.lib.approval import decisions_of
from mlops_platform.settings import Settings

if TYPE_CHECKING:
    import dagster as dg


@dataclass(frozen=True)
class AuditEvent:
    at: str  # UTC, ISO 8601, seconds
    event: str
    version: str | None
    actor: str
    reason: str
    run_id: str | None = None


def _normal(stamp: str) -> str:
    """An ISO 8601 time as UTC to the second, so events from both sources sort together."""
    try:
        return utc(dt.datetime.fromisoformat(stamp).timestamp())
    except (TypeError, ValueError):
        return stamp or "?"


def registry_events(settings: Settings, name: str, actors: dict[str, str]) -> list[AuditEvent]:
    """What the registry records of every version of `name`; `actors` names who started each
    Dagster run (by run id), where the instance says."""
    client = registry(settings)
    events: list[AuditEvent] = []
    for found in client.search_model_versions(f"name = '{name}'"):
        version = str(found.version)
        tags = found.tags or {}
        registering_run = tags.get("dagster_run_id")
        why = ", ".join(
            f"{k.removeprefix('trigger.')} {v}" for k, v in sorted(tags.items()) if k.startswith("trigger.")
        )
        gates = [g for g in json.loads(tags.get("gates") or "[]") if g.get("passed")]
        events.append(
            AuditEvent(
                utc(found.creation_timestamp / 1000),
                "registered",
                version,
                actors.get(registering_run or "", tags.get("trigger", "?")),
                "; ".join(
                    part
                    for part in (
                        why,
                        f"passed {len(gates)} gate(s)" if gates else "",
                        f"roc_auc {tags['metric.roc_auc']}" if "metric.roc_auc" in tags else "",
                    )
                    if part
                ),
                registering_run,
            )
        )
        if tags.get("approval.requested_at"):
            run_id = tags.get("approval.requested_by_run")
            events.append(
                AuditEvent(
                    _normal(tags["approval.requested_at"]),
                    "approval requested",
                    version,
                    actors.get(run_id or "", f"Dagster run {run_id}"),
                    "the spec requires an approval before any traffic",
                    run_id,
                )
            )
        for made in decisions_of(tags):
            events.append(
                AuditEvent(_normal(made.at), made.decision, version, f"user {made.by}", made.reason)
            )
        for n in range(1, int(tags.get("deployment.attempts", "0")) + 1):
            attempt = json.loads(tags.get(f"deployment.attempt.{n}") or "{}")
            run_id = attempt.get("run_id")
            actor = actors.get(run_id or "", f"Dagster run {run_id}")
            events.append(
                AuditEvent(
                    _normal(attempt.get("started_at", "")),
                    "rollout started",
                    version,
                    actor,
                    f"attempt {n}",
                    run_id,
                )
            )
            if attempt.get("ended_at"):
                events.append(
                    AuditEvent(
                        _normal(attempt["ended_at"]),
                        attempt.get("outcome", "?").replace("_", " "),
                        version,
                        actor,
                        attempt.get("reason", ""),
                        run_id,
                    )
                )
        if tags.get("deployment.retired_at"):
            events.append(
                AuditEvent(
                    _normal(tags["deployment.retired_at"]),
                    "retired",
                    version,
                    f"deploy of v{tags.get('deployment.retired_by', '?')}",
                    tags.get("deployment.reason", ""),
                )
            )
        if tags.get("reproduction"):
            done = json.loads(tags["reproduction"])
            events.append(
                AuditEvent(
                    _normal(done.get("at", "")),
                    "reproduced" if done.get("matched") else "reproduction differs",
                    version,
                    "mlops reproduce",
                    f"max metric difference {done.get('max_difference')}; training_set "
                    f"{done.get('training_set_version')}",
                )
            )
    return events


def _runs(instance: dg.DagsterInstance, extra: set[str]) -> list[Any]:
    import dagster as dg

    runs = {
        r.run_id: r
        for job in (RETRAIN_MODEL, DEPLOY_MODEL)
        for r in instance.get_runs(dg.RunsFilter(job_name=job))
    }
    for run_id in extra - set(runs):
        run = instance.get_run_by_id(run_id)
        if run is not None:
            runs[run_id] = run
    return list(runs.values())


def instance_events(
    instance: dg.DagsterInstance, registering_runs: set[str]
) -> tuple[list[AuditEvent], dict[str, str]]:
    """What the Dagster instance records of the runs that trained and deployed: who started each
    (and why, for a drift-triggered retrain), every gate verdict and every canary step. Also
    returns who started each run, by run id."""
    import dagster as dg

    events: list[AuditEvent] = []
    actors: dict[str, str] = {}
    for run in _runs(instance, registering_runs):
        tags = dict(run.tags)
        actor = run_actor(tags)
        actors[run.run_id] = actor
        record = instance.get_run_record_by_id(run.run_id)
        started = record.start_time or record.create_timestamp.timestamp() if record else None
        if run.job_name != DEPLOY_MODEL and started is not None:
            drift = ", ".join(
                f"{k.removeprefix('mlops/')} {v}"
                for k, v in sorted(tags.items())
                if k.startswith("mlops/drift")
            )
            events.append(
                AuditEvent(
                    utc(started),
                    f"{run.job_name} started",
                    None,
                    actor,
                    drift or f"status now {run.status.value}",
                    run.run_id,
                )
            )
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            check = entry.dagster_event.event_specific_data
            events.append(
                AuditEvent(
                    utc(entry.timestamp),
                    "gate passed" if check.passed else "gate FAILED",
                    None,
                    actor,
                    f"{check.asset_key.to_user_string()}:{check.check_name}: {check.description or ''}",
                    run.run_id,
                )
            )
        if run.job_name == DEPLOY_MODEL:
            for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION):
                observed = entry.asset_observation
                meta = {k: v.value for k, v in observed.metadata.items()}
                if observed.asset_key.to_user_string() != REGISTERED or "canary_step_percent" not in meta:
                    continue
                facts = ", ".join(
                    f"{k.removeprefix('canary_')} {v:.4g}"
                    if isinstance(v, float)
                    else f"{k.removeprefix('canary_')} {v}"
                    for k, v in meta.items()
                    if k not in ("canary_step_percent", "canary_version", "canary_passed")
                )
                events.append(
                    AuditEvent(
                        utc(entry.timestamp),
                        f"canary step {meta['canary_step_percent']} % "
                        + ("passed" if meta.get("canary_passed") else "FAILED"),
                        str(meta.get("canary_version")),
                        actor,
                        facts,
                        run.run_id,
                    )
                )
    return events, actors


def audit(settings: Settings, model: str | None = None) -> list[AuditEvent]:
    """Every recorded event about `model` (the spec's registered model by default), oldest first."""
    name = model or settings.load_spec().registered_model_name
    client = registry(settings)
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        raise LookupError(f"the registry at {settings.tracking_uri} holds no model {name!r}")
    registering = {
        v.tags["dagster_run_id"]
        for v in client.search_model_versions(f"name = '{name}'")
        if v.tags.get("dagster_run_id")
    }
    events: list[AuditEvent] = []
    actors: dict[str, str] = {}
    with open_instance(settings) as instance:
        if instance is not None:
            events, actors = instance_events(instance, registering)
    events += registry_events(settings, name, actors)
    return sorted(events, key=lambda e: (e.at, e.version or ""))


def render(events: list[AuditEvent]) -> str:
    """One line per event: time, event, version, actor, reason, run."""
    lines = []
    for e in events:
        run = f"  [run {e.run_id[:8]}]" if e.run_id else ""
        lines.append(
            f"{e.at}  {e.event:<22} {('v' + e.version) if e.version else '-':<5} {e.actor:<30} "
            f"{e.reason}{run}"
        )
    return "\n".join(lines)


def as_json(events: list[AuditEvent]) -> str:
    return json.dumps([asdict(e) for e in events], indent=2)
