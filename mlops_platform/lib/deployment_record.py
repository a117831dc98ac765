"""Every rollout attempt, recorded on the model version in the MLflow registry.

Tags on a version (`deployment.*`):
- `status`: `in_progress` while a deploy run drives it, then `promoted`, `rolled_back`,
  `failed` (the run raised), `interrupted` (the run died; set by the failed-run sensor),
  `already_rolled_out` (it already took all traffic), or `retired` once a later version
  replaced it;
- `attempts`, and `attempt.<n>`: JSON with the Dagster run, start, end, outcome and reason;
- `run_id`, `reason`: those of the latest attempt; `retired_by`, `retired_at` once retired.

The registry is then the one place that says what happened to a version, and no version
keeps saying `promoted` after it stopped serving.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

IN_PROGRESS = "in_progress"
FINAL_OUTCOMES = ("promoted", "rolled_back", "failed", "interrupted", "already_rolled_out")
_REASON_LIMIT = 5000


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def start_attempt(client: MlflowClient, name: str, version: str, run_id: str) -> int:
    """Record a new attempt for `version` by Dagster run `run_id`; returns its number."""
    tags = client.get_model_version(name, version).tags
    attempt = int(tags.get("deployment.attempts", "0")) + 1
    entry = {"run_id": run_id, "started_at": _now(), "outcome": IN_PROGRESS}
    for key, value in {
        "deployment.attempts": str(attempt),
        f"deployment.attempt.{attempt}": json.dumps(entry, sort_keys=True),
        "deployment.status": IN_PROGRESS,
        "deployment.run_id": run_id,
        "deployment.reason": "",
    }.items():
        client.set_model_version_tag(name, version, key, value)
    return attempt


def finish_attempt(
    client: MlflowClient, name: str, version: str, attempt: int, outcome: str, reason: str
) -> None:
    """Close attempt `attempt` with `outcome` (one of `FINAL_OUTCOMES`) and its reason."""
    if outcome not in FINAL_OUTCOMES:
        raise ValueError(f"unknown deployment outcome {outcome!r}; expected one of {FINAL_OUTCOMES}")
    key = f"deployment.attempt.{attempt}"
    entry = json.loads(client.get_model_version(name, version).tags.get(key, "{}"))
    entry.update({"ended_at": _now(), "outcome": outcome, "reason": reason[:_REASON_LIMIT]})
    client.set_model_version_tag(name, version, key, json.dumps(entry, sort_keys=True))
    client.set_model_version_tag(name, version, "deployment.status", outcome)
    client.set_model_version_tag(name, version, "deployment.reason", reason[:_REASON_LIMIT])


def retire(client: MlflowClient, name: str, version: str, replaced_by: str) -> None:
    """Mark a version that no longer serves, because `replaced_by` was promoted over it."""
    client.set_model_version_tag(name, version, "deployment.status", "retired")
    client.set_model_version_tag(name, version, "deployment.retired_by", replaced_by)
    client.set_model_version_tag(name, version, "deployment.retired_at", _now())


def interrupt_attempts_of_run(client: MlflowClient, name: str, run_id: str, reason: str) -> list[str]:
    """Versions whose attempt by `run_id` is still in progress (the run died): mark them
    `interrupted` with `reason`. Returns those versions."""
    found = []
    for version in client.search_model_versions(f"name = '{name}'"):
        tags = version.tags or {}
        if tags.get("deployment.run_id") == run_id and tags.get("deployment.status") == IN_PROGRESS:
            attempt = int(tags.get("deployment.attempts", "1"))
            finish_attempt(client, name, str(version.version), attempt, "interrupted", reason)
            found.append(str(version.version))
    return found
