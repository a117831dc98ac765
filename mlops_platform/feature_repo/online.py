"""Day-by-day writes to the Feast online store, and deletion of records that leave it.

A day's Parquet file is written in batches of a fixed number of rows, so memory follows the
batch, not the day. Redis is loaded through Feast's `write_to_online_store`. Feast's SQLite
store converts and upserts every value in Python, one statement per value, so for
SQLite `_write_sqlite` writes the same rows Feast would (one per record and feature: the
serialized entity key, the serialized value, its text, the event time) with the values
encoded per column; `test_online_store.py` proves both paths leave identical tables.
Feast has no call to delete single entities; `delete_records` removes them the way each
online store keys them (`keys`, checked against Feast's own key functions).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mlops_platform.feature_repo import keys
from mlops_platform.feature_repo.definitions import ENTITY_KEY, TIMESTAMP_FIELD

if TYPE_CHECKING:
    from feast import FeatureStore
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey

DELETE_BATCH = 10_000
_DOUBLE_TAG = 0x29  # protobuf key of Value.double_val (field 5, 64-bit)


def _plain_sqlite(store: FeatureStore) -> bool:
    """Whether the store is Feast's SQLite store with one row per record and feature."""
    config = store.config.online_store
    return config.type == "sqlite" and not (
        config.vector_enabled or getattr(config, "enable_openai_compatible_store", False)
    )


def write_day(store: FeatureStore, view_name: str, parquet: Path, batch_rows: int) -> int:
    """Write every row of a day's Parquet file into the online store; returns the rows."""
    import pyarrow.parquet as pq

    direct = _plain_sqlite(store)
    written = 0
    for batch in pq.ParquetFile(parquet).iter_batches(batch_size=batch_rows):
        frame = batch.to_pandas()
        if direct:
            _write_sqlite(store, view_name, frame)
        else:
            store.write_to_online_store(view_name, df=frame)
        written += len(frame)
    return written


def _entity_key(rid: str) -> EntityKey:
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return EntityKey(join_keys=[ENTITY_KEY], entity_values=[Value(string_val=rid)])


def _encoded_doubles(values: np.ndarray) -> tuple[list[bytes], list[str | None]]:
    """Serialized `Value(double_val=v)` and its text per value; a missing value is an empty
    Value without text, as Feast writes it."""
    packed = np.empty(len(values), dtype=[("tag", "u1"), ("value", "<f8")])
    packed["tag"] = _DOUBLE_TAG
    packed["value"] = values
    raw = packed.tobytes()
    missing = np.isnan(values)
    blobs = [b"" if missing[i] else raw[9 * i : 9 * i + 9] for i in range(len(values))]
    texts = [None if m else str(v) for v, m in zip(values.tolist(), missing.tolist(), strict=True)]
    return blobs, texts


def _encoded_strings(values: list[object]) -> tuple[list[bytes], list[str | None]]:
    from feast.protos.feast.types.Value_pb2 import Value

    cache: dict[object, tuple[bytes, str | None]] = {}
    for value in set(values):
        missing = value is None or (isinstance(value, float) and np.isnan(value))
        cache[value] = (
            (b"", None) if missing else (Value(string_val=str(value)).SerializeToString(), str(value))
        )
    encoded = [cache[v] for v in values]
    return [b for b, _ in encoded], [t for _, t in encoded]


def _write_sqlite(store: FeatureStore, view_name: str, frame: pd.DataFrame) -> None:
    """Upsert a batch into Feast's SQLite table exactly as its `online_write_batch` does."""
    from feast.infra.online_stores.helpers import compute_table_id
    from feast.types import Float64

    config = store.config
    view = store.get_feature_view(view_name)
    table = compute_table_id(config.project, view, config.registry.enable_online_feature_view_versioning)
    entity_keys = _entity_keys([str(r) for r in frame[ENTITY_KEY]], config.entity_key_serialization_version)
    # Feast binds a naive UTC datetime through its sqlite3 adapter, `int(val.timestamp())`
    naive = pd.to_datetime(frame[TIMESTAMP_FIELD], utc=True).dt.tz_localize(None).to_numpy("datetime64[us]")
    times = [int(t.timestamp()) for t in naive.tolist()]  # .tolist(): datetime.datetime objects
    encoded = {}
    for feature in view.features:
        if feature.dtype == Float64:
            encoded[feature.name] = _encoded_doubles(
                frame[feature.name].to_numpy(dtype=np.float64, na_value=np.nan)
            )
        else:
            encoded[feature.name] = _encoded_strings(frame[feature.name].tolist())
    names = sorted(encoded)
    # in key order, so B-tree pages are touched once
    rows = [
        (entity_keys[i], name, encoded[name][0][i], encoded[name][1][i], times[i], None)
        for i in sorted(range(len(entity_keys)), key=entity_keys.__getitem__)
        for name in names
    ]
    conn = store._get_provider().online_store._get_conn(config)
    with conn:
        conn.executemany(
            f'INSERT INTO "{table}" (entity_key, feature_name, value, value_text, event_ts, created_ts) '
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
            "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, "
            "created_ts = excluded.created_ts",
            rows,
        )


def _entity_keys(ids: list[str], version: int) -> list[bytes]:
    """Feast's serialized entity key of each record id (`keys.entity_key`); the first is checked
    against Feast's own serialization, so a change of format in another Feast fails loudly."""
    from feast.infra.key_encoding_utils import serialize_entity_key

    encoded = [keys.entity_key(rid) for rid in ids]
    if encoded and encoded[0] != serialize_entity_key(
        _entity_key(ids[0]), entity_key_serialization_version=version
    ):
        raise RuntimeError(f"Feast's entity key serialization (version {version}) is not the one expected")
    return encoded


def can_clear(store: FeatureStore) -> bool:
    """Whether `clear` empties the view in one statement (SQLite; Redis keys every record)."""
    return _plain_sqlite(store)


def clear(store: FeatureStore, view_name: str) -> None:
    """Delete every online row of the view, in time independent of the rows held."""
    from feast.infra.online_stores.helpers import compute_table_id

    if not can_clear(store):
        raise ValueError(f"the {store.config.online_store.type} online store cannot be cleared per view")
    config = store.config
    table = compute_table_id(
        config.project,
        store.get_feature_view(view_name),
        config.registry.enable_online_feature_view_versioning,
    )
    conn = store._get_provider().online_store._get_conn(config)
    with conn:
        conn.execute(f'DELETE FROM "{table}"')  # no WHERE: SQLite's truncate optimization


def record_ids(parquet: Path) -> list[str]:
    """The record ids in a day's Parquet file (none when the file is gone)."""
    import pyarrow.parquet as pq

    if not parquet.is_file():
        return []
    return [str(v) for v in pq.read_table(parquet, columns=[ENTITY_KEY]).column(0).to_pylist()]


def _chunks(values: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(values)
    while chunk := list(islice(iterator, size)):
        yield chunk


def delete_records(store: FeatureStore, view_name: str, ids: Iterable[str]) -> int:
    """Delete the online rows of these record ids from the view; returns the ids asked for."""
    from feast.infra.online_stores.helpers import compute_table_id

    config = store.config
    online = store._get_provider().online_store
    view = store.get_feature_view(view_name)
    version = config.entity_key_serialization_version

    asked = 0
    if config.online_store.type == "redis":
        client = online._get_client(config.online_store)
        for chunk in _chunks(ids, DELETE_BATCH):
            client.delete(*[keys.redis_key(config.project, rid) for rid in chunk])
            asked += len(chunk)
        return asked
    conn = online._get_conn(config)
    table = compute_table_id(config.project, view, config.registry.enable_online_feature_view_versioning)
    with conn:
        for chunk in _chunks(ids, DELETE_BATCH):
            conn.executemany(
                f'DELETE FROM "{table}" WHERE entity_key = ?', [(k,) for k in _entity_keys(chunk, version)]
            )
            asked += len(chunk)
    return asked
