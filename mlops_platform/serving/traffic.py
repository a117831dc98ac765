"""Traffic state of the local gateway, with KServe's canary semantics.

Like an InferenceService's predictor: `latest_version` is the newest revision and gets
`canary_percent` of the requests; the rest go to `rolled_out_version`, the last revision
that was rolled out at 100 %. Setting 100 promotes the latest revision; setting 0 pins all
traffic back on the rolled-out one (rollback). The first revision always takes 100 %.

The state lives in one JSON file, so it survives a restart and every server worker
follows it; each worker reports the generation it has applied, which is how a caller
confirms a change (KServe reports the same in `status.components.predictor.traffic`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from mlops_platform.lib.files import atomic_target


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


class TrafficState(BaseModel, CanarySplit):
    model_config = ConfigDict(frozen=True)

    model_name: str
    rolled_out_version: str | None = None
    latest_version: str | None = None
    canary_percent: int = Field(100, ge=0, le=100)
    generation: int = 0
    updated_at: str = ""

    def with_revision(self, version: str, canary_percent: int) -> TrafficState:
        """The state after asking for `version` at `canary_percent` (KServe's rules)."""
        version = str(version)
        if self.rolled_out_version is None or version == self.rolled_out_version or canary_percent == 100:
            rolled_out, percent = version, 100
        else:
            rolled_out, percent = self.rolled_out_version, canary_percent
        return self.model_copy(
            update={
                "rolled_out_version": rolled_out,
                "latest_version": version,
                "canary_percent": percent,
                "generation": self.generation + 1,
                "updated_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
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
        with atomic_target(self.path) as tmp:
            tmp.write_text(state.model_dump_json(indent=2))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "traffic.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def report_applied(self, pid: int, generation: int) -> None:
        self.workers_dir.mkdir(parents=True, exist_ok=True)
        with atomic_target(self.workers_dir / f"{pid}.json") as tmp:
            tmp.write_text(json.dumps({"pid": pid, "generation": generation}))

    def forget_worker(self, pid: int) -> None:
        (self.workers_dir / f"{pid}.json").unlink(missing_ok=True)

    def applied_generations(self) -> dict[int, int]:
        """Generation applied by each live worker (files of dead workers are ignored)."""
        found: dict[int, int] = {}
        for path in sorted(self.workers_dir.glob("*.json")) if self.workers_dir.exists() else []:
            try:
                entry = json.loads(path.read_text())
                os.kill(int(entry["pid"]), 0)
            except (OSError, ValueError, KeyError):
                continue
            found[int(entry["pid"])] = int(entry["generation"])
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
