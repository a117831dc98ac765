"""Reach the machine's PostgreSQL and Redis, or skip (fail when MLOPS_REQUIRE_SERVICES=1)."""

import os
import socket

import pytest

POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)


def require_service(name: str, address: tuple[str, int]) -> None:
    try:
        socket.create_connection(address, timeout=2).close()
    except OSError as exc:
        message = f"{name} does not answer at {address[0]}:{address[1]} ({exc})"
        if os.environ.get("MLOPS_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " and MLOPS_REQUIRE_SERVICES=1")
        pytest.skip(message)
