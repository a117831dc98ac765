"""Scoring one inference request, either KServe protocol: validate, route, predict, count and log.

Handlers score on the event loop (a single row costs tens of microseconds; a thread hop would
cost more); the `MicroBatcher` shares one model call among the requests ready together.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NamedTuple

import numpy as np

from mlops_platform.serving.batching import MicroBatcher
from mlops_platform.serving.inference_log import PredictionLog
from mlops_platform.serving.json_bodies import is_request_id, parse_json
from mlops_platform.serving.metrics import ServerMetrics
from mlops_platform.serving.online_features import OnlineFeatures
from mlops_platform.serving.revisions import Revision
from mlops_platform.serving.routing import TrafficRouter
from mlops_platform.serving.validation import FeatureBatch, InvalidRequest, RequestValidator

log = logging.getLogger("mlops_platform.serving")


class Answer(NamedTuple):
    """An inference request's answer, and what its access line says about it."""

    status: int
    payload: dict[str, Any]
    headers: dict[str, str]
    request_id: str
    model_version: str | None = None  # the version that answered (or failed)
    role: str | None = None  # stable or canary
    rows: int = 0  # rows scored


class ModelFailure(RuntimeError):
    """A model version failed while scoring (a 500 counted against that version)."""

    def __init__(self, message: str, version: str, role: str) -> None:
        super().__init__(message)
        self.version = version
        self.role = role


class Scorer:
    """Answers inference requests for one model with the revisions its router picks."""

    def __init__(
        self,
        model_name: str,
        validator: RequestValidator,
        router: TrafficRouter,
        features: OnlineFeatures,
        metrics: ServerMetrics,
    ) -> None:
        self.model_name = model_name
        self.validator = validator
        self.router = router
        self.features = features
        self.metrics = metrics
        self.log: PredictionLog | None = None  # set when the worker starts
        self.batcher = MicroBatcher()

    async def infer(
        self,
        protocol: str,
        model: str,
        version: str | None,
        body: bytes,
        request_id: str,
        started: float,
        id_sent: bool = True,
    ) -> Answer:
        """One inference request, either protocol; never raises. Unless the client sent the request
        id (`id_sent`), a V2 body's `id` that follows the request-id rule becomes the request id;
        a V2 answer's `id` is the body's, as sent."""
        echo = None
        try:
            self.check_model(model)
            parsed = parse_json(body)
            if protocol == "v2" and isinstance(parsed, dict) and isinstance(parsed.get("id"), str):
                echo = parsed["id"]
                if not id_sent and is_request_id(echo):
                    request_id = echo
            if protocol == "v1":
                instances = self.validator.v1_instances(parsed)
                entity_ids = self.validator.entity_ids(instances)
                batch = (
                    await self.features.batch(entity_ids)
                    if entity_ids
                    else self.validator.v1_batch(instances)
                )
            else:
                batch = self.validator.v2_batch(parsed)
            revision, role, probabilities = await self.score(batch, protocol, request_id, started, version)
        except InvalidRequest as exc:
            self.metrics.invalid.labels(str(exc.status)).inc()
            payload = {"error": str(exc), "field": exc.field, "request_id": request_id}
            return Answer(exc.status, payload, {}, request_id)
        except LookupError as exc:
            return Answer(503, {"error": str(exc), "request_id": request_id}, {}, request_id)
        except RecursionError:  # a RuntimeError too: caught first
            self.metrics.invalid.labels("400").inc()
            payload = {"error": "body: nested too deeply", "field": "body", "request_id": request_id}
            return Answer(400, payload, {}, request_id)
        except ModelFailure as exc:
            payload = {"error": str(exc), "request_id": request_id}
            return Answer(500, payload, {}, request_id, exc.version, exc.role)
        except RuntimeError as exc:
            return Answer(500, {"error": str(exc), "request_id": request_id}, {}, request_id)
        predictions = (probabilities >= revision.threshold).astype(np.int64)
        headers = {"x-model-name": self.model_name, "x-model-version": revision.version}
        rows = len(probabilities)
        if protocol == "v1":
            return Answer(
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
                request_id,
                revision.version,
                role,
                rows,
            )
        return Answer(
            200,
            {
                "model_name": self.model_name,
                "model_version": revision.version,
                "id": request_id if echo is None else echo,
                "outputs": [
                    {"name": "probability", "shape": [rows], "datatype": "FP32", "data": probabilities},
                    {"name": "prediction", "shape": [rows], "datatype": "INT64", "data": predictions},
                ],
            },
            headers,
            request_id,
            revision.version,
            role,
            rows,
        )

    def check_model(self, name: str) -> None:
        """InvalidRequest (404) unless `name` is the served model."""
        if name != self.model_name:
            raise InvalidRequest(
                "model", f"no model named {name!r}; this server serves {self.model_name!r}", 404
            )

    async def score(
        self, batch: FeatureBatch, protocol: str, request_id: str, started: float, version: str | None = None
    ) -> tuple[Revision, str, np.ndarray]:
        """Route, score, count and log: the revision, its role and the probabilities; raises
        ModelFailure (a 5xx) when the model fails."""
        revision, role = self.router.pick(version)
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
            raise ModelFailure(
                f"model version {revision.version} failed: {exc}", revision.version, role
            ) from exc
        instruments.requests[protocol].inc()
        instruments.observe_predictions(probabilities)
        assert self.log is not None
        self.log.record(batch, revision, role, protocol, request_id, probabilities)
        instruments.latency.observe(time.perf_counter() - started)
        return revision, role, probabilities
