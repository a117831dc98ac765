"""The local run launcher, with the run-worker health check that Dagster's run monitoring needs.

Dagster's `DefaultRunLauncher` starts each run in a process of the code server but cannot tell
whether that process still lives, so a run whose worker was killed stays STARTED for ever and
holds its concurrency slot. `MonitoredRunLauncher` adds the check: the worker's pid is recorded
in the run's first engine event ("Started process for run (pid: N)"); once that process is gone
(or the pid now belongs to a process started later), the run monitoring daemon marks the run
failed, the run queue frees its slot, and the run-retry daemon retries it (`dagster.yaml`).

The check reads `/proc`, so it holds where the daemon and the code server share a host (the
embedded setup). On Kubernetes, dagster-k8s's `K8sRunLauncher` checks its run pods itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterInstance, DefaultRunLauncher
from dagster._core.events import DagsterEventType
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun

from mlops_platform.lib.files import pid_alive

# A process created this long after the event that named its pid is another process.
_PID_REUSE_SLACK_SECONDS = 2.0


class MonitoredRunLauncher(DefaultRunLauncher):
    """`DefaultRunLauncher` whose run workers the run monitoring daemon can see die."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        worker = run_worker(self._instance, run.run_id)
        if worker is None:  # a run executed some other way (in process): nothing to judge
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no run worker process recorded")
        pid, recorded_at = worker
        if process_alive(pid, recorded_at):
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker pid {pid} is alive")
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"run worker process {pid} is gone (killed or crashed)"
        )


def run_worker(instance: DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, when it was recorded) of a run's worker process, from its first engine events."""
    events = instance.event_log_storage.get_logs_for_run(
        run_id, of_type=DagsterEventType.ENGINE_EVENT, limit=5, ascending=True
    )
    for entry in events:
        event = entry.dagster_event
        data = event.engine_event_data if event is not None else None
        pid = data.metadata.get("pid") if data is not None else None
        if pid is not None:
            return int(pid.value), entry.timestamp
    return None


def process_alive(pid: int, recorded_at: float) -> bool:
    """Whether `pid` runs and is the process that was recorded at `recorded_at` (not a zombie,
    not a later process that reused the pid)."""
    if not pid_alive(pid):
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return True  # no /proc here: trust the signal check
    if fields[0] == "Z":
        return False
    boot_time = next(
        float(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime")
    )
    started = boot_time + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return started <= recorded_at + _PID_REUSE_SLACK_SECONDS
