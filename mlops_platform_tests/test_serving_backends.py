"""The serving backend contract: every backend implements all of `ServingBackend`'s abstract methods."""

from __future__ import annotations

import pytest

from mlops_platform.resources.kserve import KServeInferenceService
from mlops_platform.resources.serving import LocalGateway, ServingBackend, TrafficStatus


class _NoMetrics(ServingBackend):
    """Everything but `metrics_text`."""

    def describe(self) -> str:
        return "no metrics"

    def status(self) -> TrafficStatus:
        return TrafficStatus(rolled_out_version="1", latest_version="1", canary_percent=100, confirmed=True)

    def request_traffic(self, version: str, canary_percent: int, owner: dict | None = None) -> None:
        return None

    def renew_lease(self, owner: dict) -> None:
        return None


def test_a_backend_missing_a_method_cannot_be_instantiated():
    with pytest.raises(TypeError, match="abstract method metrics_text"):
        _NoMetrics()
    with pytest.raises(TypeError, match="abstract methods"):
        ServingBackend()


def test_the_shipped_backends_implement_every_method():
    assert ServingBackend.__abstractmethods__ == {
        "describe",
        "status",
        "request_traffic",
        "renew_lease",
        "metrics_text",
    }
    local = LocalGateway(serving_dir="/nonexistent")
    kserve = KServeInferenceService(
        name="adult",
        image="mlops:latest",
        model_name="adult_income_classifier",
        metrics_url="http://p/federate",
    )
    assert local.describe() == "local gateway http://127.0.0.1:8080"
    assert kserve.describe() == "InferenceService default/adult"
