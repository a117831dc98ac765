"""`dagster dev` serves the code location: the UI's GraphQL API lists our assets and checks."""

import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from mlops_platform_tests.pipeline import DATA_HALF
from mlops_platform_tests.serving import free_port

pytestmark = pytest.mark.slow

QUERY = """{ assetNodes { assetKey { path } groupName
  assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }"""


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


def test_dagster_dev_shows_the_data_half_with_its_checks(cli_env, adult_settings):
    adult_settings.home.mkdir(parents=True)
    port = free_port()
    server = subprocess.Popen(
        ["dagster", "dev", "-m", "mlops_platform", "-h", "127.0.0.1", "-p", str(port)],
        env=cli_env,
        cwd=cli_env["MLOPS_HOME"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, stopped as a whole below
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                nodes = _graphql(port, QUERY)["assetNodes"]
                if nodes:
                    break
            except OSError:
                pass
            assert server.poll() is None, "dagster dev exited early"
            assert time.monotonic() < deadline, "dagster dev did not serve the code location in 120 s"
            time.sleep(1)
        shown = {"/".join(n["assetKey"]["path"]): n for n in nodes}
        assert set(shown) >= DATA_HALF
        raw_checks = {c["name"]: c["blocking"] for c in shown["raw_data"]["assetChecksOrError"]["checks"]}
        assert raw_checks == {"great_expectations_suite": True, "quarantine_rate": True}
        assert shown["training_set"]["assetChecksOrError"]["checks"][0]["name"] == "training_set_is_sound"
        assert len(shown["stg_records"]["assetChecksOrError"]["checks"]) == 3  # dbt tests
        assert shown["raw_data"]["groupName"] == "ingestion"
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
