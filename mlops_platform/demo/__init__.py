"""`mlops demo`: the whole life of a model on the embedded defaults, with visible progress.

1. Lands the reference period and a few daily batches; runs the data pipeline and the model
   half in this process: v1 is trained, gated and registered.
2. Starts the model server (`mlops serve`) and rolls v1 out (a first rollout takes 100 %).
3. Starts client traffic from held-out rows, lands days whose data has moved (the spec's
   `simulation.demo_drift`) and starts the Dagster daemon (every sensor and schedule on).
4. `new_data_sensor` ingests the new days; `drift_sensor` judges the traffic, still calm:
   no drift, and nothing retrains.
5. Moves the traffic the way the data moved: `drift_sensor` requests `retrain_model`; v2 is trained on
   what landed, gated and registered; `auto_deploy_sensor` starts `deploy_model`, whose canary
   promotes v2 to champion while the traffic flows.
6. Stops traffic, daemon and server; delivers the served requests' labels; materializes
   `inference_log`, `drift_report` and `live_performance`; prints the summary.

Runs, ticks and materializations go to the instance in `$DAGSTER_HOME`: `make ui` shows them. The
demo prints its own progress and errors only; what Dagster and the libraries under it (dbt, MLflow)
write to the console, Dagster's debug lines included, goes to `MLOPS_HOME/logs/demo-dagster.log`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg

from mlops_platform.lib.model_registry import mlflow_client
from mlops_platform.settings import Settings

DRIFT_SENSOR, NEW_DATA_SENSOR, AUTO_DEPLOY_SENSOR = "drift_sensor", "new_data_sensor", "auto_deploy_sensor"


@dataclass(frozen=True)
class DemoOptions:
    batches: int = 3  # daily batches landed with the reference period, before the first model
    drifted_days: int = 3  # days landed with the spec's demo_drift after the first model
    rate: float = 100.0  # client requests per second
    wait_seconds: float = 900.0  # the longest the demo waits for any one thing the platform does


class DemoFailed(RuntimeError):
    """A stage of the demo did not end as it should; the message says which and why."""


class Progress:
    """`==> stage` headings, `[  12 s] event` lines (seconds since the demo started) and blocks of
    text, on the stdout the demo started with (while `console_log_to` diverts the process's)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.out = sys.stdout

    def stage(self, message: str) -> None:
        self.show(f"\n==> {message}")

    def say(self, message: str) -> None:
        self.show(f"[{time.monotonic() - self.started:5.0f} s] {message}")

    def show(self, text: str) -> None:
        print(text, file=self.out, flush=True)


def local_port(url: str) -> int:
    """The port of a loopback `http://` URL: the demo starts the server there itself."""
    parsed = urlparse(url)
    if parsed.scheme != "http" or parsed.hostname not in ("127.0.0.1", "localhost"):
        raise ValueError(f"MLOPS_SERVING_URL={url}: the demo serves on this machine, http://127.0.0.1:PORT")
    return parsed.port or 80


def require_free_port(port: int) -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise ValueError(
                f"port {port} is taken (a model server still running?): stop it, or set "
                f"MLOPS_SERVING_URL=http://127.0.0.1:<free port>"
            ) from None


def require_fresh_registry(settings: Settings, model_name: str) -> None:
    client = mlflow_client(settings.tracking_uri)
    if client.search_registered_models(filter_string=f"name='{model_name}'"):
        raise ValueError(
            f"{settings.home} already holds a registered {model_name}: the demo tells its story from "
            f"the start. Run `make clean` first, or point MLOPS_HOME (and DAGSTER_HOME) elsewhere."
        )


@contextlib.contextmanager
def console_log_to(path: Path) -> Iterator[None]:
    """Send what this process writes to stdout and stderr (the console logger of in-process runs,
    dbt's output, warnings) to `path` while the block runs; `Progress` keeps the real stdout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(path, "a", buffering=1, encoding="utf-8") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        yield


def run_demo(options: DemoOptions = DemoOptions()) -> int:
    dagster_home = os.environ.get("DAGSTER_HOME")
    if not dagster_home:
        raise ValueError("set DAGSTER_HOME to the instance folder (`make demo` does: .mlops/dagster)")
    settings = Settings.from_env()
    spec = settings.load_spec()
    if not spec.simulation.demo_drift:
        raise ValueError(f"{settings.dataset_spec_path}: simulation.demo_drift is empty: say how data moves")
    port = local_port(settings.serving_url)
    require_free_port(port)
    progress = Progress()
    dagster_log = settings.home / "logs" / "demo-dagster.log"
    progress.say(f"Dagster's log (debug lines included): {dagster_log}")
    try:
        with console_log_to(dagster_log):
            require_fresh_registry(settings, spec.registered_model_name)
            with dg.DagsterInstance.get() as instance:
                from mlops_platform.demo.loop import DemoLoop

                DemoLoop(settings, spec, instance, Path(dagster_home), port, options, progress).run()
    except DemoFailed as failure:
        print(f"\nthe demo stopped: {failure}", flush=True)
        return 1
    return 0
