"""`KServeInferenceService`: the canary rollout on a KServe InferenceService (Serverless mode).

Each version is a Knative revision of the InferenceService's predictor; `canaryTrafficPercent`
splits traffic between the latest revision and the last one rolled out at 100 %, and
`status.components.predictor` reports the split the route really serves. Revisions are
mapped to registry versions through the `mlops.platform/model-version` label that KServe
copies from the predictor onto each Knative revision (read with `get` on
`revisions.serving.knative.dev`; see deploy/kserve/README.md for the RBAC).

The rolled-out version is not kept in an annotation of the InferenceService: KServe copies
the InferenceService's annotations onto the revision template, so changing one at promotion
would start a new revision. `status.components.predictor.latestRolledoutRevision`, which
KServe maintains, and that revision's label give it instead.

What was run: this class against `mlops_platform_tests/fake_kube.py`, a fake API server over
real HTTP with a simulated KServe controller (mlops_platform_tests/test_kserve.py). Not run
here: a real cluster with KServe and Knative (none can run on the build machines).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from pydantic import PrivateAttr

from mlops_platform.resources.serving import ServingBackend, ServingUnavailable, TrafficStatus

KNATIVE_GROUP, KNATIVE_VERSION = "serving.knative.dev", "v1"
FIELD_MANAGER = "mlops-platform"
WRITE_ATTEMPTS = 3  # a 409 Conflict (someone wrote in between) is retried on a fresh read


class KServeInferenceService(ServingBackend):
    """One InferenceService whose predictor runs `mlops serve --version <v>`, one revision per version."""

    namespace: str = "default"
    name: str
    image: str
    model_name: str  # the registered model: must be the dataset spec's registered_model_name
    metrics_url: str  # Prometheus federate URL, e.g. http://prometheus:9090/federate?match[]=...
    tracking_uri: str | None = None
    tracking_uri_secret: str | None = None  # Secret with key MLOPS_MLFLOW_TRACKING_URI, instead
    dataset_spec: str | None = None  # MLOPS_DATASET_SPEC in the pods; default the shipped spec
    cpu_request: str = "500m"
    memory_request: str = "1Gi"
    cpu_limit: str | None = None
    memory_limit: str | None = "2Gi"
    min_replicas: int = 1
    max_replicas: int = 3
    workers: int = 2
    service_account: str | None = None
    kube_host: str | None = None  # API server URL; unset: in-cluster config, else kubeconfig
    kube_token: str | None = None  # bearer token for kube_host
    kube_ca_cert: str | None = None  # CA bundle file for kube_host
    request_timeout_seconds: float = 30.0
    confirm_timeout_seconds: float = 600.0  # a new revision pulls the image and fetches the model

    _revision_versions: dict[str, str] = PrivateAttr(default_factory=dict)

    def describe(self) -> str:
        return f"InferenceService {self.namespace}/{self.name}"

    # --- Kubernetes API -------------------------------------------------------------------

    def _custom_objects(self) -> Any:
        from kubernetes import client, config

        configuration = client.Configuration()
        if self.kube_host:
            configuration.host = self.kube_host
            if self.kube_token:
                configuration.api_key = {"BearerToken": self.kube_token}
                configuration.api_key_prefix = {"BearerToken": "Bearer"}
            if self.kube_ca_cert:
                configuration.ssl_ca_cert = self.kube_ca_cert
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                try:
                    config.load_kube_config(client_configuration=configuration)
                except (config.ConfigException, OSError) as exc:
                    raise ServingUnavailable(
                        f"{self.describe()}: no Kubernetes configuration (not in a pod, no kubeconfig: "
                        f"{exc}); set kube_host and kube_token"
                    ) from None
        return client.CustomObjectsApi(client.ApiClient(configuration))

    def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        """One API call; None for 404, ServingUnavailable for anything else that fails."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return method(*args, _request_timeout=self.request_timeout_seconds, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status == 409:
                raise _Conflict(str(exc.body)) from None
            raise ServingUnavailable(
                f"{self.describe()}: {what} answered {exc.status} {exc.reason}: {exc.body}"
            ) from None
        except HTTPError as exc:
            raise ServingUnavailable(
                f"{self.describe()}: {what} failed, API server unreachable ({exc})"
            ) from None

    def _read(self, api: Any) -> dict[str, Any] | None:
        from mlops_platform.lib.inference_service import GROUP, PLURAL, VERSION

        return self._call(
            "get", api.get_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL, self.name
        )

    def _revision_version(self, api: Any, revision: str | None) -> str | None:
        """The registry version a Knative revision serves (revisions are immutable: cached)."""
        from mlops_platform.lib.inference_service import VERSION_LABEL

        if not revision:
            return None
        if revision not in self._revision_versions:
            found = self._call(
                f"get revision {revision}",
                api.get_namespaced_custom_object,
                KNATIVE_GROUP,
                KNATIVE_VERSION,
                self.namespace,
                "revisions",
                revision,
            )
            version = ((found or {}).get("metadata", {}).get("labels") or {}).get(VERSION_LABEL)
            if version is None:
                raise ServingUnavailable(
                    f"{self.describe()}: revision {revision} has no {VERSION_LABEL} label "
                    f"({'missing' if found is None else 'not deployed by this platform'})"
                )
            self._revision_versions[revision] = version
        return self._revision_versions[revision]

    # --- ServingBackend -------------------------------------------------------------------

    def _desired(self, version: str, canary_percent: int | None) -> dict[str, Any]:
        from mlops_platform.lib.inference_service import build_inference_service

        requests = {"cpu": self.cpu_request, "memory": self.memory_request}
        limits = {k: v for k, v in (("cpu", self.cpu_limit), ("memory", self.memory_limit)) if v}
        return build_inference_service(
            name=self.name,
            namespace=self.namespace,
            image=self.image,
            model_name=self.model_name,
            model_version=version,
            tracking_uri=self.tracking_uri,
            tracking_uri_secret=self.tracking_uri_secret,
            canary_percent=canary_percent,
            resources={"requests": requests, **({"limits": limits} if limits else {})},
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            service_account=self.service_account,
            dataset_spec=self.dataset_spec,
            workers=self.workers,
        )

    def status(self) -> TrafficStatus:
        api = self._custom_objects()
        return self._status(api, self._read(api))

    def _status(self, api: Any, obj: dict[str, Any] | None) -> TrafficStatus:
        from mlops_platform.lib.inference_service import VERSION_LABEL

        if obj is None:
            return TrafficStatus(None, None, 100, False)
        predictor = obj["spec"]["predictor"]
        status = obj.get("status") or {}
        component = (status.get("components") or {}).get("predictor") or {}
        traffic = component.get("traffic") or []
        latest = next((t for t in traffic if t.get("latestRevision")), None)
        if latest is None:  # no revision ready yet
            return TrafficStatus(None, None, 100, False)
        latest_revision = latest.get("revisionName")
        rolled_out_revision = component.get("latestRolledoutRevision") or latest_revision
        latest_version = self._revision_version(api, latest_revision)
        rolled_out_version = self._revision_version(api, rolled_out_revision)
        percent = int(latest.get("percent", 0)) if latest_revision != rolled_out_revision else 100

        wanted = predictor.get("canaryTrafficPercent")
        wanted = 100 if wanted is None else int(wanted)
        others = [t for t in traffic if t is not latest and t.get("percent")]
        split_served = int(latest.get("percent", 0)) == wanted and (
            others == []
            if wanted == 100
            else [(t.get("revisionName"), t.get("percent")) for t in others]
            == [(component.get("latestRolledoutRevision"), 100 - wanted)]
        )
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        confirmed = (
            ready
            and status.get("observedGeneration") == obj["metadata"].get("generation")
            and component.get("latestCreatedRevision")
            == component.get("latestReadyRevision")
            == latest_revision
            and latest_version == (predictor.get("labels") or {}).get(VERSION_LABEL)
            and split_served
        )
        return TrafficStatus(rolled_out_version, latest_version, percent, bool(confirmed))

    def renew_lease(self, owner: dict) -> None:
        """Nothing to renew: KServe's controller keeps the split itself, and the deploy op's failure
        handling rolls a canary back (the local gateway's lease has no KServe counterpart)."""

    def request_traffic(self, version: str, canary_percent: int, owner: dict | None = None) -> None:
        """Create the InferenceService (first version: 100 %) or patch version and canaryTrafficPercent.

        As in the local gateway: 100, or the version already rolled out, promotes (the
        field is removed: the latest revision takes everything); 0 keeps every request on
        the rolled-out version. The resulting object is checked against the CRD schema
        before it is sent; the patch carries `resourceVersion`, so a concurrent write is a
        409, retried on a fresh read.
        """
        from mlops_platform.lib.inference_service import (
            GROUP,
            PLURAL,
            VERSION,
            merge_patch,
            validate_inference_service,
        )

        version = str(version)
        if not 0 <= int(canary_percent) <= 100:
            raise ValueError(f"canary_percent {canary_percent} is not between 0 and 100")
        api = self._custom_objects()
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            current = self._read(api)
            try:
                if current is None:
                    body = self._desired(version, None)
                    self._call(
                        "create",
                        api.create_namespaced_custom_object,
                        GROUP,
                        VERSION,
                        self.namespace,
                        PLURAL,
                        body,
                        field_manager=FIELD_MANAGER,
                    )
                    return
                rolled_out = self._status(api, current).rolled_out_version
                promote = rolled_out is None or version == rolled_out or int(canary_percent) == 100
                desired = self._desired(version, None if promote else int(canary_percent))
                patch = {
                    "metadata": {
                        "resourceVersion": current["metadata"]["resourceVersion"],
                        "labels": desired["metadata"]["labels"],
                        "annotations": desired["metadata"]["annotations"],
                    },
                    "spec": {
                        "predictor": {
                            **desired["spec"]["predictor"],
                            "canaryTrafficPercent": None if promote else int(canary_percent),
                        }
                    },
                }
                result = merge_patch({k: v for k, v in current.items() if k != "status"}, patch)
                validate_inference_service(result)
                self._call(
                    "patch",
                    api.patch_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    self.name,
                    patch,
                    field_manager=FIELD_MANAGER,
                )
                return
            except _Conflict as exc:
                if attempt == WRITE_ATTEMPTS:
                    raise ServingUnavailable(
                        f"{self.describe()}: still conflicting after {attempt} writes: {exc}"
                    ) from None

    def metrics_text(self) -> str:
        """The `mlops_*` series of every pod, from Prometheus' federate endpoint (`metrics_url`)."""
        request = urllib.request.Request(self.metrics_url, headers={"Accept": "text/plain"})
        try:
            with urllib.request.urlopen(request, timeout=self.request_timeout_seconds) as response:
                return response.read().decode()
        except urllib.error.HTTPError as exc:
            raise ServingUnavailable(f"metrics at {self.metrics_url} answered {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServingUnavailable(f"metrics at {self.metrics_url} unreachable ({exc})") from None


class _Conflict(Exception):
    """409 from the API server: the object changed since it was read."""
