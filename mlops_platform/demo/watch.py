"""Follow what the Dagster daemon does on an instance: sensor ticks and runs, each printed once."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable

import dagster as dg
from dagster._core.scheduler.instigation import InstigatorTick, InstigatorType, TickStatus

TERMINAL = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
TRIGGER_TAGS = ("mlops/trigger", "dagster/sensor_name", "dagster/schedule_name")


class WaitTimedOut(RuntimeError):
    """The platform did not do the expected thing in time; the message says what and how long."""


class InstanceWatch:
    """Prints the ticks of `sensors` that requested runs (and the skip reasons of `explained`
    ones) and the status changes of every run created after the watch started."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        sensors: Iterable[str],
        explained: Iterable[str] = (),
        say: Callable[[str], None] = print,
        idle: Callable[[], None] = lambda: None,
        since: float | None = None,
    ) -> None:
        self.instance, self.sensors, self.explained = instance, set(sensors), set(explained)
        self.say, self.idle = say, idle
        self.since = time.time() if since is None else since
        self._states: dict[str, list] = {}
        self._ticks_seen: set[int] = set()
        self._run_status: dict[str, dg.DagsterRunStatus] = {}

    def ticks(self, sensor: str) -> list[InstigatorTick]:
        """Completed ticks of `sensor` since `since` (default: when the watch started), oldest first."""
        if not self._states.get(sensor):  # a sensor's state exists from its first tick on
            self._states[sensor] = [
                state
                for state in self.instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
                if state.instigator_name == sensor
            ]
        found = []
        for state in self._states[sensor]:
            found += self.instance.get_ticks(state.instigator_origin_id, state.selector_id, after=self.since)
        return sorted((t for t in found if t.status != TickStatus.STARTED), key=lambda t: t.timestamp)

    def runs(self, job_name: str | None = None) -> list[dg.DagsterRun]:
        """Runs created since the watch started, oldest first."""
        since = dt.datetime.fromtimestamp(self.since, dt.UTC)
        records = self.instance.get_run_records(filters=dg.RunsFilter(job_name=job_name, created_after=since))
        return [r.dagster_run for r in sorted(records, key=lambda r: r.create_timestamp)]

    def poll(self) -> None:
        for sensor in sorted(self.sensors):
            for tick in self.ticks(sensor):
                if tick.tick_id in self._ticks_seen:
                    continue
                self._ticks_seen.add(tick.tick_id)
                if tick.status == TickStatus.SUCCESS:
                    self.say(
                        f"{sensor}: requested {len(tick.run_ids)} run(s) {[r[:8] for r in tick.run_ids]}"
                    )
                elif tick.status == TickStatus.FAILURE:
                    self.say(f"{sensor}: tick FAILED: {tick.error.message.strip() if tick.error else '?'}")
                elif tick.skip_reason and sensor in self.explained:
                    self.say(f"{sensor}: {tick.skip_reason}")
        for run in self.runs():
            if self._run_status.get(run.run_id) == run.status:
                continue
            self._run_status[run.run_id] = run.status
            trigger = next((run.tags[k] for k in TRIGGER_TAGS if k in run.tags), "manual")
            self.say(f"run {run.run_id[:8]} {run.job_name} ({trigger}): {run.status.value.lower()}")

    def wait_for(self, what: str, found: Callable[[], object], timeout: float) -> object:
        """Poll (printing progress) until `found()` returns something truthy; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            result = found()
            if result:
                return result
            if time.monotonic() > deadline:
                raise WaitTimedOut(f"waited {timeout:.0f} s for {what}")
            self.idle()
            time.sleep(1.0)

    def finished_run(self, job_name: str) -> dg.DagsterRun | None:
        """The first run of `job_name` since the watch started, once it has finished."""
        runs = self.runs(job_name)
        return runs[0] if runs and runs[0].status in TERMINAL else None
