"""A person's approval of a model version before it takes production traffic, kept on the version
in the MLflow registry.

Tags on a version (`approval.*`):
- `status`: `pending` once a deploy run asks for a decision, then `approved` or `rejected`
  (the latest decision wins);
- `by`, `at`, `reason`, `gates`: those of the latest decision; `gates` names the gates the
  version passed at registration (its `gates` tag), so the record says what was approved;
- `requested_at`, `requested_by_run`: when a deploy run started waiting, and which;
- `decisions`, and `decision.<n>`: every decision, as JSON, in order.

`deploy_model` reads these (`wait_for_decision`) when the spec says `require_approval`;
`mlops approve` and `mlops reject` write them (`decide`).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from mlops_platform.lib.model_registry import CHAMPION

if TYPE_CHECKING:
    from mlflow import MlflowClient

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
DECISIONS = (APPROVED, REJECTED)
MAX_NAME, MAX_REASON = 100, 2000
GATES_TAG = "gates"  # JSON list of the gates a version passed, written at registration


@dataclass(frozen=True)
class Decision:
    """One person's decision on a version."""

    decision: str  # approved | rejected
    by: str
    at: str  # UTC, ISO 8601
    reason: str
    gates: list[str]

    @property
    def approved(self) -> bool:
        return self.decision == APPROVED


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _one_line(field: str, text: str, limit: int) -> str:
    """`text` stripped; an error naming `field` when it is empty, too long or not one printable line."""
    value = (text or "").strip()
    if not value:
        raise ValueError(f"{field} is empty: say who decides and why")
    if len(value) > limit:
        raise ValueError(f"{field} is {len(value)} characters long; at most {limit}")
    if not value.isprintable():
        raise ValueError(f"{field} holds a control character (a line break?): one printable line")
    return value


def passed_gates(tags: dict[str, str]) -> list[str]:
    """The gates a version passed at registration, from its `gates` tag (`asset:check` names)."""
    try:
        gates = json.loads(tags.get(GATES_TAG) or "[]")
    except json.JSONDecodeError:
        return []
    return [g["gate"] for g in gates if isinstance(g, dict) and g.get("passed") and "gate" in g]


def decision_of(tags: dict[str, str]) -> Decision | None:
    """The latest decision recorded in a version's tags (None: nobody decided yet)."""
    status = tags.get("approval.status")
    if status not in DECISIONS:
        return None
    return Decision(
        decision=status,
        by=tags.get("approval.by", ""),
        at=tags.get("approval.at", ""),
        reason=tags.get("approval.reason", ""),
        gates=json.loads(tags.get("approval.gates") or "[]"),
    )


def decisions_of(tags: dict[str, str]) -> list[Decision]:
    """Every decision recorded on a version, oldest first."""
    count = int(tags.get("approval.decisions", "0"))
    found = []
    for n in range(1, count + 1):
        entry = tags.get(f"approval.decision.{n}")
        if entry:
            found.append(Decision(**json.loads(entry)))
    return found


def decide(client: MlflowClient, name: str, version: str, decision: str, by: str, reason: str) -> Decision:
    """Record `by`'s `decision` (approved or rejected) on `version`, with `reason`.

    Refused with an error that says why: an unknown version, a version with no record of the
    gates it passed (registered outside `retrain_model`), one already serving as `champion` or
    retired, an empty or multi-line name or reason.
    """
    from mlflow.exceptions import MlflowException

    if decision not in DECISIONS:
        raise ValueError(f"decision {decision!r}: one of {', '.join(DECISIONS)}")
    by = _one_line("--by", by, MAX_NAME)
    reason = _one_line("--reason", reason, MAX_REASON)
    if not str(version).isdigit():
        raise ValueError(f"version {version!r}: a registered version number, like 3")
    try:
        found = client.get_model_version(name, str(version))
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        known = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        raise LookupError(
            f"{name} has no version {version} (versions: {', '.join(map(str, known)) or 'none'})"
        ) from None
    tags = found.tags or {}
    if CHAMPION in (found.aliases or []):
        raise ValueError(f"v{version} is {name}'s {CHAMPION}: it already serves; an approval gates a rollout")
    if tags.get("deployment.status") == "retired":
        why = tags.get("deployment.reason") or "replaced"
        raise ValueError(f"v{version} is retired ({why}): nothing to decide")
    if GATES_TAG not in tags and "dagster_run_id" not in tags:
        raise ValueError(
            f"v{version} has no record of passing its gates (registered outside retrain_model?): "
            "only a version registered by the platform can be approved"
        )
    gates = passed_gates(tags) or [f"every blocking gate of Dagster run {tags.get('dagster_run_id')}"]
    made = Decision(decision=decision, by=by, at=_now(), reason=reason, gates=gates)
    count = int(tags.get("approval.decisions", "0")) + 1
    for key, value in {
        f"approval.decision.{count}": json.dumps(asdict(made), sort_keys=True),
        "approval.decisions": str(count),
        "approval.by": by,
        "approval.at": made.at,
        "approval.reason": reason,
        "approval.gates": json.dumps(gates),
        "approval.status": decision,  # last: a waiting deploy run reads the decision complete
    }.items():
        client.set_model_version_tag(name, str(version), key, value)
    return made


def request_decision(client: MlflowClient, name: str, version: str, run_id: str) -> Decision | None:
    """A deploy run asks for a decision on `version`: the decision already made, else None after
    marking the version `pending` (with the run and the time)."""
    tags = client.get_model_version(name, version).tags or {}
    made = decision_of(tags)
    if made is not None:
        return made
    for key, value in {
        "approval.requested_at": _now(),
        "approval.requested_by_run": run_id,
        "approval.status": PENDING,
    }.items():
        client.set_model_version_tag(name, version, key, value)
    return None


def wait_for_decision(
    client: MlflowClient,
    name: str,
    version: str,
    timeout_seconds: float,
    poll_seconds: float = 2.0,
    on_wait: Callable[[float], None] = time.sleep,
) -> Decision | None:
    """The decision on `version` once someone makes one, or None after `timeout_seconds`.
    `on_wait(seconds)` passes the time between two reads (a sleep; a caller may do more)."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        made = decision_of(client.get_model_version(name, version).tags or {})
        if made is not None:
            return made
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        on_wait(min(poll_seconds, left))
