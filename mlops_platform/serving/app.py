"""The model server and local gateway: KServe's V1 and V2 protocols over FastAPI.

One process (or each uvicorn worker) hosts the rolled-out revision and the canary, splits
requests between them by the traffic state, validates every request against the dataset
spec, exports Prometheus metrics per version and appends every prediction to the
inference log. Handlers parse and answer JSON with orjson and score on the event loop
(a single row costs tens of microseconds; a thread hop would cost more).

Endpoints: `POST /v1/models/{name}:predict`, `GET /v1/models/{name}`,
`POST /v2/models/{name}[/versions/{v}]/infer`, `GET /v2/models/{name}[/ready]`,
`GET /v2/health/live|ready`, `GET /v2`, `GET /metrics`, `GET|PUT /admin/traffic` and
`POST /admin/traffic/lease` (token), `GET /openapi.json` (every route, the inference ones included).

A POST body must be JSON: a Content-Type that is present and not `application/json` (or a
`+json` type) is answered 415 naming the header; a body without Content-Type is read as JSON.
Every 5xx is counted in `mlops_server_errors_total{route,status}`; an unexpected exception in a
handler is logged with its traceback and answered as a 500 JSON error, never a dropped connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import hmac
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.serving.batching import MicroBatcher
from mlops_platform.serving.inference_log import InferenceLogWriter
from mlops_platform.serving.metrics import ServerMetrics
from mlops_platform.serving.revisions import (
    RegistryUnavailable,
    Revision,
    RevisionError,
    configure_mlflow_client,
    fetch_artifact,
    load_revision,
    resolve_version,
)
from mlops_platform.serving.schemas import LeaseRequest, TrafficRequest, openapi_document, parse_body
from mlops_platform.serving.traffic import Split, TrafficState, TrafficStore, admin_token, lease_seconds
from mlops_platform.serving.validation import FeatureBatch, InvalidRequest, RequestValidator
from mlops_platform.settings import Settings

log = logging.getLogger("mlops_platform.serving")

MAX_BODY_BYTES = int(os.environ.get("MLOPS_SERVE_MAX_BODY_BYTES", str(8 * 1024 * 1024)))
MAX_ROWS = int(os.environ.get("MLOPS_SERVE_MAX_ROWS", "10000"))
REFRESH_SECONDS = 0.2


def is_json_type(content_type: bytes) -> bool:
    """Whether a Content-Type names JSON: `application/json` or any `+json` type, parameters aside."""
    if content_type == b"application/json":
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.endswith(b"+json") and b"/" in media)


def unsupported_media(content_type: bytes) -> InvalidRequest:
    shown = content_type.decode("latin-1")[:100]
    return InvalidRequest(
        "content-type",
        f"{shown!r} is not JSON: send the body as JSON with Content-Type: application/json",
        415,
    )


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


class Gateway:
    """What one worker holds: the split, the revisions, metrics and the log writer."""

    def __init__(self, settings: Settings, spec: DatasetSpec) -> None:
        self.settings = settings
        self.spec = spec
        self.model_name = spec.registered_model_name
        self.validator = RequestValidator(spec, max_rows=MAX_ROWS)
        self.store = TrafficStore(settings.serving_dir)
        self.token = admin_token(settings.serving_dir)
        lease_seconds()  # a bad MLOPS_CANARY_LEASE_SECONDS stops the server at start, not a PUT
        self.split: Split | None = None
        self.state: TrafficState | None = None
        self.revisions: dict[str, Revision] = {}
        self.metrics: ServerMetrics | None = None
        self.log: InferenceLogWriter | None = None
        self._seen: tuple[int, int] | None = None
        self._latest: TrafficState | None = None  # the state file as last read
        self._apply_lock = threading.Lock()  # the watcher and the admin API may apply at once
        self._host = socket.gethostname()
        self._feature_store: Any = None
        self._feature_lock = asyncio.Lock()
        self.batcher = MicroBatcher()

    # -- lifecycle

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        import torch

        torch.set_num_threads(1)  # one core per worker; intra-op threads only add contention here
        self.metrics = ServerMetrics()
        self.log = InferenceLogWriter(self.settings.inference_log_dir)
        self.store.roll_back_orphan(at_startup=False)  # a dead owner or an expired lease: before serving
        self._refresh()
        # Everything loaded so far (torch, pandas, the models) lives as long as the worker: keep it
        # out of the cyclic collector's scans, which otherwise stall requests for milliseconds.
        gc.collect()
        gc.freeze()
        task = asyncio.create_task(self._follow_state())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.log.close()
            self.store.forget_worker(os.getpid())
            log.info("inference log flushed: %d records written by worker %d", self.log.written, os.getpid())

    async def _follow_state(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await asyncio.to_thread(self._refresh)
                latest = self._latest
                if (
                    latest is not None
                    and latest.canary_active
                    and latest.orphan_reason(host=self._host, at_startup=False)
                ):
                    await asyncio.to_thread(self.store.roll_back_orphan, at_startup=False)
            except Exception:  # keep serving the current split; the next change of the file retries
                log.exception("could not apply the traffic state")

    def _refresh(self) -> None:
        try:
            stat = self.store.path.stat()
        except FileNotFoundError:
            return
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen == self._seen:
            return
        self._seen = seen
        state = self.store.read()
        self._latest = state
        if state is not None and (self.state is None or state.generation != self.state.generation):
            self._apply(state)

    def _apply(self, state: TrafficState) -> None:
        """Load what `state` needs, then swap the split in one assignment (in-flight requests
        keep the revision they picked). One at a time, never back to an older generation."""
        with self._apply_lock:
            if self.state is not None and state.generation < self.state.generation:
                return
            self._apply_unlocked(state)

    def _apply_unlocked(self, state: TrafficState) -> None:
        if state.model_name != self.model_name:
            raise RevisionError(
                f"traffic state is for {state.model_name!r}, this server serves {self.model_name!r}"
            )
        wanted = [v for v in (state.rolled_out_version, state.canary_version) if v is not None]
        loaded = {v: self.revisions.get(v) or self._load(v) for v in wanted}
        self.revisions = loaded
        self.split = (
            Split(
                stable=loaded[state.rolled_out_version],
                canary=loaded.get(state.canary_version) if state.canary_version else None,
                canary_percent=state.canary_percent,
            )
            if state.rolled_out_version
            else None
        )
        self.state = state
        self.store.report_applied(os.getpid(), state.generation)
        log.info("worker %d applied traffic generation %d: %s", os.getpid(), state.generation, state.shares())

    def _load(self, version: str) -> Revision:
        artifact = fetch_artifact(
            self.settings.tracking_uri, self.model_name, version, self.settings.serving_dir / "models"
        )
        revision = load_revision(self.model_name, version, artifact)
        revision.check_features(self.validator.numeric_names, self.validator.categorical_names)
        assert self.metrics is not None
        revision.instruments = self.metrics.for_version(self.model_name, version)
        return revision

    # -- inference

    @staticmethod
    def parse_json(body: bytes) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest("body", f"not valid JSON: {exc}", status=400) from None

    async def infer(
        self, protocol: str, model: str, version: str | None, body: bytes, request_id: str, started: float
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """One inference request, either protocol: (status, payload, headers); never raises."""
        try:
            self.check_model(model)
            parsed = self.parse_json(body)
            if protocol == "v1":
                instances = self.validator.v1_instances(parsed)
                entity_ids = self.validator.entity_ids(instances)
                batch = (
                    await self.features_for(entity_ids) if entity_ids else self.validator.v1_batch(instances)
                )
            else:
                batch = self.validator.v2_batch(parsed)
                if isinstance(parsed.get("id"), str):
                    request_id = parsed["id"]
            revision, probabilities = await self.score(batch, protocol, request_id, started, version)
        except InvalidRequest as exc:
            assert self.metrics is not None
            self.metrics.invalid.labels(str(exc.status)).inc()
            return exc.status, {"error": str(exc), "field": exc.field, "request_id": request_id}, {}
        except LookupError as exc:
            return 503, {"error": str(exc), "request_id": request_id}, {}
        except RecursionError:  # a RuntimeError too: caught first
            assert self.metrics is not None
            self.metrics.invalid.labels("400").inc()
            return 400, {"error": "body: nested too deeply", "field": "body", "request_id": request_id}, {}
        except RuntimeError as exc:
            return 500, {"error": str(exc), "request_id": request_id}, {}
        predictions = (probabilities >= revision.threshold).astype(np.int64)
        headers = {"x-model-name": self.model_name, "x-model-version": revision.version}
        if protocol == "v1":
            return (
                200,
                {
                    "predictions": [
                        {"probability": float(p), "prediction": int(c)}
                        for p, c in zip(probabilities, predictions, strict=True)
                    ],
                    "model_name": self.model_name,
                    "model_version": revision.version,
                    "request_id": request_id,
                },
                headers,
            )
        rows = len(probabilities)
        return (
            200,
            {
                "model_name": self.model_name,
                "model_version": revision.version,
                "id": request_id,
                "outputs": [
                    {"name": "probability", "shape": [rows], "datatype": "FP32", "data": probabilities},
                    {"name": "prediction", "shape": [rows], "datatype": "INT64", "data": predictions},
                ],
            },
            headers,
        )

    def check_model(self, name: str) -> None:
        if name != self.model_name:
            raise InvalidRequest(
                "model", f"no model named {name!r}; this server serves {self.model_name!r}", 404
            )

    async def features_for(self, entity_ids: list[str]) -> FeatureBatch:
        """Read the entities' features from the Feast online store, then validate them like a request."""
        from mlops_platform.feature_repo.definitions import ENTITY_KEY, feature_references

        try:
            async with self._feature_lock:
                if self._feature_store is None:
                    from mlops_platform.feature_repo.store import open_store

                    self._feature_store = await asyncio.to_thread(
                        open_store,
                        self.spec.name,
                        self.settings.feast_dir,
                        self.settings.feast_online_store,
                        self.settings.redis_url,
                    )
            store = self._feature_store
            found = await asyncio.to_thread(
                lambda: store.get_online_features(
                    features=feature_references(self.spec),
                    entity_rows=[{ENTITY_KEY: e} for e in entity_ids],
                ).to_dict()
            )
        except Exception as exc:
            if type(exc).__name__ in ("FeatureViewNotFoundException", "ProjectNotFoundException"):
                raise InvalidRequest(
                    f"instances[0].{ENTITY_KEY}",
                    "the online store has no features for this model yet (materialize the "
                    "feature_store asset), so no entity is found: send feature values instead",
                    404,
                ) from None
            # the store (Redis, SQLite) does not answer
            raise LookupError(
                f"the online feature store cannot answer entity lookups ({type(exc).__name__}: "
                f"{str(exc)[:200]}): materialize the feature_store asset, or send feature values"
            ) from None
        instances = []
        for i, entity in enumerate(entity_ids):
            row = {name: found[name][i] for name in self.validator.names}
            if all(value is None for value in row.values()):
                raise InvalidRequest(
                    f"instances[{i}].{ENTITY_KEY}", f"{entity!r} is not in the online store", 404
                )
            instances.append(row)
        batch = self.validator.v1_batch(instances)
        batch.entity_ids = entity_ids
        return batch

    async def score(
        self, batch: FeatureBatch, protocol: str, request_id: str, started: float, version: str | None = None
    ) -> tuple[Revision, np.ndarray]:
        """Route, score, count and log; raises RuntimeError (a 5xx) when the model fails."""
        split = self.split
        if split is None:
            raise LookupError(
                f"no version of {self.model_name!r} is rolled out yet: run the deploy_model job"
            )
        if version is None:
            revision, role = split.pick()
        else:
            revision = self.revisions.get(version)  # type: ignore[assignment]
            if revision is None:
                raise InvalidRequest(
                    "version", f"version {version!r} is not loaded; loaded: {sorted(self.revisions)}", 404
                )
            role = "canary" if revision is split.canary else "stable"
        instruments = revision.instruments
        try:
            probabilities = await self.batcher.predict_proba(revision, batch)
        except Exception as exc:
            # counted on completion, the error with its request: a scrape never sees one without the other
            instruments.requests[protocol].inc()
            instruments.errors.inc()
            instruments.latency.observe(time.perf_counter() - started)
            log.error(
                "model %s v%s failed on request %s: %s", self.model_name, revision.version, request_id, exc
            )
            raise RuntimeError(f"model version {revision.version} failed: {exc}") from exc
        instruments.requests[protocol].inc()
        instruments.observe_predictions(probabilities)
        self._log(batch, revision, role, protocol, request_id, probabilities)
        instruments.latency.observe(time.perf_counter() - started)
        return revision, probabilities

    def _log(
        self,
        batch: FeatureBatch,
        revision: Revision,
        role: str,
        protocol: str,
        request_id: str,
        probabilities: np.ndarray,
    ) -> None:
        assert self.log is not None
        timestamp = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        day = timestamp[:10]
        threshold = revision.threshold
        numeric, categorical = self.validator.numeric_names, self.validator.categorical_names
        for row in range(batch.rows):
            probability = float(probabilities[row])
            self.log.append(
                day,
                orjson.dumps(
                    {
                        "request_id": request_id,
                        "timestamp": timestamp,
                        "model_name": self.model_name,
                        "model_version": revision.version,
                        "role": role,
                        "protocol": protocol,
                        "row": row,
                        "entity_id": batch.entity_ids[row] if batch.entity_ids else None,
                        "inputs": batch.inputs(numeric, categorical, row),
                        "probability": probability,
                        "prediction": int(probability >= threshold),
                    }
                ),
            )

    # -- admin

    def authorize(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return _json(
                {"error": "missing bearer token (header Authorization: Bearer <token>)"},
                401,
                {"www-authenticate": "Bearer"},
            )
        if not hmac.compare_digest(header[len("Bearer ") :].encode(), self.token.encode()):
            return _json({"error": "wrong admin token"}, 403)
        return None

    def traffic_report(self) -> dict[str, Any]:
        state = self.store.read()
        workers = self.store.applied_generations()
        generation = state.generation if state else 0
        rollback = state.orphaned_canary_rollback if state else None
        return {
            "spec": state.model_dump() if state else None,
            "status": {
                "traffic": [
                    {"version": v, "percent": p, "latest": v == (state.latest_version if state else None)}
                    for v, p in (state.shares() if state else {}).items()
                ],
                "workers": {str(pid): g for pid, g in workers.items()},
                "applied": bool(workers) and all(g == generation for g in workers.values()),
                "orphaned_canary_rollback": rollback.model_dump() if rollback else None,
            },
        }

    async def set_traffic(self, body: Any) -> TrafficState:
        """Apply a `TrafficRequest`; InvalidRequest for a bad body or an unknown version,
        RegistryUnavailable when the registry does not answer."""
        wanted: TrafficRequest = parse_body(TrafficRequest, body)
        version, alias = wanted.version, wanted.alias
        if (version is None) == (alias is None):
            raise InvalidRequest("version", 'give exactly one of "version" and "alias"')
        try:
            resolved = await asyncio.to_thread(
                resolve_version, self.settings.tracking_uri, self.model_name, version=version, alias=alias
            )
            await asyncio.to_thread(self._load_check, resolved)
        except RevisionError as exc:
            raise InvalidRequest("alias" if alias else "version", str(exc), 404) from None
        with self.store.locked():
            current = self.store.read() or TrafficState(model_name=self.model_name)
            state = current.with_revision(resolved, wanted.canary_percent, wanted.owner)
            self.store.write(state)
        await asyncio.to_thread(self._apply, state)
        return state

    def renew_lease(self, body: Any) -> TrafficState:
        """Extend the running canary's lease for its owner; InvalidRequest (409) when no canary
        runs or another run owns it."""
        owner = parse_body(LeaseRequest, body).owner
        with self.store.locked():
            state = self.store.read()
            if state is None or not state.canary_active:
                shown = state.shares() if state else {}
                raise InvalidRequest(
                    "owner", f"no canary is running (traffic {shown}): nothing to renew", 409
                )
            if state.owner is None or state.owner.run_id != owner.run_id:
                holder = state.owner.run_id if state.owner else "nobody"
                raise InvalidRequest("owner.run_id", f"the canary's lease is held by {holder}", 409)
            renewed = state.with_renewed_lease(owner)
            self.store.write(renewed)
        return renewed

    def _load_check(self, version: str) -> None:
        if version not in self.revisions:
            self._load(version)  # fetches into the shared cache and proves the version loads


_V1_PREDICT = re.compile(r"^/v1/models/([^/]+):predict$")
_V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")


class InferenceRoutes:
    """The two inference routes, served at the ASGI layer; everything else goes to FastAPI.

    Measured on this machine (2 workers, wrk -c32): a FastAPI route that only parses the body
    answers about 12,500 requests/s, the same handler as a bare ASGI callable about 29,900/s.
    FastAPI's routing and request objects cost ~90 µs of CPU per request, more than the model.
    """

    def __init__(self, app: FastAPI, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            found = _V1_PREDICT.match(path)
            if found is not None:
                await self._serve(scope, receive, send, "v1", found.group(1), None)
                return
            found = _V2_INFER.match(path)
            if found is not None:
                await self._serve(scope, receive, send, "v2", found.group(1), found.group(2))
                return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self._fastapi(scope, receive, send)

    async def _fastapi(self, scope: dict, receive: Any, send: Any) -> None:
        """FastAPI's routes, with every 5xx counted and an exception never left unanswered."""
        started = False

        async def observed(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] >= 500:
                    self._count_5xx(scope, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except Exception:
            # the app's exception handler answered already (and counted); here only log it
            log.exception("%s %s failed", scope["method"], scope["path"])
            if not started:
                await _send_json(observed, 500, {"error": "internal server error"}, [])

    def _count_5xx(self, scope: dict, status: int) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        if self.gateway.metrics is not None:
            self.gateway.metrics.server_errors.labels(template, str(status)).inc()

    async def _serve(
        self, scope: dict, receive: Any, send: Any, protocol: str, model: str, version: str | None
    ) -> None:
        started = time.perf_counter()
        request_id = declared = content_type = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                request_id = value.decode("latin-1")
            elif key == b"content-length":
                declared = value
            elif key == b"content-type":
                content_type = value
        request_id = request_id or uuid.uuid4().hex
        try:
            status, payload, headers = await self._answer(
                receive, protocol, model, version, request_id, started, declared, content_type
            )
        except Exception as exc:  # a bug, never bad input: answered, counted and logged all the same
            log.exception("%s request %s failed", protocol, request_id)
            status, payload, headers = (
                500,
                {"error": f"internal server error ({type(exc).__name__})", "request_id": request_id},
                {},
            )
        if status >= 500:
            assert self.gateway.metrics is not None
            route = _ROUTES[protocol] if version is None else _V2_VERSION_ROUTE
            self.gateway.metrics.server_errors.labels(route, str(status)).inc()
        raw_headers = [
            (b"content-type", b"application/json"),
            (b"x-request-id", request_id.encode("latin-1")),
        ]
        raw_headers += [(k.encode(), v.encode()) for k, v in headers.items()]
        await _send_json(send, status, payload, raw_headers)

    async def _answer(
        self,
        receive: Any,
        protocol: str,
        model: str,
        version: str | None,
        request_id: str,
        started: float,
        declared: bytes | None,
        content_type: bytes | None,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        refused = None
        if content_type is not None and not is_json_type(content_type):
            refused = unsupported_media(content_type)
        else:
            body = await self._body(receive, declared)
            if body is None:
                refused = InvalidRequest("body", f"over the limit of {MAX_BODY_BYTES} bytes", 413)
        if refused is not None:
            assert self.gateway.metrics is not None
            self.gateway.metrics.invalid.labels(str(refused.status)).inc()
            return (
                refused.status,
                {"error": str(refused), "field": refused.field, "request_id": request_id},
                {},
            )
        return await self.gateway.infer(protocol, model, version, body, request_id, started)

    @staticmethod
    async def _body(receive: Any, declared: bytes | None) -> bytes | None:
        """The request body, or None when it is (or is declared) over the size limit."""
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            return None
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_ROUTES = {"v1": "/v1/models/{model}:predict", "v2": "/v2/models/{model}/infer"}
_V2_VERSION_ROUTE = "/v2/models/{model}/versions/{version}/infer"


async def _send_json(send: Any, status: int, payload: Any, headers: list[tuple[bytes, bytes]]) -> None:
    headers = headers or [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send(
        {"type": "http.response.body", "body": orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)}
    )


def create_app(settings: Settings | None = None) -> InferenceRoutes:
    """The ASGI app (a factory: `uvicorn --factory mlops_platform.serving.app:create_app`)."""
    settings = settings or Settings.from_env()
    configure_mlflow_client()
    gateway = Gateway(settings, settings.load_spec())
    app = FastAPI(
        title="mlops_platform model server", lifespan=gateway.lifespan, docs_url="/docs", redoc_url=None
    )
    app.state.gateway = gateway
    name = gateway.model_name

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        return _json({"error": f"internal server error ({type(exc).__name__})"}, 500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _json({"error": str(exc.detail)}, exc.status_code, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(p) for p in first.get("loc", ())) or "request"
        return _json({"error": f"{field}: {first.get('msg')}", "field": field}, 422)

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            base = get_openapi(title=app.title, version=app.version, routes=app.routes)
            app.openapi_schema = openapi_document(base, gateway.spec)
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]

    def _model_ready() -> bool:
        return gateway.split is not None

    @app.get("/v1/models")
    async def v1_models() -> Response:
        return _json({"models": [name]})

    @app.get("/v1/models/{model}")
    async def v1_model(model: str) -> Response:
        if model != name:
            return _json({"error": f"no model named {model!r}"}, 404)
        return _json({"name": name, "ready": _model_ready()})

    @app.get("/v2")
    async def v2_server() -> Response:
        from importlib.metadata import version

        return _json({"name": "mlops_platform", "version": version("mlops_platform"), "extensions": []})

    @app.get("/v2/health/live")
    async def live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return _json({"ready": _model_ready()}, 200 if _model_ready() else 503)

    @app.get("/v2/models/{model}/ready")
    async def model_ready(model: str) -> Response:
        if model != name:
            return _json({"error": f"no model named {model!r}"}, 404)
        return _json({"name": name, "ready": _model_ready()}, 200 if _model_ready() else 503)

    @app.get("/v2/models/{model}")
    async def model_metadata(model: str) -> Response:
        if model != name:
            return _json({"error": f"no model named {model!r}"}, 404)
        numeric = set(gateway.validator.numeric_names)
        columns = gateway.spec.columns
        return _json(
            {
                "name": name,
                "versions": sorted(gateway.revisions),
                "platform": "pytorch_torchscript",
                "inputs": [
                    {
                        "name": n,
                        "datatype": ("INT64" if columns[n].type == "integer" else "FP64")
                        if n in numeric
                        else "BYTES",
                        "shape": [-1],
                        "parameters": {
                            k: v
                            for k, v in (
                                ("min", columns[n].min),
                                ("max", columns[n].max),
                                ("domain", columns[n].domain),
                            )
                            if v is not None
                        }
                        | {"nullable": columns[n].nullable},
                    }
                    for n in gateway.validator.names
                ],
                "outputs": [
                    {"name": "probability", "datatype": "FP32", "shape": [-1]},
                    {"name": "prediction", "datatype": "INT64", "shape": [-1]},
                ],
                "traffic": gateway.state.shares() if gateway.state else {},
            }
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        body, content_type = ServerMetrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/admin/traffic")
    async def get_traffic(request: Request) -> Response:
        return gateway.authorize(request) or _json(gateway.traffic_report())

    async def admin_call(request: Request, change: Callable[[Any], Awaitable[object]]) -> Response:
        """Authorize, read the JSON body, apply `change` to it, answer the traffic report; a bad
        body is a 4xx naming the field, a registry that does not answer a 503."""
        refused = gateway.authorize(request)
        if refused is not None:
            return refused
        try:
            content_type = request.headers.get("content-type")
            if content_type is not None and not is_json_type(content_type.encode("latin-1")):
                raise unsupported_media(content_type.encode("latin-1"))
            body = await request.body()
            if len(body) > MAX_BODY_BYTES:
                raise InvalidRequest("body", f"over the limit of {MAX_BODY_BYTES} bytes", 413)
            await change(gateway.parse_json(body))
        except InvalidRequest as exc:
            return _json({"error": str(exc), "field": exc.field}, exc.status)
        except RegistryUnavailable as exc:
            log.warning("admin API: %s", exc)
            return _json({"error": str(exc), "field": "registry"}, 503)
        return _json(gateway.traffic_report())

    async def apply_traffic(body: Any) -> None:
        state = await gateway.set_traffic(body)
        log.info("traffic set by admin API: %s", state.shares())

    @app.put("/admin/traffic")
    async def put_traffic(request: Request) -> Response:
        return await admin_call(request, apply_traffic)

    @app.post("/admin/traffic/lease")
    async def renew_lease(request: Request) -> Response:
        return await admin_call(request, lambda body: asyncio.to_thread(gateway.renew_lease, body))

    return InferenceRoutes(app, gateway)
