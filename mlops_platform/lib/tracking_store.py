"""Is MLflow's tracking store there? One probe for the Dagster resource and the model server.

A store behind a network (an MLflow server, PostgreSQL, MySQL, SQL Server) must accept a TCP
connection; a local SQLite file or file store needs a folder it can create. MLflow's own HTTP
client retries 7 times with exponential backoff (minutes) before it gives up, so callers also
cap its retries and timeout (`limit_client_retries`) unless the environment sets them.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from mlops_platform.lib.uris import redact_uri

_DEFAULT_PORTS = {
    "http": 80,
    "https": 443,
    "postgresql": 5432,
    "postgres": 5432,
    "mysql": 3306,
    "mssql": 1433,
}


class RegistryUnavailable(RuntimeError):
    """The tracking store does not answer; the message names its URI (password redacted)
    and what to do."""


def limit_client_retries(max_retries: int, timeout_seconds: float) -> None:
    """Cap MLflow's HTTP retries and request timeout in this process, unless already set."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(max_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(timeout_seconds)))


def _probe_once(uri: str, timeout_seconds: float) -> None:
    """Raise OSError (or ValueError) unless the store at `uri` is reachable."""
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+", 1)[0].lower() if "://" in uri else "file"
    if scheme in _DEFAULT_PORTS:
        if not parts.hostname:
            raise ValueError("no host in the URI")
        port = parts.port or _DEFAULT_PORTS[scheme]
        with socket.create_connection((parts.hostname, port), timeout=timeout_seconds):
            return
    elif scheme in {"sqlite", "file"}:
        path = Path(uri.removeprefix("sqlite:///").removeprefix("file://"))
        (path.parent if scheme == "sqlite" else path).mkdir(parents=True, exist_ok=True)


def check_reachable(uri: str, attempts: int = 1, timeout_seconds: float = 3.0) -> None:
    """Probe `uri` up to `attempts` times (1 s, 2 s, ... apart); raise `RegistryUnavailable`
    naming it, password redacted, when it never answers. Other schemes are not probed."""
    error: Exception | None = None
    for attempt in range(attempts):
        if attempt:
            time.sleep(float(attempt))
        try:
            _probe_once(uri, timeout_seconds)
            return
        except (OSError, ValueError) as exc:
            error = exc
    raise RegistryUnavailable(
        f"the MLflow tracking store {redact_uri(uri)} did not answer {attempts} probe(s) "
        f"({redact_uri(str(error)) or type(error).__name__}): start it, or point "
        "MLOPS_MLFLOW_TRACKING_URI at a running one"
    )
