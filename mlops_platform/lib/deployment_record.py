"""Every rollout attempt, recorded on the model version in the MLflow registry.

Tags on a version (`deployment.*`):
- `status`: `in_progress` while a deploy run drives it, then `promoted`, `rolled_back`,
  `failed` (the run raised), `interrupted` (the run died; set by the failed-run sensor),
  `already_rolled_out` (it already took all traffic), `rejected` or `approval_timed_out` (the
  spec requires an approval: see `lib/approval.py`), or `retired` once a later version
  replaced it;
- `attempts`, and `attempt.<n>`: JSON with the Dagster run (id and UI page), start, end,
  outcome and reason;
- `run_id`, `run_url`, `reason`: those of the latest attempt; once retired, `reason` names the
  version that replaced it and the run that promoted that one; `retired_by`, `retired_at`.

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
FINAL_OUTCOMES = (
    "promoted",
    "rolled_back",
    "failed",
    "interrupted",
    "already_rolled_out",
    "rejected",  # a person rejected it before any traffic (`mlops reject`)
    "approval_timed_out",  # nobody decided within the spec's approval_timeout_seconds
)
_REASON_LIMIT = 5000


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def start_attempt(
    client: MlflowClient, name: str, version: str, run_id: str, run_url: str | None = None
) -> int:
    """Record a new attempt for `version` by Dagster run `run_id` (UI page `run_url`); returns its number."""
    tags = client.get_model_version(name, version).tags
    attempt = int(tags.get("deployment.attempts", "0")) + 1
    entry = {"run_id": run_id, "run_url": run_url, "started_at": _now(), "outcome": IN_PROGRESS}
    for key, value in {
        "deployment.attempts": str(attempt),
        f"deployment.attempt.{attempt}": json.dumps(entry, sort_keys=True),
        "deployment.status": IN_PROGRESS,
        "deployment.run_id": run_id,
        "deployment.run_url": run_url or "",
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


def retire(client: MlflowClient, name: str, version: str, replaced_by: str, run_id: str) -> None:
    """Mark a version that no longer serves: Dagster run `run_id` promoted `replaced_by` over it."""
    for key, value in {
        "deployment.status": "retired",
        "deployment.retired_by": replaced_by,
        "deployment.retired_at": _now(),
        "deployment.reason": f"replaced by v{replaced_by}, promoted by Dagster run {run_id}",
    }.items():
        client.set_model_version_tag(name, version, key, value)


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
