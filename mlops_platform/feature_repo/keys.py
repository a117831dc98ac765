"""Where Feast's online stores keep a record's features: table names, entity keys, Redis fields.

Pure functions of the pinned Feast's formats (entity key serialization version 3, no feature
view versioning), so the model server reads the online store without importing Feast (a
6-second import). `test_online_store.py` checks every function here against Feast's own.
"""

from __future__ import annotations

import struct

import mmh3

from mlops_platform.feature_repo.definitions import ENTITY_KEY

KEY_SERIALIZATION_VERSION = 3  # the stores are opened with it (`store.open_store`)
_STRING = 2  # feast ValueType.STRING
_KEY_HEAD = (
    struct.pack("<I", 1)  # one join key
    + struct.pack("<II", _STRING, len(ENTITY_KEY.encode()))
    + ENTITY_KEY.encode()
    + struct.pack("<I", _STRING)  # the value's type; its length and bytes follow
)


def entity_key(record_id: str) -> bytes:
    """Feast's serialized entity key (version 3) of one record id."""
    raw = record_id.encode("utf8")
    return _KEY_HEAD + struct.pack("<I", len(raw)) + raw


def sqlite_table(project: str, view: str) -> str:
    """The SQLite online store's table of a feature view."""
    return f"{project}_{view}"


def redis_key(project: str, record_id: str) -> bytes:
    """The Redis hash that holds every feature view's values of one record."""
    return entity_key(record_id) + project.encode("utf8")


def redis_field(view: str, feature: str) -> bytes:
    """A feature's field in the record's hash: murmur3 of `view:feature`, 4 bytes little-endian."""
    return struct.pack("<I", mmh3.hash(f"{view}:{feature}", signed=False))


def redis_timestamp_field(view: str) -> bytes:
    """The field holding the view's event timestamp of the record (present once written)."""
    return f"_ts:{view}".encode()
