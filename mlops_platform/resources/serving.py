"""Serving backends: where the `canary_rollout` op shifts traffic and reads metrics.

Both speak KServe's canary semantics (`mlops_platform.serving.traffic`): ask for a version at
a canary percent, and confirm that every replica serves the new split before analysing it.

- `LocalGateway` (embedded default): the `mlops serve` gateway's admin API.
- `KServeInferenceService` (scale-out): an InferenceService on Kubernetes
  (`mlops_platform.resources.kserve`).
"""

from __future__ import annotations

import abc
import json
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from mlops_platform.serving.traffic import CanarySplit


@dataclass(frozen=True)
class TrafficStatus(CanarySplit):
    """The split a backend reports; `confirmed` once every replica serves it."""

    rolled_out_version: str | None
    latest_version: str | None
    canary_percent: int
    confirmed: bool


# How often a deploy run renews its canary's lease: well inside the gateway's
# `MLOPS_CANARY_LEASE_SECONDS` (60 s by default).
LEASE_RENEW_SECONDS = 5.0


class ServingUnavailable(RuntimeError):
    """The backend cannot be reached or refused the change; the message says what to do."""


def deploy_owner(run_id: str) -> dict:
    """Who drives a canary: this process of run `run_id` (the gateway's lease owner)."""
    return {"run_id": str(run_id), "pid": os.getpid(), "host": socket.gethostname()}


class ServingBackend(dg.ConfigurableResource, abc.ABC):
    """What the deploy op needs from a serving backend; a subclass implements every abstract method."""

    confirm_timeout_seconds: float = 120.0

    @abc.abstractmethod
    def describe(self) -> str:
        """The backend in a few words, for messages."""

    @abc.abstractmethod
    def status(self) -> TrafficStatus:
        """The split the backend serves now."""

    @abc.abstractmethod
    def request_traffic(self, version: str, canary_percent: int, owner: dict | None = None) -> None:
        """Ask for `version` at `canary_percent` (KServe semantics); returns without waiting.

        `owner` (`deploy_owner`) names the run driving the canary; it holds the canary's lease.
        """

    @abc.abstractmethod
    def renew_lease(self, owner: dict) -> None:
        """Tell the backend that `owner` still drives the canary (call well within the lease)."""

    @abc.abstractmethod
    def metrics_text(self) -> str:
        """Prometheus text exposition with the model server's `mlops_*` series."""

    def set_traffic(self, version: str, canary_percent: int, owner: dict | None = None) -> TrafficStatus:
        """Apply a split and wait until every replica serves it (renewing a canary's lease
        every `LEASE_RENEW_SECONDS` meanwhile: loading a version can take a while)."""
        self.request_traffic(version, canary_percent, owner)
        deadline = time.monotonic() + self.confirm_timeout_seconds
        expected_percent = 100 if canary_percent == 100 else canary_percent
        holds_lease = owner is not None and 0 < canary_percent < 100
        renewed = time.monotonic()
        while True:
            if holds_lease and time.monotonic() - renewed >= LEASE_RENEW_SECONDS:
                self.renew_lease(owner)
                renewed = time.monotonic()
            status = self.status()
            if (
                status.confirmed
                and status.latest_version == str(version)
                and (status.canary_percent == expected_percent or status.canary_version is None)
            ):
                return status
            if time.monotonic() > deadline:
                raise ServingUnavailable(
                    f"{self.describe()}: v{version} at {canary_percent} % not confirmed after "
                    f"{self.confirm_timeout_seconds:.0f} s; last status {status}"
                )
            time.sleep(0.25)


class LocalGateway(ServingBackend):
    """The local gateway started by `mlops serve`, through its token-protected admin API."""

    url: str = "http://127.0.0.1:8080"
    serving_dir: str  # where `mlops serve` keeps its admin token (when admin_token is unset)
    admin_token: str | None = None

    def describe(self) -> str:
        return f"local gateway {self.url}"

    def _token(self) -> str:
        if self.admin_token:
            return self.admin_token
        path = Path(self.serving_dir) / "admin_token"
        if not path.exists():
            raise ServingUnavailable(f"no admin token at {path}: start the gateway with `mlops serve`")
        return path.read_text().strip()

    def _call(self, method: str, path: str, body: dict | None = None, admin: bool = True) -> bytes:
        headers = {"Content-Type": "application/json"}
        if admin:
            headers["Authorization"] = f"Bearer {self._token()}"
        request = urllib.request.Request(
            self.url.rstrip("/") + path,
            data=None if body is None else json.dumps(body).encode(),
            headers=headers,
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise ServingUnavailable(
                f"{self.describe()} answered {exc.code} to {method} {path}: {detail}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServingUnavailable(
                f"{self.describe()} does not answer ({exc}): start it with `mlops serve --port <port>`"
            ) from None

    def status(self) -> TrafficStatus:
        report = json.loads(self._call("GET", "/admin/traffic"))
        spec = report["spec"] or {}
        return TrafficStatus(
            rolled_out_version=spec.get("rolled_out_version"),
            latest_version=spec.get("latest_version"),
            canary_percent=int(spec.get("canary_percent", 100)),
            confirmed=bool(report["status"]["applied"]),
        )

    def request_traffic(self, version: str, canary_percent: int, owner: dict | None = None) -> None:
        body: dict = {"version": str(version), "canary_percent": int(canary_percent)}
        if owner is not None:
            body["owner"] = owner
        self._call("PUT", "/admin/traffic", body)

    def renew_lease(self, owner: dict) -> None:
        """Renew the canary's lease (`POST /admin/traffic/lease`); the gateway rolls back a canary
        whose lease expires or whose owner process on this host died."""
        self._call("POST", "/admin/traffic/lease", {"owner": owner})

    def metrics_text(self) -> str:
        return self._call("GET", "/metrics", admin=False).decode()
