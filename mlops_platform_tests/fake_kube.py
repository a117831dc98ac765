"""A fake Kubernetes API server with a simulated KServe controller, for the KServe backend's tests.

A fake because no API server, KServe or Knative can run on the build machines. It is a real
HTTP server (stdlib, in a thread, on 127.0.0.1 and a free port), so the kubernetes client
speaks to it exactly as to a cluster: same paths, verbs, headers and JSON bodies. It serves

- `serving.kserve.io/v1beta1` inferenceservices in any namespace: list/create (`POST`), get,
  replace (`PUT`) and patch (`application/merge-patch+json` and `application/json-patch+json`),
  honouring `metadata.resourceVersion` (409 Conflict), with errors as Kubernetes `Status`
  objects;
- `serving.knative.dev/v1` revisions (get), carrying the labels of their template.

After each write the simulated controller does what KServe's Serverless reconciler and
Knative do (`pkg/controller/v1beta1/inferenceservice/reconcilers/knative/ksvc_reconciler.go`
and `InferenceServiceStatus.PropagateStatus` in kserve/kserve): a change of the revision
template (the predictor without `canaryTrafficPercent`, plus the InferenceService's labels
and annotations) creates revision `<name>-predictor-0000N`, which becomes ready after
`ready_after_reads` further reads; the route sends `canaryTrafficPercent` to the latest ready
revision and the rest to `latestRolledoutRevision` (tag `prev`), or everything to the latest
without it; `latestRolledoutRevision` / `previousRolledoutRevision` move as KServe moves them,
including its rollback when a promoted revision is set back below 100 %. Every request is
recorded (method, path, query, content type, body) for the tests to assert on.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mlops_platform.lib.inference_service import merge_patch

ISVC_PATH = re.compile(
    r"^/apis/serving\.kserve\.io/v1beta1/namespaces/(?P<ns>[^/]+)/inferenceservices(?:/(?P<name>[^/]+))?$"
)
REVISION_PATH = re.compile(
    r"^/apis/serving\.knative\.dev/v1/namespaces/(?P<ns>[^/]+)/revisions/(?P<name>[^/]+)$"
)
# Annotations KServe does not copy onto the revision (its default serviceAnnotationDisallowedList).
NOT_PROPAGATED = {
    "autoscaling.knative.dev/min-scale",
    "autoscaling.knative.dev/max-scale",
    "internal.serving.kserve.io/storage-initializer-sourceuri",
    "kubectl.kubernetes.io/last-applied-configuration",
}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    body: Any


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def json_patch(target: Any, operations: list[dict[str, Any]]) -> Any:
    """RFC 6902 JSON patch: add, remove, replace and test."""
    document = copy.deepcopy(target)
    for operation in operations:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]]
        node = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        op = operation["op"]
        if op == "test":
            current = node[int(last)] if isinstance(node, list) else node.get(last)
            if current != operation["value"]:
                raise ApiError(422, "Invalid", f"test failed at {operation['path']}")
        elif op == "remove":
            del node[int(last) if isinstance(node, list) else last]
        elif op in ("add", "replace"):
            if isinstance(node, list):
                index = len(node) if last == "-" else int(last)
                if op == "add":
                    node.insert(index, operation["value"])
                else:
                    node[index] = operation["value"]
            else:
                node[last] = operation["value"]
        else:
            raise ApiError(415, "UnsupportedMediaType", f"json-patch op {op!r} is not supported here")
    return document


@dataclass
class _Predictor:
    """What the simulated controller keeps for one InferenceService's predictor."""

    revisions: list[tuple[str, str]]  # (revision name, template key), oldest first
    latest_ready: str = ""
    reads_until_ready: int = 0


class FakeKubeApiServer:
    """The fake API server; use as a context manager, then point the client at `url`."""

    def __init__(self, token: str | None = None, ready_after_reads: int = 1) -> None:
        self.token = token
        self.ready_after_reads = ready_after_reads
        self.requests: list[RecordedRequest] = []
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.revisions: dict[tuple[str, str], dict[str, Any]] = {}
        self.conflicts_to_inject = 0  # answer the next N writes with 409 Conflict
        self._predictors: dict[tuple[str, str], _Predictor] = {}
        self._resource_version = itertools.count(1000)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeKubeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def writes(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method in ("POST", "PUT", "PATCH")]

    # --- request handling -------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                content_type = self.headers.get("Content-Type")
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = raw.decode(errors="replace")
                with fake._lock:
                    fake.requests.append(
                        RecordedRequest(self.command, split.path, parse_qs(split.query), content_type, body)
                    )
                    try:
                        if (
                            fake.token is not None
                            and self.headers.get("Authorization") != f"Bearer {fake.token}"
                        ):
                            raise ApiError(401, "Unauthorized", "Unauthorized")
                        code, answer = fake._route(self.command, split.path, content_type, body)
                    except ApiError as exc:
                        code, answer = exc.code, exc.status()
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = _handle

        return Handler

    def _route(self, method: str, path: str, content_type: str | None, body: Any) -> tuple[int, Any]:
        if match := REVISION_PATH.match(path):
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on revisions here")
            key = (match["ns"], match["name"])
            if key not in self.revisions:
                raise ApiError(404, "NotFound", f'revisions.serving.knative.dev "{match["name"]}" not found')
            return 200, self.revisions[key]
        match = ISVC_PATH.match(path)
        if not match:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        namespace, name = match["ns"], match["name"]
        if name is None:
            if method == "GET":
                items = [o for (ns, _), o in sorted(self.objects.items()) if ns == namespace]
                return 200, {
                    "apiVersion": "serving.kserve.io/v1beta1",
                    "kind": "InferenceServiceList",
                    "items": items,
                }
            if method == "POST":
                return 201, self._create(namespace, body)
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on the collection here")
        key = (namespace, name)
        if method == "GET":
            self._existing(key)
            self._advance(key)
            return 200, self.objects[key]
        if method == "PUT":
            return 200, self._write(key, body)
        if method == "PATCH":
            current = self._existing(key)
            if content_type == "application/merge-patch+json":
                patched = merge_patch(copy.deepcopy(current), body)  # the library's RFC 7386 patch
            elif content_type == "application/json-patch+json":
                patched = json_patch(current, body)
            else:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format {content_type}",
                )
            return 200, self._write(key, patched)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")

    def _existing(self, key: tuple[str, str]) -> dict[str, Any]:
        if key not in self.objects:
            raise ApiError(404, "NotFound", f'inferenceservices.serving.kserve.io "{key[1]}" not found')
        return self.objects[key]

    def _check_write(self, obj: Any) -> None:
        if self.conflicts_to_inject:
            self.conflicts_to_inject -= 1
            raise ApiError(
                409,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version",
            )
        if not isinstance(obj, dict) or obj.get("apiVersion") != "serving.kserve.io/v1beta1":
            raise ApiError(
                400, "BadRequest", "the API version in the data does not match serving.kserve.io/v1beta1"
            )
        if obj.get("kind") != "InferenceService":
            raise ApiError(400, "BadRequest", f"kind {obj.get('kind')!r} does not match InferenceService")

    def _create(self, namespace: str, body: Any) -> dict[str, Any]:
        self._check_write(body)
        name = (body.get("metadata") or {}).get("name")
        if (namespace, name) in self.objects:
            raise ApiError(
                409, "AlreadyExists", f'inferenceservices.serving.kserve.io "{name}" already exists'
            )
        obj = copy.deepcopy(body)
        obj.pop("status", None)  # the status subresource: writes to the main resource ignore it
        obj["metadata"].update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            generation=1,
            resourceVersion=str(next(self._resource_version)),
            creationTimestamp="2026-01-01T00:00:00Z",
        )
        self.objects[(namespace, name)] = obj
        self._predictors[(namespace, name)] = _Predictor(revisions=[])
        self._reconcile((namespace, name))
        return obj

    def _write(self, key: tuple[str, str], body: Any) -> dict[str, Any]:
        current = self._existing(key)
        self._check_write(body)
        sent_version = (body.get("metadata") or {}).get("resourceVersion")
        if sent_version and sent_version != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on inferenceservices.serving.kserve.io "{key[1]}": '
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        obj = copy.deepcopy(body)
        obj["status"] = current.get("status", {})
        metadata = obj["metadata"]
        for field in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            metadata[field] = current["metadata"][field]
        if obj.get("spec") != current.get("spec"):
            metadata["generation"] += 1
        metadata["resourceVersion"] = str(next(self._resource_version))
        self.objects[key] = obj
        self._reconcile(key)
        return obj

    # --- the simulated KServe controller + Knative -----------------------------------

    def _template(self, obj: dict[str, Any]) -> dict[str, Any]:
        metadata = obj["metadata"]
        predictor = {k: v for k, v in obj["spec"]["predictor"].items() if k != "canaryTrafficPercent"}
        annotations = {
            k: v for k, v in (metadata.get("annotations") or {}).items() if k not in NOT_PROPAGATED
        }
        return {"labels": metadata.get("labels") or {}, "annotations": annotations, "predictor": predictor}

    def _reconcile(self, key: tuple[str, str]) -> None:
        obj, state = self.objects[key], self._predictors[key]
        template = self._template(obj)
        template_key = json.dumps(template, sort_keys=True)
        if not state.revisions or state.revisions[-1][1] != template_key:
            revision = f"{key[1]}-predictor-{len(state.revisions) + 1:05d}"
            state.revisions.append((revision, template_key))
            self.revisions[(key[0], revision)] = {
                "apiVersion": "serving.knative.dev/v1",
                "kind": "Revision",
                "metadata": {
                    "name": revision,
                    "namespace": key[0],
                    "labels": {
                        **template["labels"],
                        **(template["predictor"].get("labels") or {}),
                        "serving.kserve.io/inferenceservice": key[1],
                        "serving.knative.dev/configuration": f"{key[1]}-predictor",
                    },
                    "annotations": {
                        **template["annotations"],
                        **(template["predictor"].get("annotations") or {}),
                    },
                },
                "spec": {"containers": template["predictor"].get("containers", [])},
            }
            state.reads_until_ready = self.ready_after_reads
            if state.reads_until_ready == 0:
                state.latest_ready = revision
        self._propagate(key)

    def _advance(self, key: tuple[str, str]) -> None:
        """A read lets time pass: a pending revision gets one read closer to ready."""
        state = self._predictors[key]
        latest_created = state.revisions[-1][0]
        if state.latest_ready != latest_created:
            state.reads_until_ready -= 1
            if state.reads_until_ready <= 0:
                state.latest_ready = latest_created
            self._propagate(key)

    def _propagate(self, key: tuple[str, str]) -> None:
        """KServe's route from the spec and its status; repeated as KServe re-reconciles on status changes."""
        obj, state = self.objects[key], self._predictors[key]
        status = obj.setdefault("status", {})
        status_before = json.dumps(status, sort_keys=True)
        component = status.setdefault("components", {}).setdefault("predictor", {})
        latest_created = state.revisions[-1][0]
        for _ in range(3):
            before = json.dumps(component, sort_keys=True)
            percent = obj["spec"]["predictor"].get("canaryTrafficPercent")
            rolled_out = component.get("latestRolledoutRevision", "")
            if not state.latest_ready:
                traffic = []
            elif percent is not None and rolled_out:
                traffic = [{"latestRevision": True, "percent": percent, "revisionName": state.latest_ready}]
                if percent < 100:
                    traffic.append(
                        {
                            "latestRevision": False,
                            "percent": 100 - percent,
                            "revisionName": rolled_out,
                            "tag": "prev",
                        }
                    )
            else:
                traffic = [{"latestRevision": True, "percent": 100, "revisionName": state.latest_ready}]
            per_revision: dict[str, int] = {}
            for target in traffic:
                per_revision[target["revisionName"]] = (
                    per_revision.get(target["revisionName"], 0) + target["percent"]
                )
            for target in traffic:
                if target["revisionName"] != state.latest_ready or not target["latestRevision"]:
                    continue
                if component.get("latestRolledoutRevision", "") != state.latest_ready:
                    if target["percent"] == 100:
                        component["previousRolledoutRevision"] = component.get("latestRolledoutRevision", "")
                        component["latestRolledoutRevision"] = state.latest_ready
                elif (
                    state.latest_ready == latest_created
                    and target["percent"] < 100
                    and per_revision[target["revisionName"]] == 100
                    and component.get("previousRolledoutRevision")
                ):
                    component["latestRolledoutRevision"] = component["previousRolledoutRevision"]
            component["latestCreatedRevision"] = latest_created
            if state.latest_ready:
                component["latestReadyRevision"] = state.latest_ready
            component["traffic"] = traffic
            if json.dumps(component, sort_keys=True) == before:
                break
        ready = "True" if state.latest_ready == latest_created else "Unknown"
        status["conditions"] = [
            {"type": "IngressReady", "status": "True"},
            {"type": "PredictorReady", "status": ready},
            {"type": "Ready", "status": ready},
        ]
        status["url"] = f"http://{key[1]}.{key[0]}.example.com"
        status["observedGeneration"] = obj["metadata"]["generation"]
        if json.dumps(status, sort_keys=True) != status_before:  # a status write bumps resourceVersion
            obj["metadata"]["resourceVersion"] = str(next(self._resource_version))
