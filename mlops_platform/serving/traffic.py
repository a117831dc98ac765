"""Traffic state of the local gateway, with KServe's canary semantics.

Like an InferenceService's predictor: `latest_version` is the newest revision and gets
`canary_percent` of the requests; the rest go to `rolled_out_version`, the last revision
that was rolled out at 100 %. Setting 100 promotes the latest revision; setting 0 pins all
traffic back on the rolled-out one (rollback). The first revision always takes 100 %.

The state lives in one JSON file, so it survives a restart and every server worker
follows it; each worker reports the generation it has applied, which is how a caller
confirms a change (KServe reports the same in `status.components.predictor.traffic`).

A canary (0 < canary_percent < 100) is driven by a deploy run, its `owner`, which holds a
lease (`lease_expires_at`, renewed through the admin API). A canary nobody drives is rolled
back to the stable version (`orphan_reason`): its owner's lease expired, its owner's process
on this host is gone, or, at server start only, it has no owner at all (set by hand).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import random
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from mlops_platform.lib.files import pid_alive, write_text_atomically

log = logging.getLogger("mlops_platform.serving")

DEFAULT_LEASE_SECONDS = 60.0


def lease_seconds() -> float:
    """How long a canary's lease lasts without renewal: `MLOPS_CANARY_LEASE_SECONDS` (60)."""
    text = os.environ.get("MLOPS_CANARY_LEASE_SECONDS", str(DEFAULT_LEASE_SECONDS))
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise ValueError(f"MLOPS_CANARY_LEASE_SECONDS must be a positive number of seconds, got {text!r}")
    return seconds


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _stamp(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


class CanarySplit:
    """Shares of a split described by `rolled_out_version`, `latest_version`, `canary_percent`."""

    rolled_out_version: str | None
    latest_version: str | None
    canary_percent: int

    @property
    def canary_version(self) -> str | None:
        """The latest revision while it is not the rolled-out one."""
        return self.latest_version if self.latest_version != self.rolled_out_version else None

    def shares(self) -> dict[str, int]:
        """Percent of traffic per version (a version at 0 % is listed: it is still loaded)."""
        if self.rolled_out_version is None:
            return {}
        if self.canary_version is None:
            return {self.rolled_out_version: 100}
        return {self.rolled_out_version: 100 - self.canary_percent, self.canary_version: self.canary_percent}


class CanaryOwner(BaseModel):
    """The deploy run driving a canary (`resources.serving.deploy_owner`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    run_id: str = Field(min_length=1, max_length=200)
    pid: int = Field(ge=1, le=2**31 - 1)
    host: str = Field(min_length=1, max_length=255)


class OrphanedCanaryRollback(BaseModel):
    """A canary the server rolled back because nothing drove it any more."""

    model_config = ConfigDict(frozen=True)

    version: str
    percent: int
    reason: str
    at: str


class TrafficState(BaseModel, CanarySplit):
    model_config = ConfigDict(frozen=True)

    model_name: str
    rolled_out_version: str | None = None
    latest_version: str | None = None
    canary_percent: int = Field(100, ge=0, le=100)
    generation: int = 0
    updated_at: str = ""
    owner: CanaryOwner | None = None
    lease_expires_at: str | None = None  # ISO 8601, UTC; set with `owner`
    orphaned_canary_rollback: OrphanedCanaryRollback | None = None

    @property
    def canary_active(self) -> bool:
        """A canary version takes some, not all, of the traffic."""
        return self.canary_version is not None and 0 < self.canary_percent < 100

    def with_revision(
        self, version: str, canary_percent: int, owner: CanaryOwner | None = None
    ) -> TrafficState:
        """The state after asking for `version` at `canary_percent` (KServe's rules); `owner`
        takes a fresh lease on the result."""
        version = str(version)
        if self.rolled_out_version is None or version == self.rolled_out_version or canary_percent == 100:
            rolled_out, percent = version, 100
        else:
            rolled_out, percent = self.rolled_out_version, canary_percent
        now = _now()
        return self.model_copy(
            update={
                "rolled_out_version": rolled_out,
                "latest_version": version,
                "canary_percent": percent,
                "generation": self.generation + 1,
                "updated_at": _stamp(now),
                "owner": owner,
                "lease_expires_at": None
                if owner is None
                else _stamp(now + dt.timedelta(seconds=lease_seconds())),
                "orphaned_canary_rollback": None,
            }
        )

    def with_renewed_lease(self, owner: CanaryOwner) -> TrafficState:
        """The same split with the lease extended (same generation: workers need not reapply)."""
        return self.model_copy(
            update={
                "owner": owner,
                "lease_expires_at": _stamp(_now() + dt.timedelta(seconds=lease_seconds())),
            }
        )

    def orphan_reason(self, *, host: str, at_startup: bool) -> str | None:
        """Why this state's canary has nobody driving it, or None while it is driven (or none runs)."""
        if not self.canary_active:
            return None
        owner = self.owner
        if owner is None:
            return "it has no owner (set without one) and the server restarted" if at_startup else None
        if owner.host == host and not pid_alive(owner.pid):
            return f"its owner, run {owner.run_id} (pid {owner.pid} on {host}), is no longer running"
        if self.lease_expires_at is not None and dt.datetime.fromisoformat(self.lease_expires_at) <= _now():
            return f"the lease of its owner, run {owner.run_id}, expired at {self.lease_expires_at}"
        return None

    def rolled_back(self, reason: str) -> TrafficState:
        """All traffic back on the rolled-out version, with the reason recorded."""
        now = _stamp(_now())
        return self.model_copy(
            update={
                "canary_percent": 0,
                "generation": self.generation + 1,
                "updated_at": now,
                "owner": None,
                "lease_expires_at": None,
                "orphaned_canary_rollback": OrphanedCanaryRollback(
                    version=str(self.canary_version),
                    percent=self.canary_percent,
                    reason=reason,
                    at=now,
                ),
            }
        )


@dataclass(frozen=True)
class Split:
    """The routing table one worker applies: picks a revision per request."""

    stable: object  # a Revision
    canary: object | None
    canary_percent: int

    def pick(self) -> tuple[object, str]:
        if self.canary is not None and random.random() * 100.0 < self.canary_percent:
            return self.canary, "canary"
        return self.stable, "stable"


class TrafficStore:
    """The state file, a lock for read-modify-write, and the workers' applied generations."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "traffic.json"
        self.workers_dir = directory / "workers"

    def read(self) -> TrafficState | None:
        if not self.path.exists():
            return None
        return TrafficState.model_validate_json(self.path.read_text())

    def write(self, state: TrafficState) -> None:
        write_text_atomically(self.path, state.model_dump_json(indent=2))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "traffic.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def roll_back_orphan(self, *, at_startup: bool) -> TrafficState | None:
        """Roll back the canary if nobody drives it (`TrafficState.orphan_reason`); the new state,
        or None when nothing changed. Under the lock: of several workers, one acts."""
        host = socket.gethostname()
        with self.locked():
            state = self.read()
            reason = state.orphan_reason(host=host, at_startup=at_startup) if state else None
            if state is None or reason is None:
                return None
            rolled_back = state.rolled_back(reason)
            self.write(rolled_back)
        log.warning(
            "rolled back orphaned canary v%s (%d %% -> 0 %%, all traffic on v%s): %s",
            state.canary_version,
            state.canary_percent,
            state.rolled_out_version,
            reason,
        )
        return rolled_back

    def report_applied(self, pid: int, generation: int) -> None:
        write_text_atomically(
            self.workers_dir / f"{pid}.json", json.dumps({"pid": pid, "generation": generation})
        )

    def forget_worker(self, pid: int) -> None:
        (self.workers_dir / f"{pid}.json").unlink(missing_ok=True)

    def applied_generations(self) -> dict[int, int]:
        """Generation applied by each live worker (files of dead workers are ignored)."""
        found: dict[int, int] = {}
        for path in sorted(self.workers_dir.glob("*.json")) if self.workers_dir.exists() else []:
            try:
                entry = json.loads(path.read_text())
                pid, generation = int(entry["pid"]), int(entry["generation"])
            except (OSError, ValueError, KeyError):
                continue
            if pid_alive(pid):
                found[pid] = generation
        return found

    def reset_workers(self) -> None:
        if self.workers_dir.exists():
            for path in self.workers_dir.glob("*.json"):
                path.unlink(missing_ok=True)


def admin_token(directory: Path) -> str:
    """The admin API's bearer token: `MLOPS_ADMIN_TOKEN`, else one generated and kept (0600)."""
    configured = os.environ.get("MLOPS_ADMIN_TOKEN")
    if configured:
        return configured
    path = directory / "admin_token"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()
