"""JSON request and response bodies: the size limit, the Content-Type and `x-request-id` checks,
parsing and answering."""

from __future__ import annotations

import os
import re
import uuid
from typing import Any

import orjson
from fastapi.responses import Response

from mlops_platform.serving.validation import InvalidRequest

MAX_BODY_BYTES = int(os.environ.get("MLOPS_SERVE_MAX_BODY_BYTES", str(8 * 1024 * 1024)))

# A request id the server keeps as sent: safe in a header, a log line and a file name.
REQUEST_ID_RULE = "1 to 128 characters of A-Z, a-z, 0-9 and . _ : / -"
REQUEST_ID_PATTERN = r"[A-Za-z0-9._:/-]{1,128}"
_REQUEST_ID_BYTES = re.compile(REQUEST_ID_PATTERN.encode())
_REQUEST_ID_TEXT = re.compile(REQUEST_ID_PATTERN)


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_from_header(value: bytes | None) -> tuple[str, bool, InvalidRequest | None]:
    """The request id for an `x-request-id` header value (None: no header): (id, whether the client
    sent it, the 400 to answer). A missing or empty header gets a new id; an id outside
    `REQUEST_ID_RULE` gets a new id and a 400 naming the header."""
    if not value:
        return new_request_id(), False, None
    if _REQUEST_ID_BYTES.fullmatch(value) is not None:
        return value.decode("ascii"), True, None
    shown = value[:40].decode("latin-1")
    more = f" ({len(value)} bytes)" if len(value) > 40 else ""
    return (
        new_request_id(),
        False,
        InvalidRequest("x-request-id", f"{shown!r}{more} is not a request id: send {REQUEST_ID_RULE}", 400),
    )


def is_request_id(text: str) -> bool:
    """Whether `text` follows `REQUEST_ID_RULE` (a V2 body's `id` is kept as the request id if so)."""
    return _REQUEST_ID_TEXT.fullmatch(text) is not None


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
