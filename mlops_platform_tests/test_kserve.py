"""The KServe backend: the InferenceService it builds, the CRD schema, the canary over a fake API server.

No cluster can run here: `fake_kube.FakeKubeApiServer` stands in for the API server and the
KServe controller, over real HTTP, so the kubernetes client is exercised for real.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlops_platform.lib.inference_service import (
    EXAMPLE_ARGUMENTS,
    SCHEMA_PATH,
    InvalidInferenceService,
    build_inference_service,
    example_manifest,
    validate_inference_service,
)
from mlops_platform.resources.kserve import KServeInferenceService
from mlops_platform.resources.serving import ServingUnavailable, TrafficStatus
from mlops_platform_tests.fake_kube import FakeKubeApiServer

REPO_ROOT = Path(__file__).resolve().parents[1]
ISVC_COLLECTION = "/apis/serving.kserve.io/v1beta1/namespaces/mlops/inferenceservices"
ISVC_PATH = f"{ISVC_COLLECTION}/adult-income"
TOKEN = "test-token"


def _container(obj: dict) -> dict:
    return obj["spec"]["predictor"]["containers"][0]


def _env(obj: dict) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(obj)["env"]}


# --- the object and the CRD schema ----------------------------------------------------------


def test_built_inference_service_is_serverless_traceable_and_valid() -> None:
    obj = build_inference_service(**{**EXAMPLE_ARGUMENTS, "model_version": "7", "canary_percent": 10})
    validate_inference_service(obj)

    assert obj["apiVersion"] == "serving.kserve.io/v1beta1"
    assert obj["kind"] == "InferenceService"
    assert obj["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Serverless"}
    predictor = obj["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 3)
    assert predictor["labels"]["mlops.platform/model-version"] == "7"
    assert predictor["annotations"] == {
        "mlops.platform/model-uri": "models:/adult_income_classifier/7",
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
    }
    container = _container(obj)
    assert container["command"] == [
        *("mlops", "serve", "--host", "0.0.0.0", "--port", "8080", "--workers", "2"),
        *("--version", "7"),
    ]
    assert container["ports"] == [{"containerPort": 8080, "name": "http1", "protocol": "TCP"}]
    assert _env(obj) == {
        "MLOPS_HOME": "/mnt/data",
        "MLOPS_MLFLOW_TRACKING_URI": {
            "secretKeyRef": {"key": "MLOPS_MLFLOW_TRACKING_URI", "name": "mlflow-db"}
        },
        "MLOPS_MODEL_URI": "models:/adult_income_classifier/7",
    }
    promoted = build_inference_service(**EXAMPLE_ARGUMENTS)
    assert "canaryTrafficPercent" not in promoted["spec"]["predictor"]


def test_builder_needs_one_source_for_the_tracking_uri() -> None:
    arguments = {k: v for k, v in EXAMPLE_ARGUMENTS.items() if k != "tracking_uri_secret"}
    with pytest.raises(ValueError, match="exactly one"):
        build_inference_service(**arguments)
    with_value = build_inference_service(**arguments, tracking_uri="http://mlflow.mlops.svc:5000")
    assert _env(with_value)["MLOPS_MLFLOW_TRACKING_URI"] == "http://mlflow.mlops.svc:5000"


def _set(path: str | tuple[str, ...], value: object):
    """A change to a built object: set `path` (dotted, or a tuple of keys) to `value` or delete it."""

    def mutate(obj: dict) -> None:
        *parents, last = path.split(".") if isinstance(path, str) else path
        node = obj
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DELETE:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value

    return mutate


_DELETE = object()


@pytest.mark.parametrize(
    ("mutate", "path", "fragment"),
    [
        # refused by the CRD's openAPIV3Schema itself
        (
            _set("spec.predictor.canaryTrafficPercent", "10"),
            "spec.predictor.canaryTrafficPercent",
            "not of type",
        ),
        (_set("spec.predictor.canaryTrafficPercent", 2**63), "spec.predictor.canaryTrafficPercent", "int64"),
        (
            _set("spec.predictor.containers.0.name", _DELETE),
            "spec.predictor.containers[0]",
            "'name' is a required",
        ),
        (_set("spec.predictor.minReplicas", "one"), "spec.predictor.minReplicas", "not of type 'integer'"),
        (_set("spec.predictor.scaleMetric", "latency"), "spec.predictor.scaleMetric", "is not one of"),
        (
            _set("spec.predictor.containers.0.resources.requests.cpu", "lots"),
            "spec.predictor.containers[0].resources.requests.cpu",
            "does not match",
        ),
        (_set("spec.predictor.containers.0.ports.0.containerPort", _DELETE), "ports[0]", "'containerPort'"),
        (_set("spec.predictor", _DELETE), "spec", "'predictor' is a required property"),
        # let through by the CRD, refused by the API server, KServe's webhook or Knative
        (
            _set("spec.predictor.canaryTrafficPercent", 150),
            "spec.predictor.canaryTrafficPercent",
            "between 0",
        ),
        (
            _set("spec.predictor.containers.0.image", _DELETE),
            "spec.predictor.containers[0].image",
            "required",
        ),
        (
            _set("apiVersion", "serving.kserve.io/v1alpha1"),
            "apiVersion",
            "is not 'serving.kserve.io/v1beta1'",
        ),
        (_set("kind", "Service"), "kind", "is not 'InferenceService'"),
        (_set("metadata.name", "Adult_Income"), "metadata.name", "does not match"),
        (_set("spec.predictor.minReplicas", 5), "spec.predictor.minReplicas", "greater than maxReplicas 3"),
        (
            _set(("spec", "predictor", "labels", "mlops.platform/model-version"), "v 1"),
            "spec.predictor.labels",
            "not a valid label value",
        ),
    ],
)
def test_invalid_inference_services_are_refused_naming_the_path(mutate, path: str, fragment: str) -> None:
    obj = copy.deepcopy(build_inference_service(**EXAMPLE_ARGUMENTS))
    mutate(obj)
    with pytest.raises(InvalidInferenceService) as caught:
        validate_inference_service(obj)
    assert any(path in where and fragment in message for where, message in caught.value.problems), (
        caught.value.problems
    )
    assert path in str(caught.value)


def test_vendored_schema_matches_the_kserve_sdk_models() -> None:
    """Every vendored field exists, under the same name, in kserve 0.21.0's and kubernetes' models."""
    import kserve
    from kubernetes.client import V1Container

    schema = json.loads(SCHEMA_PATH.read_text())
    predictor = schema["properties"]["spec"]["properties"]["predictor"]
    assert schema["properties"]["spec"]["required"] == ["predictor"]
    assert predictor["properties"]["canaryTrafficPercent"] == {"format": "int64", "type": "integer"}
    assert set(predictor["properties"]) <= set(kserve.V1beta1PredictorSpec.attribute_map.values())
    container = predictor["properties"]["containers"]["items"]
    assert container["required"] == ["name"]
    assert set(container["properties"]) <= set(V1Container.attribute_map.values())
    component = schema["properties"]["status"]["properties"]["components"]["additionalProperties"]
    assert set(component["properties"]) <= set(kserve.V1beta1ComponentStatusSpec.attribute_map.values())


def _to_model(data: object, klass: str) -> object:
    """JSON to SDK objects by the models' own `openapi_types` and `attribute_map`.

    Neither SDK's ApiClient.deserialize reads the mix: kserve 0.21.0's looks classes up in
    `kserve.models` (which does not export them) and writes `dict(str, str)`, while the
    kubernetes models it nests (V1Container, ...) write `dict[str, str]`.
    """
    import re

    import kserve
    import kubernetes.client

    if data is None:
        return None
    if match := re.fullmatch(r"list\[(.*)\]", klass):
        return [_to_model(item, match[1]) for item in data]
    if match := re.fullmatch(r"dict[(\[]([^,]*), (.*)[)\]]", klass):
        return {key: _to_model(value, match[2]) for key, value in data.items()}
    if klass in ("str", "int", "float", "bool", "object"):
        return data
    model = getattr(kserve, klass, None) or getattr(kubernetes.client, klass)
    fields = {
        attribute: _to_model(data[key], model.openapi_types[attribute])
        for attribute, key in model.attribute_map.items()
        if key in data
    }
    return model(**fields)


def test_inference_service_round_trips_through_the_kserve_sdk() -> None:
    from kubernetes.client import ApiClient

    obj = build_inference_service(**{**EXAMPLE_ARGUMENTS, "model_version": "4", "canary_percent": 25})
    isvc = _to_model(json.loads(json.dumps(obj)), "V1beta1InferenceService")

    assert type(isvc).__name__ == "V1beta1InferenceService"
    predictor = isvc.spec.predictor
    assert predictor.canary_traffic_percent == 25
    assert predictor.containers[0].env[2].value == "models:/adult_income_classifier/4"
    assert predictor.containers[0].resources.requests == {"cpu": "500m", "memory": "1Gi"}
    assert ApiClient().sanitize_for_serialization(isvc) == obj


def test_checked_in_example_is_what_the_builder_writes() -> None:
    checked_in = (REPO_ROOT / "deploy" / "kserve" / "inferenceservice.yaml").read_text()
    assert checked_in == example_manifest(), (
        "regenerate: python -m mlops_platform.lib.inference_service > deploy/kserve/inferenceservice.yaml"
    )


# --- the backend against the fake API server ------------------------------------------------


@pytest.fixture
def fake_api() -> Iterator[FakeKubeApiServer]:
    with FakeKubeApiServer(token=TOKEN, ready_after_reads=2) as server:
        yield server


def _backend(fake_api: FakeKubeApiServer, **overrides: object) -> KServeInferenceService:
    settings = {
        "namespace": "mlops",
        "name": "adult-income",
        "image": "registry.example/mlops-platform:0.1.0",
        "model_name": "adult_income_classifier",
        "tracking_uri": "http://mlflow.mlops.svc:5000",
        "metrics_url": "http://127.0.0.1:9/federate",
        "kube_host": fake_api.url,
        "kube_token": TOKEN,
        "confirm_timeout_seconds": 10.0,
        **overrides,
    }
    return KServeInferenceService(**settings)


def _sent(request) -> tuple[str, object, str | None]:
    """(method, canaryTrafficPercent as sent, version in the container's env) of one write."""
    predictor = request.body["spec"]["predictor"]
    uri = next(e["value"] for e in predictor["containers"][0]["env"] if e["name"] == "MLOPS_MODEL_URI")
    return request.method, predictor.get("canaryTrafficPercent", "absent"), uri.rsplit("/", 1)[1]


def _traffic(fake_api: FakeKubeApiServer) -> list[tuple[str, int, bool]]:
    predictor = fake_api.objects[("mlops", "adult-income")]["status"]["components"]["predictor"]
    return [(t["revisionName"], t["percent"], t["latestRevision"]) for t in predictor["traffic"]]


def test_canary_rollout_promotion_and_rollback(fake_api: FakeKubeApiServer) -> None:
    backend = _backend(fake_api)
    assert backend.status() == TrafficStatus(None, None, 100, False)

    # first version: the InferenceService is created; its first revision takes everything
    assert backend.set_traffic("1", 100) == TrafficStatus("1", "1", 100, True)
    assert _traffic(fake_api) == [("adult-income-predictor-00001", 100, True)]

    # canary 10 then 50: one new revision, the split served by the route
    assert backend.set_traffic("2", 10) == TrafficStatus("1", "2", 10, True)
    assert _traffic(fake_api) == [
        ("adult-income-predictor-00002", 10, True),
        ("adult-income-predictor-00001", 90, False),
    ]
    step = backend.set_traffic("2", 50)
    assert step == TrafficStatus("1", "2", 50, True)
    assert step.shares() == {"1": 50, "2": 50}
    assert sorted(name for _, name in fake_api.revisions) == [
        "adult-income-predictor-00001",
        "adult-income-predictor-00002",
    ], "changing only canaryTrafficPercent must not start a revision"

    # promotion: the field goes, the latest revision is the rolled-out one
    assert backend.set_traffic("2", 100) == TrafficStatus("2", "2", 100, True)
    predictor_status = fake_api.objects[("mlops", "adult-income")]["status"]["components"]["predictor"]
    assert predictor_status["latestRolledoutRevision"] == "adult-income-predictor-00002"
    assert predictor_status["previousRolledoutRevision"] == "adult-income-predictor-00001"
    assert _traffic(fake_api) == [("adult-income-predictor-00002", 100, True)]

    # a bad canary, rolled back at 0: every request on the version rolled out before it
    assert backend.set_traffic("3", 10) == TrafficStatus("2", "3", 10, True)
    rolled_back = backend.set_traffic("3", 0)
    assert rolled_back == TrafficStatus("2", "3", 0, True)
    assert rolled_back.shares() == {"2": 100, "3": 0}
    assert _traffic(fake_api) == [
        ("adult-income-predictor-00003", 0, True),
        ("adult-income-predictor-00002", 100, False),
    ]

    # exactly what the client sent
    writes = fake_api.writes()
    assert [(w.method, w.path) for w in writes] == [("POST", ISVC_COLLECTION)] + [("PATCH", ISVC_PATH)] * 5
    assert [_sent(w) for w in writes] == [
        ("POST", "absent", "1"),
        ("PATCH", 10, "2"),
        ("PATCH", 50, "2"),
        ("PATCH", None, "2"),  # null in a merge patch removes the field
        ("PATCH", 10, "3"),
        ("PATCH", 0, "3"),
    ]
    assert all(w.content_type == "application/merge-patch+json" for w in writes[1:])
    assert all(w.body["metadata"]["resourceVersion"] for w in writes[1:])
    assert all(w.query == {"fieldManager": ["mlops-platform"]} for w in writes)
    assert all(w.body["spec"]["predictor"]["containers"][0]["command"][-1] == _sent(w)[2] for w in writes)
    reads = [r.path for r in fake_api.requests if r.method == "GET"]
    assert "/apis/serving.knative.dev/v1/namespaces/mlops/revisions/adult-income-predictor-00001" in reads

    # what the fake controller wrote is a valid InferenceService, status included
    validate_inference_service(fake_api.objects[("mlops", "adult-income")])


def test_status_is_unconfirmed_until_the_new_revision_is_ready(fake_api: FakeKubeApiServer) -> None:
    backend = _backend(fake_api)
    backend.set_traffic("1", 100)
    backend.request_traffic("2", 10)
    pending = backend.status()
    assert pending.confirmed is False
    assert pending.latest_version == "1"  # the route still resolves "latest" to the ready revision
    assert backend.status() == TrafficStatus("1", "2", 10, True)


def test_a_route_serving_another_split_is_not_confirmed(fake_api: FakeKubeApiServer) -> None:
    backend = _backend(fake_api)
    backend.set_traffic("1", 100)
    backend.set_traffic("2", 10)
    traffic = fake_api.objects[("mlops", "adult-income")]["status"]["components"]["predictor"]["traffic"]
    traffic[0]["percent"], traffic[1]["percent"] = 20, 80  # as if the route still served an older split
    assert backend.status() == TrafficStatus("1", "2", 20, False)


def test_a_version_already_rolled_out_is_promoted_not_split(fake_api: FakeKubeApiServer) -> None:
    backend = _backend(fake_api)
    backend.set_traffic("1", 100)
    assert backend.set_traffic("1", 10) == TrafficStatus("1", "1", 100, True)
    assert fake_api.writes()[-1].body["spec"]["predictor"]["canaryTrafficPercent"] is None
    assert "canaryTrafficPercent" not in fake_api.objects[("mlops", "adult-income")]["spec"]["predictor"]
    assert len(fake_api.revisions) == 1


def test_a_conflicting_write_is_retried_on_a_fresh_read(fake_api: FakeKubeApiServer) -> None:
    backend = _backend(fake_api)
    backend.set_traffic("1", 100)
    fake_api.conflicts_to_inject = 1
    assert backend.set_traffic("2", 10) == TrafficStatus("1", "2", 10, True)
    assert [w.method for w in fake_api.writes()] == ["POST", "PATCH", "PATCH"]


def test_an_invalid_object_is_never_sent(fake_api: FakeKubeApiServer) -> None:
    backend = _backend(fake_api, name="Adult_Income")
    with pytest.raises(InvalidInferenceService, match=r"metadata\.name"):
        backend.request_traffic("1", 100)
    assert fake_api.writes() == []


def test_api_errors_become_serving_unavailable(fake_api: FakeKubeApiServer) -> None:
    with pytest.raises(ServingUnavailable, match="401"):
        _backend(fake_api, kube_token="wrong").status()
    with pytest.raises(ServingUnavailable, match="unreachable"):
        _backend(fake_api, kube_host="http://127.0.0.1:9", request_timeout_seconds=2.0).status()


# --- metrics from Prometheus' federate endpoint ---------------------------------------------


def _federated(name: str, value: int, pod: str, **labels: str) -> str:
    """One line as `/federate` writes it: the scrape's target labels added, a timestamp appended."""
    labels = {"instance": f"{pod}:8080", "job": "kubernetes-pods", "model_name": "adult", **labels}
    return (
        name
        + "{"
        + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        + "}"
        + f" {value} 1767225600000"
    )


# What `/federate?match[]={__name__=~"mlops_.*"}` answers: every series untyped; version 1
# served by two pods, version 2 by one.
FEDERATED = (
    "\n".join(
        [
            "# TYPE mlops_requests_total untyped",
            _federated("mlops_requests_total", 600, "10.1.0.4", model_version="1", protocol="v1"),
            _federated("mlops_requests_total", 400, "10.1.0.5", model_version="1", protocol="v1"),
            _federated("mlops_requests_total", 120, "10.1.0.6", model_version="2", protocol="v2"),
            "# TYPE mlops_request_errors_total untyped",
            _federated("mlops_request_errors_total", 3, "10.1.0.4", model_version="1"),
            _federated("mlops_request_errors_total", 6, "10.1.0.6", model_version="2"),
            "# TYPE mlops_request_latency_seconds_bucket untyped",
            _federated("mlops_request_latency_seconds_bucket", 550, "10.1.0.4", le="0.01", model_version="1"),
            _federated("mlops_request_latency_seconds_bucket", 600, "10.1.0.4", le="+Inf", model_version="1"),
            _federated("mlops_request_latency_seconds_bucket", 350, "10.1.0.5", le="0.01", model_version="1"),
            _federated("mlops_request_latency_seconds_bucket", 400, "10.1.0.5", le="+Inf", model_version="1"),
        ]
    )
    + "\n"
)


@pytest.fixture
def prometheus() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server answering the federate endpoint with `FEDERATED`; records the paths asked."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            asked.append(self.path)
            status, body = (200, FEDERATED.encode()) if self.path.startswith("/federate") else (503, b"down")
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", asked
    server.shutdown()
    server.server_close()


def test_metrics_text_reads_the_federate_endpoint(fake_api: FakeKubeApiServer, prometheus) -> None:
    from mlops_platform.lib.canary_analysis import parse_metrics

    url, asked = prometheus
    query = "/federate?match[]=%7B__name__%3D~%22mlops_.%2A%22%7D"
    text = _backend(fake_api, metrics_url=url + query).metrics_text()

    assert text == FEDERATED
    assert asked == [query]
    windows = parse_metrics(text, "adult")  # summed over pods, by version
    assert (windows["1"].requests, windows["1"].errors) == (1000, 3)
    assert windows["1"].latency_buckets == {0.01: 900, float("inf"): 1000}
    assert (windows["2"].requests, windows["2"].errors) == (120, 6)

    with pytest.raises(ServingUnavailable, match="503"):
        _backend(fake_api, metrics_url=url + "/api/v1/query").metrics_text()
