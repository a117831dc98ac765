"""Start the real `mlops serve` in a subprocess on a free loopback port, and stop it cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from mlops_platform.settings import Settings

ROW = {
    "age": 39,
    "workclass": "State-gov",
    "education": "Bachelors",
    "education_num": 13,
    "marital_status": "Never-married",
    "occupation": "Adm-clerical",
    "relationship": "Not-in-family",
    "race": "White",
    "sex": "Male",
    "capital_gain": 2174,
    "capital_loss": 0,
    "hours_per_week": 40,
    "native_country": "United-States",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen
    settings: Settings
    log_path: Path

    @property
    def token(self) -> str:
        return (self.settings.serving_dir / "admin_token").read_text().strip()

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def predict_url(self, model: str) -> str:
        return f"{self.url}/v1/models/{model}:predict"

    def set_traffic(self, version: str, percent: int) -> dict:
        answer = httpx.put(
            f"{self.url}/admin/traffic",
            json={"version": version, "canary_percent": percent},
            headers=self.admin(),
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 30
        while not (report := httpx.get(f"{self.url}/admin/traffic", headers=self.admin()).json())["status"][
            "applied"
        ]:
            assert time.monotonic() < deadline, report
            time.sleep(0.1)
        return report

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM to the process group (uvicorn's parent and workers), as a clean stop."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


def start_server(settings: Settings, workers: int = 2, *args: str, timeout: float = 90) -> RunningServer:
    port = free_port()
    env = {
        **os.environ,
        "MLOPS_HOME": str(settings.home),
        "MLOPS_DATASET_SPEC": str(settings.dataset_spec_path),
        "MLOPS_MLFLOW_TRACKING_URI": settings.tracking_uri,
        # mlflow.set_tracking_uri in earlier in-process tests exports these; never inherit them
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "MLFLOW_REGISTRY_URI": settings.tracking_uri,
    }
    log_path = settings.home / f"server-{port}.log"
    settings.home.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        process = subprocess.Popen(
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
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RunningServer(f"http://127.0.0.1:{port}", process, settings, log_path)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"mlops serve exited {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{server.url}/v2/health/live", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"mlops serve did not start in {timeout} s:\n{log_path.read_text()}")
        time.sleep(0.2)
    # every worker has started once each one has reported the traffic generation it applied
    while (
        len(list((settings.serving_dir / "workers").glob("*.json"))) < workers
        and settings.serving_dir.joinpath("traffic.json").exists()
    ):
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers did not report in {timeout} s:\n{log_path.read_text()}")
        time.sleep(0.2)
    return server
