"""`mlops simulate-traffic` and its sender when requests get no answer: the summary counts
connection errors instead of crashing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from mlops_platform.lib.traffic import CONNECTION_ERROR, TrafficSender, send_traffic
from mlops_platform.settings import Settings
from mlops_platform_tests.serving import ROW, free_port, start_server

MODEL = "adult_income_classifier"


def test_summary_counts_connection_errors_when_nothing_listens():
    report = send_traffic(f"http://127.0.0.1:{free_port()}", MODEL, [(0, ROW)], rate=50, duration=0.4)
    summary = report.summary()
    assert summary["sent"] == 20 and summary["connection_errors"] == 20
    assert summary["statuses"] == {CONNECTION_ERROR: 20}


def test_summary_counts_answers_and_connection_errors_of_a_server_killed_mid_run(tmp_path, model_registry):
    settings = Settings(
        home=tmp_path / "home",
        dataset_spec_path=model_registry.dataset_spec_path,
        mlflow_tracking_uri=model_registry.tracking_uri,
    )
    server = start_server(settings, 1, "--version", "1")
    sender = TrafficSender(server.url, MODEL, [(i, ROW) for i in range(10)], rate=100, limit=300).start()
    try:
        while sender.phase_seconds < 1.0:
            time.sleep(0.05)
        os.killpg(server.local.process.pid, signal.SIGKILL)  # no clean stop: the port just closes
        summary = sender.wait().summary()
    finally:
        server.stop()
    assert summary["sent"] == 300
    assert summary["statuses"]["200"] > 0 and summary["connection_errors"] > 0
    assert summary["statuses"]["200"] + summary["connection_errors"] == 300
    assert summary["versions"] == {"1": summary["statuses"]["200"]}


def test_cli_prints_a_summary_when_the_server_does_not_answer(cli_env):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlops_platform.cli",
            "simulate-traffic",
            "--url",
            f"http://127.0.0.1:{free_port()}",
            "--rate",
            "20",
            "--duration",
            "1",
            "--rows",
            "50",
        ],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stderr  # not every request was answered
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert summary["sent"] == 20 and summary["connection_errors"] == 20
    assert "Traceback" not in done.stderr
