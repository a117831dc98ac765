"""The real `mlops serve` on a free loopback port, with admin helpers for tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from mlops_platform.local_processes import LocalProcess, start_model_server
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


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RunningServer:
    url: str
    local: LocalProcess
    settings: Settings

    @property
    def log_path(self) -> Path:
        return self.local.log_path

    @property
    def token(self) -> str:
        return (self.settings.serving_dir / "admin_token").read_text().strip()

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def predict_url(self, model: str) -> str:
        return f"{self.url}/v1/models/{model}:predict"

    def set_traffic(self, version: str, percent: int, owner: dict | None = None) -> dict:
        """Set the split (with `owner` holding the canary's lease) and wait until every worker serves it."""
        body: dict = {"version": version, "canary_percent": percent}
        if owner is not None:
            body["owner"] = owner
        answer = httpx.put(f"{self.url}/admin/traffic", json=body, headers=self.admin(), timeout=60)
        assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 30
        while not (report := httpx.get(f"{self.url}/admin/traffic", headers=self.admin()).json())["status"][
            "applied"
        ]:
            assert time.monotonic() < deadline, report
            time.sleep(0.1)
        return report

    def report(self) -> dict:
        return httpx.get(f"{self.url}/admin/traffic", headers=self.admin(), timeout=30).json()

    def stop(self, timeout: float = 60) -> int:
        return self.local.stop(timeout)


def start_server(settings: Settings, workers: int = 2, *args: str) -> RunningServer:
    """The real `mlops serve` on a free loopback port (`local_processes.start_model_server`)."""
    port = free_port()
    return RunningServer(
        f"http://127.0.0.1:{port}", start_model_server(settings, port, workers, args), settings
    )
