"""The online store's day writer and record deletion, on real Feast stores (SQLite, Redis)."""

import sqlite3
import uuid

import numpy as np
import pandas as pd
import pytest

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.feature_repo import online
from mlops_platform.feature_repo.definitions import build_feature_repo, feature_references, feature_view_name
from mlops_platform.feature_repo.store import open_store
from mlops_platform_tests.datasets import write_sensor_dataset
from mlops_platform_tests.services import REDIS, require_service


def _spec(tmp_path) -> DatasetSpec:
    from mlops_platform.datasets.spec import load_spec

    return load_spec(write_sensor_dataset(tmp_path / "spec", rows=10))


def _day(spec: DatasetSpec, rows: int = 300) -> pd.DataFrame:
    """Awkward values: NaN, extreme and negative-zero doubles, missing, unicode and quoted text."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "record_id": [f"rec-{i}" for i in range(rows)],
            "event_timestamp": pd.Timestamp("2026-03-01 10:00:00.123456", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 86_400_000, rows), unit="ms"),
        }
    )
    extremes = [np.nan, 1e300, -0.0, 5e-324, -1.5, 0.1 + 0.2]
    for name in spec.features.numeric:
        values = rng.normal(size=rows)
        values[: len(extremes)] = extremes
        frame[name] = values
    odd = [None, "", "naïve 'quoted' \"text\"", "日本", "__missing__"]
    for name in spec.features.categorical:
        values = rng.choice(["a", "b", "c"], rows).astype(object)
        values[: len(odd)] = odd
        frame[name] = values
    return frame


def _sqlite_rows(store, spec: DatasetSpec) -> list[tuple]:
    path = store.config.online_store.path
    table = f"{store.config.project}_{feature_view_name(spec)}"
    with sqlite3.connect(path) as conn:
        return conn.execute(f'SELECT * FROM "{table}" ORDER BY entity_key, feature_name').fetchall()


def test_the_sqlite_writer_leaves_the_table_feast_would_write(tmp_path):
    spec = _spec(tmp_path)
    day = _day(spec)
    parquet = tmp_path / "lake" / "2026-03-01.parquet"
    parquet.parent.mkdir()
    day.to_parquet(parquet)
    feast_path = open_store(spec.name, tmp_path / "feast")
    direct = open_store(spec.name, tmp_path / "direct")
    for store in (feast_path, direct):
        store.apply(build_feature_repo(spec, parquet.parent))
    feast_path.write_to_online_store(feature_view_name(spec), df=pd.read_parquet(parquet))
    assert online.write_day(direct, feature_view_name(spec), parquet, batch_rows=64) == len(day)

    expected, written = _sqlite_rows(feast_path, spec), _sqlite_rows(direct, spec)
    assert len(written) == len(day) * len(spec.features.all)
    assert written == expected
    ids = [{"record_id": rid} for rid in day["record_id"][:10]]
    a = direct.get_online_features(feature_references(spec), ids).to_df()
    b = feast_path.get_online_features(feature_references(spec), ids).to_df()
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_deleted_records_are_gone_and_the_rest_stay(tmp_path, backend):
    if backend == "redis":
        require_service("Redis", REDIS)
    spec = _spec(tmp_path)
    project = f"{spec.name}_{uuid.uuid4().hex[:8]}" if backend == "redis" else spec.name
    day = _day(spec, rows=50)
    parquet = tmp_path / "lake" / "day.parquet"
    parquet.parent.mkdir()
    day.to_parquet(parquet)
    store = open_store(project, tmp_path / "feast", backend, f"{REDIS[0]}:{REDIS[1]}")
    store.apply(build_feature_repo(spec, parquet.parent))
    try:
        assert online.write_day(store, feature_view_name(spec), parquet, batch_rows=20) == 50
        gone = list(day["record_id"][:30])
        assert online.delete_records(store, feature_view_name(spec), [*gone, "never-written"]) == 31
        found = store.get_online_features(
            feature_references(spec), [{"record_id": rid} for rid in day["record_id"]]
        ).to_df()
        present = found[spec.features.numeric[0]].notna()
        assert not present[:30].any() and present[30:].all()
    finally:
        if backend == "redis":
            online.delete_records(store, feature_view_name(spec), list(day["record_id"]))


def test_clear_empties_the_sqlite_view_and_redis_refuses(tmp_path):
    spec = _spec(tmp_path)
    parquet = tmp_path / "lake" / "day.parquet"
    parquet.parent.mkdir()
    _day(spec, rows=40).to_parquet(parquet)
    store = open_store(spec.name, tmp_path / "feast")
    store.apply(build_feature_repo(spec, parquet.parent))
    view = feature_view_name(spec)
    online.write_day(store, view, parquet, batch_rows=16)
    assert online.can_clear(store)
    online.clear(store, view)
    assert _sqlite_rows(store, spec) == []
    assert online.write_day(store, view, parquet, batch_rows=16) == 40  # usable again
    assert len(_sqlite_rows(store, spec)) == 40 * len(spec.features.all)

    redis = open_store(spec.name, tmp_path / "redis", "redis", f"{REDIS[0]}:{REDIS[1]}")
    assert not online.can_clear(redis)
    with pytest.raises(ValueError, match="redis online store cannot be cleared"):
        online.clear(redis, view)


# -- batched lookups read straight from the stores (feature_repo.keys, feature_repo.lookup)

ODD_IDS = ["", "rec-1", "日本-ß", "a" * 300, "with space", "quote'\"", "\x00nul"]


@pytest.mark.parametrize("rid", ODD_IDS)
def test_keys_are_feasts_own(rid):
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import _mmh3, _redis_key, compute_table_id

    from mlops_platform.feature_repo import keys

    key = online._entity_key(rid)
    assert keys.entity_key(rid) == serialize_entity_key(key, entity_key_serialization_version=3)
    assert keys.redis_key("adult", rid) == _redis_key("adult", key, 3)
    assert keys.redis_field("adult_features", f"age{rid}") == _mmh3(f"adult_features:age{rid}")

    class View:  # what compute_table_id reads of a feature view
        name = "adult_features"
        current_version_number = None

    assert keys.sqlite_table("adult", "adult_features") == compute_table_id("adult", View())


def test_stored_values_decode_as_feast_reads_them():
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import feast_value_type_to_python_type
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from mlops_platform.feature_repo.lookup import decode_value

    values = st.one_of(
        st.builds(lambda v: Value(double_val=v), st.floats(allow_nan=False)),
        st.builds(lambda v: Value(string_val=v), st.text()),
        st.builds(lambda v: Value(int64_val=v), st.integers(-(2**63), 2**63 - 1)),
        st.builds(lambda v: Value(int32_val=v), st.integers(-(2**31), 2**31 - 1)),
        st.builds(lambda v: Value(float_val=v), st.floats(width=32, allow_nan=False)),
        st.builds(lambda v: Value(bool_val=v), st.booleans()),
        st.just(Value()),
    )

    @settings(max_examples=300, deadline=None)
    @given(values)
    def check(value):
        decoded = decode_value(value.SerializeToString())
        expected = feast_value_type_to_python_type(value)
        assert decoded == expected and type(decoded) is type(expected)

    check()
    assert decode_value(Value(null_val=0).SerializeToString()) is None  # Feast never writes one for a feature
    with pytest.raises(ValueError, match="does not read"):
        decode_value(Value(string_list_val={"val": ["a"]}).SerializeToString())


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_batched_lookups_equal_get_online_features(tmp_path, backend):
    """One read of 300 stored and 700 unknown ids (and a repeated one): the stored values are
    Feast's, value by value; an unknown id is absent (Feast: every feature None)."""
    from mlops_platform.feature_repo.lookup import RedisLookup, SqliteLookup

    if backend == "redis":
        require_service("Redis", REDIS)
    spec = _spec(tmp_path)
    project = f"{spec.name}_{uuid.uuid4().hex[:8]}" if backend == "redis" else spec.name
    day = _day(spec)
    parquet = tmp_path / "lake" / "day.parquet"
    parquet.parent.mkdir()
    day.to_parquet(parquet)
    url = f"{REDIS[0]}:{REDIS[1]}"
    store = open_store(project, tmp_path / "feast", backend, url)
    store.apply(build_feature_repo(spec, parquet.parent))
    view = feature_view_name(spec)
    ids = [*day["record_id"], *(f"unknown-{i}" for i in range(700)), "rec-7"]
    try:
        online.write_day(store, view, parquet, batch_rows=64)
        if backend == "redis":
            import asyncio

            lookup = RedisLookup(url, project, view, spec.features.all)

            async def read() -> dict:
                try:
                    return await lookup.read(ids)
                finally:
                    await lookup.close()

            found = asyncio.run(read())
        else:
            sqlite_lookup = SqliteLookup(
                tmp_path / "feast" / "online_store.db", project, view, spec.features.all
            )
            found = sqlite_lookup.read(ids)
            sqlite_lookup.close()
        expected = store.get_online_features(
            feature_references(spec), [{"record_id": i} for i in ids]
        ).to_dict()
    finally:
        if backend == "redis":
            online.delete_records(store, view, list(day["record_id"]))
    assert set(found) == set(day["record_id"])
    for i, rid in enumerate(ids):
        feast_row = [expected[name][i] for name in spec.features.all]
        if rid in found:
            assert found[rid] == feast_row, rid
        else:
            assert feast_row == [None] * len(spec.features.all)
    assert any(v is None for row in found.values() for v in row)  # missing values read as Feast reads them
