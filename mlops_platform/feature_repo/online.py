"""Day-by-day writes to the Feast online store, and deletion of records that leave it.

Feast loads the online store through `write_to_online_store`, here in batches of a fixed
number of rows read from a day's Parquet file, so memory follows the batch, not the day.
Feast has no call to delete single entities; `delete_records` removes them the way each
online store keys them (SQLite: the rows of the entity keys; Redis: the entity hashes),
using Feast's own key functions of the pinned version.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_platform.feature_repo.definitions import ENTITY_KEY

if TYPE_CHECKING:
    from feast import FeatureStore

DELETE_BATCH = 10_000


def write_day(store: FeatureStore, view_name: str, parquet: Path, batch_rows: int) -> int:
    """Write every row of a day's Parquet file into the online store; returns the rows."""
    import pyarrow.parquet as pq

    written = 0
    for batch in pq.ParquetFile(parquet).iter_batches(batch_size=batch_rows):
        frame = batch.to_pandas()
        store.write_to_online_store(view_name, df=frame)
        written += len(frame)
    return written


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
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import _redis_key, compute_table_id
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    config = store.config
    online = store._get_provider().online_store
    view = store.get_feature_view(view_name)
    version = config.entity_key_serialization_version

    def key(rid: str) -> EntityKey:
        return EntityKey(join_keys=[ENTITY_KEY], entity_values=[Value(string_val=rid)])

    asked = 0
    if config.online_store.type == "redis":
        client = online._get_client(config.online_store)
        for chunk in _chunks(ids, DELETE_BATCH):
            client.delete(*[_redis_key(config.project, key(rid), version) for rid in chunk])
            asked += len(chunk)
        return asked
    conn = online._get_conn(config)
    table = compute_table_id(config.project, view, config.registry.enable_online_feature_view_versioning)
    with conn:
        for chunk in _chunks(ids, DELETE_BATCH):
            conn.executemany(
                f'DELETE FROM "{table}" WHERE entity_key = ?',
                [
                    (serialize_entity_key(key(rid), entity_key_serialization_version=version),)
                    for rid in chunk
                ],
            )
            asked += len(chunk)
    return asked
