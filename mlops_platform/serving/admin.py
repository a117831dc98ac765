"""The admin API: the traffic report, setting the split and renewing a canary's lease, behind a
bearer token (`traffic.admin_token`).

A change is written to the traffic state file under its lock and applied to this worker at
once; the other workers follow the file (`routing.TrafficRouter`), and the report says which
generation each one has applied.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from mlops_platform.serving.json_bodies import (
    MAX_BODY_BYTES,
    is_json_type,
    json_response,
    parse_json,
    too_large,
    unsupported_media,
)
from mlops_platform.serving.revisions import RegistryUnavailable, RevisionError, resolve_version
from mlops_platform.serving.routing import TrafficRouter
from mlops_platform.serving.schemas import LeaseRequest, TrafficRequest, parse_body
from mlops_platform.serving.traffic import TrafficState, TrafficStore
from mlops_platform.serving.validation import InvalidRequest

log = logging.getLogger("mlops_platform.serving")


class AdminApi:
    """What the admin routes do, for one served model."""

    def __init__(self, store: TrafficStore, token: str, tracking_uri: str, router: TrafficRouter) -> None:
        self.store = store
        self.token = token
        self.tracking_uri = tracking_uri
        self.router = router
        self.model_name = router.model_name

    def authorize(self, request: Request) -> Response | None:
        """None for the right bearer token, else the 401 or 403 to answer."""
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return json_response(
                {"error": "missing bearer token (header Authorization: Bearer <token>)"},
                401,
                {"www-authenticate": "Bearer"},
            )
        if not hmac.compare_digest(header[len("Bearer ") :].encode(), self.token.encode()):
            return json_response({"error": "wrong admin token"}, 403)
        return None

    async def call(self, request: Request, change: Callable[[Any], Awaitable[object]]) -> Response:
        """Authorize, read the JSON body, apply `change` to it, answer the traffic report; a bad
        body is a 4xx naming the field, a registry that does not answer a 503."""
        refused = self.authorize(request)
        if refused is not None:
            return refused
        try:
            content_type = request.headers.get("content-type")
            if content_type is not None and not is_json_type(content_type.encode("latin-1")):
                raise unsupported_media(content_type.encode("latin-1"))
            body = await request.body()
            if len(body) > MAX_BODY_BYTES:
                raise too_large()
            await change(parse_json(body))
        except InvalidRequest as exc:
            return json_response({"error": str(exc), "field": exc.field}, exc.status)
        except RegistryUnavailable as exc:
            log.warning("admin API: %s", exc)
            return json_response({"error": str(exc), "field": "registry"}, 503)
        return json_response(self.traffic_report())

    def traffic_report(self) -> dict[str, Any]:
        """The state file (`spec`) and what the workers serve (`status`), like KServe's."""
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
                resolve_version, self.tracking_uri, self.model_name, version=version, alias=alias
            )
            await asyncio.to_thread(self.router.check_loads, resolved)
        except RevisionError as exc:
            raise InvalidRequest("alias" if alias else "version", str(exc), 404) from None
        with self.store.locked():
            current = self.store.read() or TrafficState(model_name=self.model_name)
            state = current.with_revision(resolved, wanted.canary_percent, wanted.owner)
            self.store.write(state)
        await asyncio.to_thread(self.router.apply, state)
        log.info("traffic set by admin API: %s", state.shares())
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
