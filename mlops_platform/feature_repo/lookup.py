"""Batched reads of Feast's online store, straight from SQLite or Redis.

`get_online_features` costs milliseconds of Python per call (protobuf objects, registry lookups,
response building) whatever the number of entities; the model server needs one lookup per
request batch in a fraction of that. These readers fetch a batch of record ids in one SQLite
query or one Redis pipeline and decode Feast's stored `Value` messages themselves, without
importing Feast. They return what `get_online_features(...).to_dict()` returns for the same ids
(`test_online_store.py` checks both stores value by value): the stored value, `None` for a
missing one, and nothing at all for a record the store does not hold.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlops_platform.feature_repo import keys

SQLITE_MAX_IDS = 900  # ids per statement, under SQLite's bound-parameter limit
_CACHE_LIMIT = 1 << 16  # decoded values kept (categories and common numbers repeat endlessly)


class StoreNotMaterialized(LookupError):
    """The online store holds no table for the view yet: nothing has been materialized."""


class StoreUnavailable(LookupError):
    """The online store did not answer (a missing database, a refused or timed-out connection)."""


class StoreBusy(StoreUnavailable):
    """A write lock held the SQLite store for longer than the read would wait."""


# -- Feast's `Value` message, decoded by hand: only the scalar fields a feature view stores.


def _varint(blob: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = blob[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def decode_value(blob: bytes | None) -> Any:
    """A serialized Feast `Value` as Python: str, float, int, bool, or None (unset or null)."""
    if not blob:
        return None
    tag = blob[0]
    if tag == 0x29 and len(blob) == 9:  # double_val
        return struct.unpack_from("<d", blob, 1)[0]
    if tag == 0x12:  # string_val
        length, at = _varint(blob, 1)
        return blob[at : at + length].decode("utf8")
    if tag == 0x35 and len(blob) == 5:  # float_val
        return struct.unpack_from("<f", blob, 1)[0]
    if tag in (0x18, 0x20):  # int32_val, int64_val
        value = _signed64(_varint(blob, 1)[0])
        return value if tag != 0x18 else (value + (1 << 31)) % (1 << 32) - (1 << 31)
    if tag == 0x38:  # bool_val
        return bool(_varint(blob, 1)[0])
    if blob[:2] == b"\x98\x01":  # null_val
        return None
    raise ValueError(f"a stored feature value of a type this server does not read (tag {tag:#x})")


class _Decoder:
    """`decode_value` with a bounded cache of the encodings already seen."""

    def __init__(self) -> None:
        self._cache: dict[bytes, Any] = {}

    def __call__(self, blob: bytes | None) -> Any:
        if not blob:
            return None
        try:
            return self._cache[blob]
        except KeyError:
            pass
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        value = self._cache[blob] = decode_value(blob)
        return value


# -- the stores


class SqliteLookup:
    """Feast's SQLite online store, read with one indexed query per batch (read-only, memory-mapped).

    `read(ids, wait_s)` waits at most `wait_s` for a writer's lock (a materialization committing)
    and then raises StoreBusy, so a caller can read without waiting first and wait elsewhere.
    """

    def __init__(self, path: Path, project: str, view: str, features: Sequence[str]) -> None:
        self.path = path
        self.table = keys.sqlite_table(project, view)
        self.features = list(features)
        self._position = {name: j for j, name in enumerate(self.features)}
        self._decode = _Decoder()
        self._conn: sqlite3.Connection | None = None
        self._inode: tuple[int, int] | None = None  # the file the connection reads
        self._wait_s = 0.0

    def _connection(self) -> sqlite3.Connection:
        """The open connection, reopened when the file was replaced (Feast's teardown deletes it)."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self.close()
            raise StoreNotMaterialized(f"no online store at {self.path}") from None
        inode = (stat.st_dev, stat.st_ino)
        if self._conn is not None and inode != self._inode:
            self.close()
        if self._conn is None:
            conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False, timeout=0
            )
            try:
                conn.execute("PRAGMA mmap_size = 268435456")  # pages read from the OS cache, not copied
                conn.execute(f'SELECT 1 FROM "{self.table}" LIMIT 0')
            except sqlite3.Error:
                conn.close()
                raise
            self._conn, self._inode = conn, inode
        return self._conn

    def read(self, record_ids: Sequence[str], wait_s: float = 0.0) -> dict[str, list[Any]]:
        """The stored values (in `features` order) of each record id the store holds."""
        found: dict[str, list[Any]] = {}
        try:
            conn = self._connection()
            if wait_s != self._wait_s:
                conn.execute(f"PRAGMA busy_timeout = {int(wait_s * 1000)}")
                self._wait_s = wait_s
            for start in range(0, len(record_ids), SQLITE_MAX_IDS):
                part = record_ids[start : start + SQLITE_MAX_IDS]
                by_key = {keys.entity_key(rid): rid for rid in part}
                rows = conn.execute(
                    f'SELECT entity_key, feature_name, value FROM "{self.table}" '
                    f"WHERE entity_key IN ({','.join('?' * len(by_key))})",
                    list(by_key),
                ).fetchall()
                self._collect(rows, by_key, found)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreBusy(f"the SQLite online store at {self.path} is locked by a writer") from None
            self.close()
            if "no such table" in str(exc):
                raise StoreNotMaterialized(f"the online store has no table {self.table}") from None
            raise StoreUnavailable(f"the SQLite online store at {self.path}: {exc}") from None
        except sqlite3.Error as exc:
            self.close()
            raise StoreUnavailable(f"the SQLite online store at {self.path}: {exc}") from None
        return found

    def _collect(
        self, rows: list[tuple[bytes, str, bytes]], by_key: dict[bytes, str], found: dict[str, list[Any]]
    ) -> None:
        width, position, decode = len(self.features), self._position, self._decode
        for key, feature, blob in rows:
            j = position.get(feature)
            if j is None:
                continue
            values = found.get(by_key[key])
            if values is None:
                values = found[by_key[key]] = [None] * width
            values[j] = decode(blob)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn, self._inode = None, None
            self._wait_s = 0.0


def redis_connection_kwargs(connection_string: str) -> dict[str, Any]:
    """`host:port[,key=value...]` (Feast's Redis connection string) as redis-py's arguments."""
    parts = [p for p in connection_string.split(",") if p]
    if not parts or "=" in parts[0]:
        raise ValueError(f"a Redis connection string starts with host:port, got {connection_string!r}")
    host, _, port = parts[0].rpartition(":")
    kwargs: dict[str, Any] = {"host": host or parts[0], "port": int(port) if host else 6379}
    for part in parts[1:]:
        key, _, text = part.partition("=")
        try:
            kwargs[key] = json.loads(text)
        except json.JSONDecodeError:
            kwargs[key] = text
    return kwargs


class RedisLookup:
    """Feast's Redis online store, read with one pipelined HMGET per record, one round trip a batch."""

    def __init__(
        self, connection_string: str, project: str, view: str, features: Sequence[str], timeout: float = 0.5
    ) -> None:
        self.connection_string = connection_string
        self.project = project
        self.features = list(features)
        self.fields = [keys.redis_field(view, f) for f in self.features] + [keys.redis_timestamp_field(view)]
        self.timeout = timeout
        self._decode = _Decoder()
        self._client: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            import redis.asyncio

            self._client = redis.asyncio.Redis(
                **redis_connection_kwargs(self.connection_string),
                socket_connect_timeout=self.timeout,
                socket_timeout=self.timeout,
            )
        return self._client

    async def read(self, record_ids: Sequence[str]) -> dict[str, list[Any]]:
        """The stored values (in `features` order) of each record id the store holds."""
        import redis

        client = self._redis()
        try:
            async with client.pipeline(transaction=False) as pipe:
                for rid in record_ids:
                    pipe.hmget(keys.redis_key(self.project, rid), self.fields)
                replies = await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise StoreUnavailable(f"the Redis online store at {self.connection_string}: {exc}") from None
        found: dict[str, list[Any]] = {}
        decode = self._decode
        for rid, reply in zip(record_ids, replies, strict=True):
            if any(v is not None for v in reply):
                found[rid] = [decode(v) for v in reply[:-1]]
        return found

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
