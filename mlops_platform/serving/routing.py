"""The worker's routing table: follows the traffic state file and picks a revision per request.

Every worker polls the state file (`TrafficStore`) and applies each new generation: it loads
the versions the state names, then swaps its `Split` in one assignment, so in-flight requests
keep the revision they picked. It reports the generation it applied, and rolls back a canary
that nobody drives any more.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Callable

from mlops_platform.serving.revisions import Revision, RevisionError
from mlops_platform.serving.traffic import Split, TrafficState, TrafficStore
from mlops_platform.serving.validation import InvalidRequest

log = logging.getLogger("mlops_platform.serving")

REFRESH_SECONDS = 0.2


class TrafficRouter:
    """The split one worker serves, kept in step with the traffic state file."""

    def __init__(self, store: TrafficStore, model_name: str, load: Callable[[str], Revision]) -> None:
        self.store = store
        self.model_name = model_name
        self.load = load
        self.split: Split | None = None
        self.state: TrafficState | None = None  # the state applied
        self.revisions: dict[str, Revision] = {}
        self._seen: tuple[int, int] | None = None
        self._latest: TrafficState | None = None  # the state file as last read
        self._apply_lock = threading.Lock()  # the follower and the admin API may apply at once
        self._host = socket.gethostname()

    def pick(self, version: str | None) -> tuple[Revision, str]:
        """The revision for one request and its role (stable/canary): by the split, or `version`
        when the request names one. LookupError while nothing is rolled out."""
        split = self.split
        if split is None:
            raise LookupError(
                f"no version of {self.model_name!r} is rolled out yet: run the deploy_model job"
            )
        if version is None:
            return split.pick()  # type: ignore[return-value]
        revision = self.revisions.get(version)
        if revision is None:
            raise InvalidRequest(
                "version", f"version {version!r} is not loaded; loaded: {sorted(self.revisions)}", 404
            )
        return revision, "canary" if revision is split.canary else "stable"

    async def follow(self) -> None:
        """Apply each change of the state file, and roll back an orphaned canary, until cancelled."""
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await asyncio.to_thread(self.refresh)
                latest = self._latest
                if (
                    latest is not None
                    and latest.canary_active
                    and latest.orphan_reason(host=self._host, at_startup=False)
                ):
                    await asyncio.to_thread(self.store.roll_back_orphan, at_startup=False)
            except Exception:  # keep serving the current split; the next change of the file retries
                log.exception("could not apply the traffic state")

    def refresh(self) -> None:
        """Read the state file if it changed, and apply it if its generation is new."""
        try:
            stat = self.store.path.stat()
        except FileNotFoundError:
            return
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen == self._seen:
            return
        self._seen = seen
        state = self.store.read()
        self._latest = state
        if state is not None and (self.state is None or state.generation != self.state.generation):
            self.apply(state)

    def apply(self, state: TrafficState) -> None:
        """Load what `state` needs, then swap the split in one assignment (in-flight requests
        keep the revision they picked). One at a time, never back to an older generation."""
        with self._apply_lock:
            if self.state is not None and state.generation < self.state.generation:
                return
            self._apply_unlocked(state)

    def _apply_unlocked(self, state: TrafficState) -> None:
        if state.model_name != self.model_name:
            raise RevisionError(
                f"traffic state is for {state.model_name!r}, this server serves {self.model_name!r}"
            )
        wanted = [v for v in (state.rolled_out_version, state.canary_version) if v is not None]
        loaded = {v: self.revisions.get(v) or self.load(v) for v in wanted}
        self.revisions = loaded
        self.split = (
            Split(
                stable=loaded[state.rolled_out_version],
                canary=loaded.get(state.canary_version) if state.canary_version else None,
                canary_percent=state.canary_percent,
            )
            if state.rolled_out_version
            else None
        )
        self.state = state
        self.store.report_applied(os.getpid(), state.generation)
        log.info("worker %d applied traffic generation %d: %s", os.getpid(), state.generation, state.shares())

    def check_loads(self, version: str) -> None:
        """Load `version` unless it is loaded (fetching it into the shared cache): RevisionError
        when it cannot be served."""
        if version not in self.revisions:
            self.load(version)
