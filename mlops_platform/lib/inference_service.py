"""The KServe InferenceService that serves a registered model version: build it, check it.

`build_inference_service` writes a `serving.kserve.io/v1beta1` InferenceService with the
kserve SDK's models: one custom predictor container running `mlops serve --version <v>`
(KServe V1/V2 protocols and Prometheus `/metrics` on port 8080), in Serverless (Knative)
mode, the only mode where `canaryTrafficPercent` splits traffic between revisions. The
version is on every revision: in the container's command and `MLOPS_MODEL_URI`, and as the
`mlops.platform/model-version` label and `mlops.platform/model-uri` annotation of the
predictor, which KServe copies onto the Knative revision and its pods.

`validate_inference_service` checks an object against the v1beta1 `openAPIV3Schema` of
KServe's InferenceService CRD, a subset vendored in `kserve_inferenceservice_v1beta1.schema.json`
(which fields, from which file and commit: `deploy/kserve/README.md`, "The vendored CRD
schema"), then against the few rules that the API server, KServe's webhook or Knative
enforce beyond the CRD (`_admission_problems`).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceService"

CONTAINER_NAME = "kserve-container"  # KServe's name for a custom predictor's main container
PORT = 8080
VERSION_LABEL = "mlops.platform/model-version"
MODEL_NAME_LABEL = "mlops.platform/model-name"
MODEL_URI_ANNOTATION = "mlops.platform/model-uri"
TRACKING_URI_SECRET_KEY = "MLOPS_MLFLOW_TRACKING_URI"

SCHEMA_PATH = Path(__file__).with_name("kserve_inferenceservice_v1beta1.schema.json")

# The arguments of the checked-in example, deploy/kserve/inferenceservice.yaml.
EXAMPLE_ARGUMENTS: dict[str, Any] = {
    "name": "adult-income",
    "namespace": "mlops",
    "image": "ghcr.io/your-org/mlops-platform:0.1.0",
    "model_name": "adult_income_classifier",
    "model_version": "1",
    "tracking_uri_secret": "mlflow-db",
    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    "min_replicas": 1,
    "max_replicas": 3,
}

# KServe's InferenceService name rule (pkg/apis/serving/v1beta1, InvalidISVCNameFormatError).
_ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Kubernetes label values: at most 63 characters, alphanumeric at both ends.
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class InvalidInferenceService(ValueError):
    """The object would be refused; `problems` lists (path, message) pairs."""

    def __init__(self, name: str, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        listed = "; ".join(f"{path}: {message}" for path, message in problems)
        super().__init__(f"InferenceService {name!r} is invalid: {listed}")


def model_uri(model_name: str, model_version: str) -> str:
    return f"models:/{model_name}/{model_version}"


def serve_command(model_version: str, workers: int = 2) -> list[str]:
    """The predictor container's command: our model server, pinned to one registry version."""
    server = ["mlops", "serve", "--host", "0.0.0.0", "--port", str(PORT), "--workers", str(workers)]
    return [*server, "--version", str(model_version)]


def build_inference_service(
    *,
    name: str,
    namespace: str,
    image: str,
    model_name: str,
    model_version: str,
    tracking_uri: str | None = None,
    tracking_uri_secret: str | None = None,
    canary_percent: int | None = None,
    resources: dict[str, dict[str, str]] | None = None,
    min_replicas: int = 1,
    max_replicas: int = 3,
    service_account: str | None = None,
    dataset_spec: str | None = None,
    workers: int = 2,
    mlops_home: str = "/mnt/data",
) -> dict[str, Any]:
    """The InferenceService as a JSON-ready dict, checked by `validate_inference_service`.

    The MLflow tracking URI comes either as a value (`tracking_uri`) or from the key
    `MLOPS_MLFLOW_TRACKING_URI` of the Secret `tracking_uri_secret` (a database URL holds a
    password). `canary_percent` None leaves `canaryTrafficPercent` out: the latest revision
    takes all traffic once ready.
    """
    from kserve import V1beta1InferenceService, V1beta1InferenceServiceSpec, V1beta1PredictorSpec
    from kubernetes.client import (
        ApiClient,
        V1Container,
        V1ContainerPort,
        V1EnvVar,
        V1EnvVarSource,
        V1HTTPGetAction,
        V1ObjectMeta,
        V1Probe,
        V1ResourceRequirements,
        V1SecretKeySelector,
    )

    if (tracking_uri is None) == (tracking_uri_secret is None):
        raise ValueError("give exactly one of tracking_uri and tracking_uri_secret")
    version = str(model_version)
    uri = model_uri(model_name, version)
    if tracking_uri is not None:
        tracking = V1EnvVar(name="MLOPS_MLFLOW_TRACKING_URI", value=tracking_uri)
    else:
        tracking = V1EnvVar(
            name="MLOPS_MLFLOW_TRACKING_URI",
            value_from=V1EnvVarSource(
                secret_key_ref=V1SecretKeySelector(name=tracking_uri_secret, key=TRACKING_URI_SECRET_KEY)
            ),
        )
    env = [
        V1EnvVar(name="MLOPS_HOME", value=mlops_home),
        tracking,
        V1EnvVar(name="MLOPS_MODEL_URI", value=uri),
    ]
    if dataset_spec:
        env.append(V1EnvVar(name="MLOPS_DATASET_SPEC", value=dataset_spec))
    container = V1Container(
        name=CONTAINER_NAME,
        image=image,
        command=serve_command(version, workers),
        env=env,
        ports=[V1ContainerPort(container_port=PORT, name="http1", protocol="TCP")],
        resources=V1ResourceRequirements(**(resources or {})),
        # Knative accepts a probe port only when it equals the container port.
        readiness_probe=V1Probe(http_get=V1HTTPGetAction(path="/v2/health/ready", port=PORT)),
        liveness_probe=V1Probe(http_get=V1HTTPGetAction(path="/v2/health/live", port=PORT)),
    )
    predictor = V1beta1PredictorSpec(
        containers=[container],
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        canary_traffic_percent=canary_percent,
        service_account_name=service_account,
        # Copied by KServe onto the Knative revision template: each revision names its version.
        labels={MODEL_NAME_LABEL: model_name, VERSION_LABEL: version},
        annotations={
            MODEL_URI_ANNOTATION: uri,
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(PORT),
            "prometheus.io/path": "/metrics",
        },
    )
    isvc = V1beta1InferenceService(
        api_version=API_VERSION,
        kind=KIND,
        metadata=V1ObjectMeta(
            name=name,
            namespace=namespace,
            labels={
                "app.kubernetes.io/name": name,
                "app.kubernetes.io/component": "model-server",
                "app.kubernetes.io/managed-by": "mlops-platform",
                MODEL_NAME_LABEL: model_name,
            },
            annotations={"serving.kserve.io/deploymentMode": "Serverless"},
        ),
        spec=V1beta1InferenceServiceSpec(predictor=predictor),
    )
    obj = ApiClient().sanitize_for_serialization(isvc)
    validate_inference_service(obj)
    return obj


@functools.cache
def _validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    checker = jsonschema.FormatChecker()
    for fmt, bits in (("int32", 32), ("int64", 64)):
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        checker.checks(fmt)(
            lambda value, low=low, high=high: not isinstance(value, int) or low <= value <= high
        )
    return jsonschema.Draft4Validator(schema, format_checker=checker)


def _dotted(path: list[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


def _admission_problems(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """What the CRD schema lets through but the API server, KServe or Knative refuse."""
    problems: list[tuple[str, str]] = []
    if obj.get("apiVersion") != API_VERSION:
        problems.append(("apiVersion", f"{obj.get('apiVersion')!r} is not {API_VERSION!r}"))
    if obj.get("kind") != KIND:
        problems.append(("kind", f"{obj.get('kind')!r} is not {KIND!r}"))
    metadata = obj.get("metadata") or {}
    if not _ISVC_NAME.match(str(metadata.get("name", ""))):
        problems.append(("metadata.name", f"{metadata.get('name')!r} does not match {_ISVC_NAME.pattern}"))
    predictor = (obj.get("spec") or {}).get("predictor") or {}
    for where, labels in (
        ("metadata.labels", metadata.get("labels")),
        ("spec.predictor.labels", predictor.get("labels")),
    ):
        for key, value in (labels or {}).items():
            if len(value) > 63 or not _LABEL_VALUE.match(value):
                problems.append((f"{where}.{key}", f"{value!r} is not a valid label value"))
    percent = predictor.get("canaryTrafficPercent")
    if isinstance(percent, int) and not 0 <= percent <= 100:  # Knative's route: 0 <= percent <= 100
        problems.append(("spec.predictor.canaryTrafficPercent", f"{percent} is not between 0 and 100"))
    low, high = predictor.get("minReplicas"), predictor.get("maxReplicas")
    if isinstance(low, int) and low < 0:  # KServe's webhook (validateReplicas)
        problems.append(("spec.predictor.minReplicas", f"{low} is less than 0"))
    if isinstance(high, int) and high < 0:
        problems.append(("spec.predictor.maxReplicas", f"{high} is less than 0"))
    if isinstance(low, int) and isinstance(high, int) and high != 0 and low > high:
        problems.append(("spec.predictor.minReplicas", f"{low} is greater than maxReplicas {high}"))
    for index, container in enumerate(predictor.get("containers") or []):
        if isinstance(container, dict) and not container.get("image"):  # Knative: image is required
            problems.append((f"spec.predictor.containers[{index}].image", "is required"))
    return problems


def validate_inference_service(obj: dict[str, Any]) -> None:
    """Raise `InvalidInferenceService` naming each offending path; return None when valid."""
    problems = [
        (_dotted(list(error.absolute_path)), error.message)
        for error in sorted(_validator().iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
    ]
    if not problems:
        problems = _admission_problems(obj)
    if problems:
        name = (obj.get("metadata") or {}).get("name") if isinstance(obj, dict) else None
        raise InvalidInferenceService(str(name), problems)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: the object the API server makes of a merge-patch body."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def example_manifest() -> str:
    """deploy/kserve/inferenceservice.yaml: the InferenceService for `EXAMPLE_ARGUMENTS`."""
    import yaml

    header = (
        "# Generated from EXAMPLE_ARGUMENTS by\n"
        "#   python -m mlops_platform.lib.inference_service > deploy/kserve/inferenceservice.yaml\n"
        "# The deploy job writes the same object with the version it rolls out.\n"
    )
    return header + yaml.safe_dump(build_inference_service(**EXAMPLE_ARGUMENTS), sort_keys=False)


if __name__ == "__main__":
    print(example_manifest(), end="")
