"""JSON request and response bodies: the size limit, the Content-Type check, parsing and answering."""

from __future__ import annotations

import os
from typing import Any

import orjson
from fastapi.responses import Response

from mlops_platform.serving.validation import InvalidRequest

MAX_BODY_BYTES = int(os.environ.get("MLOPS_SERVE_MAX_BODY_BYTES", str(8 * 1024 * 1024)))


def is_json_type(content_type: bytes) -> bool:
    """Whether a Content-Type names JSON: `application/json` or any `+json` type, parameters aside."""
    if content_type == b"application/json":
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.endswith(b"+json") and b"/" in media)


def unsupported_media(content_type: bytes) -> InvalidRequest:
    """The 415 for a body sent with a Content-Type that is not JSON."""
    shown = content_type.decode("latin-1")[:100]
    return InvalidRequest(
        "content-type",
        f"{shown!r} is not JSON: send the body as JSON with Content-Type: application/json",
        415,
    )


def too_large() -> InvalidRequest:
    """The 413 for a body over `MAX_BODY_BYTES`."""
    return InvalidRequest("body", f"over the limit of {MAX_BODY_BYTES} bytes", 413)


def parse_json(body: bytes) -> Any:
    """The parsed body; InvalidRequest (400) when it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest("body", f"not valid JSON: {exc}", status=400) from None


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )
