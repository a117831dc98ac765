"""URIs safe to show: passwords replaced by `***` wherever a URI appears in a text."""

from __future__ import annotations

import re

# The user info (`user:password@`): the user stops at `/?#@:`, the password runs to the last `@`
# before any whitespace (SQLAlchemy accepts `/` and `#` in it), so over-redacting beats a leak.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^/?#@:\s]*):[^\s]*@")
# `?password=` / `&password=` in a URI's query; `,password=` in a Redis connection string as
# Feast takes it (`host:port,password=...,ssl=true`)
_QUERY_SECRET = re.compile(r"(?P<key>[?&,](?:password|passwd|pwd)=)[^&,#\s]*", re.IGNORECASE)


def redact_uri(uri: str) -> str:
    """`uri` (or any text holding URIs) with every password replaced by `***`.

    `postgresql://user:pw@host/db` -> `postgresql://user:***@host/db`; a `password=` query
    parameter (or a Redis connection string's `,password=`) is redacted too. Text without a
    password comes back unchanged.
    """
    return _QUERY_SECRET.sub(r"\g<key>***", _USERINFO.sub(r"\g<scheme>\g<user>:***@", uri))
