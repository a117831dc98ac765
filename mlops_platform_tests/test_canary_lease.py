"""A canary nobody drives goes back to the stable version; the registry being down is a quick 503.

Real `mlops serve` processes over HTTP with real registered versions (the `model_registry`
fixture); the `LocalGateway` resource drives the lease as the deploy op does.
"""

from __future__ import annotations

import datetime as dt
import socket
import time

import httpx
import pytest

from mlops_platform.resources.serving import LocalGateway, ServingUnavailable, deploy_owner
from mlops_platform.serving.traffic import CanaryOwner, TrafficState, TrafficStore
from mlops_platform.settings import Settings
from mlops_platform_tests.serving import ROW, dead_pid, free_port, start_server

MODEL = "adult_income_classifier"


def _settings(tmp_path, model_registry: Settings, tracking_uri: str | None = None) -> Settings:
    return Settings(
        home=tmp_path / "home",
        dataset_spec_path=model_registry.dataset_spec_path,
        mlflow_tracking_uri=tracking_uri or model_registry.tracking_uri,
    )


def _versions_served(url: str, n: int = 100) -> set[str]:
    with httpx.Client(base_url=url) as client:
        return {
            client.post(f"/v1/models/{MODEL}:predict", json={"instances": [ROW]}).headers["x-model-version"]
            for _ in range(n)
        }


def _shares(report: dict) -> dict[str, int]:
    return {t["version"]: t["percent"] for t in report["status"]["traffic"]}


@pytest.mark.parametrize("owner", ["dead process", "none"])
def test_a_restarted_server_rolls_back_a_canary_nobody_drives(tmp_path, model_registry, owner):
    settings = _settings(tmp_path, model_registry)
    far = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    TrafficStore(settings.serving_dir).write(
        TrafficState(
            model_name=MODEL,
            rolled_out_version="1",
            latest_version="2",
            canary_percent=90,
            generation=3,
            owner=CanaryOwner(run_id="killed-run", pid=dead_pid(), host=socket.gethostname())
            if owner == "dead process"
            else None,
            lease_expires_at=far if owner == "dead process" else None,
        )
    )
    server = start_server(settings, 1)
    try:
        report = server.report()
        assert _shares(report) == {"1": 100, "2": 0}
        rollback = report["status"]["orphaned_canary_rollback"]
        assert rollback["version"] == "2" and rollback["percent"] == 90
        assert ("no longer running" if owner == "dead process" else "no owner") in rollback["reason"]
        assert _versions_served(server.url) == {"1"}
        assert "rolled back orphaned canary v2" in server.log_path.read_text()
    finally:
        server.stop()


def test_a_canary_keeps_its_lease_while_renewed_and_is_rolled_back_when_it_expires(
    tmp_path, model_registry, monkeypatch
):
    monkeypatch.setenv("MLOPS_CANARY_LEASE_SECONDS", "2")
    settings = _settings(tmp_path, model_registry)
    server = start_server(settings, 1, "--version", "1")
    try:
        gateway = LocalGateway(url=server.url, serving_dir=str(settings.serving_dir))
        owner = deploy_owner("deploy-run-1")
        status = gateway.set_traffic("2", 50, owner=owner)  # what the deploy op does
        assert status.shares() == {"1": 50, "2": 50}
        assert server.report()["spec"]["owner"] == owner

        renewed_until = time.monotonic() + 5  # more than twice the lease
        while time.monotonic() < renewed_until:
            gateway.renew_lease(owner)
            time.sleep(0.5)
        assert _shares(server.report()) == {"1": 50, "2": 50}

        with pytest.raises(ServingUnavailable, match="409"):
            gateway.renew_lease(deploy_owner("someone-else"))

        stopped = time.monotonic()  # no more renewals: rolled back within lease + a few ticks
        while (report := server.report())["spec"]["canary_percent"] != 0:
            assert time.monotonic() - stopped < 10, report
            time.sleep(0.1)
        assert report["status"]["orphaned_canary_rollback"]["reason"].startswith(
            "the lease of its owner, run deploy-run-1, expired"
        )
        while not server.report()["status"]["applied"]:
            time.sleep(0.1)
        assert _versions_served(server.url) == {"1"}
        with pytest.raises(ServingUnavailable, match="no canary is running"):
            gateway.renew_lease(owner)

        # an owner process on this host that dies is noticed without waiting for its lease
        server.set_traffic("2", 30, owner={**deploy_owner("short-lived"), "pid": dead_pid()})
        deadline = time.monotonic() + 5
        while (report := server.report())["spec"]["canary_percent"] != 0:
            assert time.monotonic() < deadline, report
            time.sleep(0.1)
        assert "no longer running" in report["status"]["orphaned_canary_rollback"]["reason"]
    finally:
        server.stop()


def test_a_canary_set_without_owner_keeps_running_until_a_restart(tmp_path, model_registry):
    server = start_server(_settings(tmp_path, model_registry), 1, "--version", "1")
    try:
        server.set_traffic("2", 20)
        time.sleep(1.0)  # several checks of the state file
        assert _shares(server.report()) == {"1": 80, "2": 20}
    finally:
        server.stop()


def test_admin_api_answers_503_quickly_naming_the_unreachable_registry(tmp_path, model_registry):
    closed = f"http://mlflow:s3cret@127.0.0.1:{free_port()}"
    server = start_server(_settings(tmp_path, model_registry, closed), 1)
    try:
        assert "no version to serve yet" in server.log_path.read_text()
        started = time.monotonic()
        answer = httpx.put(
            f"{server.url}/admin/traffic", json={"version": "1"}, headers=server.admin(), timeout=120
        )
        assert time.monotonic() - started < 10
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert "mlflow:***@127.0.0.1" in error and "s3cret" not in error
        assert answer.json()["field"] == "registry"
    finally:
        server.stop()


def test_registry_probe_redacts_a_database_password():
    from mlops_platform.serving.revisions import RegistryUnavailable, resolve_version

    uri = f"postgresql://mlflow:pa55word@127.0.0.1:{free_port()}/mlflow"
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable) as caught:
        resolve_version(uri, MODEL, version="1")
    assert time.monotonic() - started < 5
    assert "postgresql://mlflow:***@127.0.0.1" in str(caught.value) and "pa55word" not in str(caught.value)
