"""Fuzzing the real `mlops serve` (2 workers) over HTTP: over 2,000 requests generated from its
OpenAPI document (schemathesis, positive and negative) and by a seeded generator of hostile
bodies, on the inference routes and the admin API. No answer may be a 5xx, every 4xx must name
the field or the reason, and the server must still be ready and score correctly afterwards.
`benchmarks/fuzz_serving.py` runs the same with 20,000 requests."""

from __future__ import annotations

import httpx
import pytest

from mlops_platform.settings import Settings
from mlops_platform_tests.fuzz import MODEL, FuzzReport, hostile_requests, schema_cases, send_all
from mlops_platform_tests.serving import ROW, start_server

SCHEMA_INFERENCE = {
    "/v1/models/{model}:predict": 150,
    "/v2/models/{model}/infer": 150,
    "/v2/models/{model}/versions/{version}/infer": 50,
}
SCHEMA_ADMIN = {"/admin/traffic": 40, "/admin/traffic/lease": 25}
HOSTILE = 1300


@pytest.fixture
def fuzz_server(tmp_path, model_registry: Settings):
    settings = Settings(
        home=tmp_path / "home",
        dataset_spec_path=model_registry.dataset_spec_path,
        mlflow_tracking_uri=model_registry.tracking_uri,
    )
    running = start_server(settings, 2, "--version", "1")
    yield running
    running.stop()


def _score(client: httpx.Client) -> tuple[str, float]:
    answer = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [ROW]})
    assert answer.status_code == 200, answer.text
    return answer.headers["x-model-version"], answer.json()["predictions"][0]["probability"]


def test_fuzzed_requests_never_get_a_5xx_and_every_4xx_names_the_problem(fuzz_server):
    report = FuzzReport()
    with httpx.Client(base_url=fuzz_server.url, timeout=60) as client:
        before = _score(client)
        document = client.get("/openapi.json").json()
        schema_cases(document, fuzz_server.url, fuzz_server.token, SCHEMA_INFERENCE, report, seed=1)
        send_all(client, hostile_requests(seed=7, count=HOSTILE, token=fuzz_server.token), report)
        # last: valid admin bodies may move traffic anywhere (even to the failing version 3)
        schema_cases(document, fuzz_server.url, fuzz_server.token, SCHEMA_ADMIN, report, seed=2)

        assert report.sent >= 2000, report.summary()
        assert report.server_errors == 0 and not report.problems, report.summary()
        assert {s for s in report.statuses if s >= 400} >= {400, 401, 403, 404, 409, 415, 422}

        restored = fuzz_server.set_traffic("1", 100)
        assert restored["status"]["applied"]
        assert client.get("/v2/health/ready").json() == {"ready": True}
        assert _score(client) == before  # same version, same probability as before the fuzzing
        metrics = client.get("/metrics").text
    assert "mlops_server_errors_total{" not in metrics  # not one 5xx was answered
