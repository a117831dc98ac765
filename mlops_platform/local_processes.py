"""The long-running local processes `mlops demo` starts: the model server and the Dagster daemon.

Each one runs in its own session (process group), so stopping it also stops what it started:
uvicorn's workers, the daemon's code server and the runs it launched. Output goes to a log file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlops_platform.settings import Settings


@dataclass
class LocalProcess:
    name: str
    process: subprocess.Popen
    log_path: Path

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM to the process group (a clean stop), SIGKILL after `timeout` seconds."""
        if self.running():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):  # children that outlived their parent
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode


def spawn(name: str, argv: Sequence[str], env: dict[str, str], log_path: Path) -> LocalProcess:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            list(argv), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return LocalProcess(name, process, log_path)


def _bin(executable: str) -> str:
    """A console script of this environment (beside its python)."""
    return str(Path(sys.executable).parent / executable)


def start_model_server(
    settings: Settings, port: int, workers: int = 2, args: Sequence[str] = (), timeout: float = 120
) -> LocalProcess:
    """`mlops serve` on 127.0.0.1:`port`; returns once it answers and every worker reported."""
    import httpx

    server = spawn(
        "model server",
        [
            sys.executable,
            "-m",
            "mlops_platform.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            *args,
        ],
        {**os.environ, **settings.to_env()},
        settings.home / "logs" / f"server-{port}.log",
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout

    def wait_or_fail(what: str) -> None:
        if not server.running():
            raise RuntimeError(f"mlops serve exited {server.process.returncode}:\n{server.log_tail()}")
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"mlops serve: {what} within {timeout:.0f} s:\n{server.log_tail()}")
        time.sleep(0.2)

    while True:
        try:
            if httpx.get(f"{url}/v2/health/live", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        wait_or_fail("no answer")
    # every worker has started once each one has reported the traffic generation it applied
    while (settings.serving_dir / "traffic.json").exists() and len(
        list((settings.serving_dir / "workers").glob("*.json"))
    ) < workers:
        wait_or_fail("not every worker reported")
    return server


# The code location's name, as `dg dev` (`make ui`) names it ([tool.dg.project] in pyproject.toml):
# sensor cursors and schedule states are kept per location name, so the daemon of `mlops demo`
# and a later `make ui` on the same instance share them.
CODE_LOCATION = "mlops_platform"


def write_workspace(settings: Settings) -> Path:
    """`$MLOPS_HOME/workspace.yaml`: the code location under the name dg gives it, for the daemon
    and for `dagster ... -w` commands that must address the daemon's sensors and jobs."""
    workspace = settings.home / "workspace.yaml"
    workspace.parent.mkdir(parents=True, exist_ok=True)
    location = {"module_name": "mlops_platform.definitions", "location_name": CODE_LOCATION}
    workspace.write_text(json.dumps({"load_from": [{"python_module": location}]}))  # YAML is a superset
    return workspace


def start_dagster_daemon(settings: Settings, dagster_home: Path) -> LocalProcess:
    """`dagster-daemon run` on the platform's code location: sensors, schedules, the run queue.

    The runs it launches inherit these settings (they are passed as `MLOPS_*` variables).
    """
    env = {**os.environ, **settings.to_env(), "DAGSTER_HOME": str(dagster_home)}
    return spawn(
        "dagster daemon",
        [_bin("dagster-daemon"), "run", "-w", str(write_workspace(settings))],
        env,
        settings.home / "logs" / "dagster-daemon.log",
    )
