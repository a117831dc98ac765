"""A daily run costs the day: dbt, the feature lake and the online store touch only the new
day, the online window slides, and the result equals a full rebuild. The point-in-time join
in DuckDB equals Feast's `get_historical_features`."""

import shutil

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_platform.datasets.spec import shipped_spec_path
from mlops_platform.definitions import build_definitions
from mlops_platform.defs.features.training_set import point_in_time_sql
from mlops_platform.defs.jobs import RETRAIN_MODEL
from mlops_platform.feature_repo import online as feast_online
from mlops_platform.feature_repo.definitions import feature_references, feature_view_name
from mlops_platform.lib import feature_lake, warehouse
from mlops_platform.lib.landing import simulate_batches
from mlops_platform.resources.feast import FeastResource
from mlops_platform.settings import Settings
from mlops_platform_tests.datasets import write_adult_spec
from mlops_platform_tests.pipeline import land_reference, run_pipeline, table

ROWS_PER_DAY = 120


def _settings(folder) -> Settings:
    """Small Adult days, an online window of two days and small online writes."""
    features = yaml.safe_load(shipped_spec_path().read_text())["features"]
    features.update(online_ttl_days=2, online_write_batch_size=50)
    spec = write_adult_spec(folder / "specs", rows_per_day=ROWS_PER_DAY, reference_days=3, features=features)
    return Settings(home=folder / "home", dataset_spec_path=spec)


def _metadata(result: dg.ExecuteInProcessResult, key: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _store(settings: Settings):
    return FeastResource(project=settings.load_spec().name, repo_dir=str(settings.feast_dir)).store()


def _online(settings: Settings, ids: list[str]) -> pd.DataFrame:
    spec = settings.load_spec()
    rows = [{"record_id": rid} for rid in ids]
    return _store(settings).get_online_features(feature_references(spec), rows).to_df().set_index("record_id")


def _stg_rowids(settings: Settings) -> pd.DataFrame:
    return warehouse.query(
        settings.warehouse_path,
        "SELECT record_id, strftime(ingestion_date, '%Y-%m-%d') AS day, rowid FROM stg_records",
    ).set_index("record_id")


def test_a_one_day_run_touches_one_day_and_equals_a_full_rebuild(tmp_path, instance):
    settings = _settings(tmp_path / "incremental")
    spec = settings.load_spec()
    days = land_reference(settings)
    assert run_pipeline(settings, instance, days[0], days[-1]).success

    # the online window holds the last two days; the oldest lives offline only
    manifest = feature_lake.LakeManifest.read(feature_lake.manifest_path(settings.lake_dir))
    assert set(manifest.days) == set(days) and manifest.online == set(days[1:])
    by_day = _stg_rowids(settings)
    oldest = sorted(by_day.index[by_day["day"] == days[0]])
    assert _online(settings, oldest)[spec.features.all].isna().all().all()

    # one new day: dbt inserts only its rows, every older row keeps its place
    before = _stg_rowids(settings)
    (new_day,) = [p.stem for p in simulate_batches(spec, settings.landing_dir, days=1)]
    result = run_pipeline(settings, instance, new_day)
    assert result.success
    after = _stg_rowids(settings)
    rebuilt = after[after["rowid"] > before["rowid"].max()]
    assert set(rebuilt["day"]) == {new_day} and len(rebuilt) == ROWS_PER_DAY
    assert after.loc[before.index, "rowid"].equals(before["rowid"])
    # the dbt tests of stg_records judge the rows of its latest build: exactly that day's
    (built,) = warehouse.query(
        settings.warehouse_path,
        "SELECT list(DISTINCT strftime(ingestion_date, '%Y-%m-%d')) AS days, count(*) AS n FROM stg_records "
        "WHERE _built_at = (SELECT max(_built_at) FROM stg_records)",
    ).itertuples(index=False)
    assert list(built.days) == [new_day] and built.n == ROWS_PER_DAY

    # the feature lake exports only that day; the online store writes only its rows and
    # drops the day that left the window
    store_meta = _metadata(result, "feature_store")
    assert store_meta["days_exported"] == [new_day]
    assert store_meta["rows_exported"] == store_meta["online_rows_written"] == ROWS_PER_DAY
    assert store_meta["online_records_deleted"] == ROWS_PER_DAY  # days[1] left the window
    assert store_meta["online_days"] == [days[2], new_day]
    left = sorted(after.index[after["day"] == days[1]])
    assert _online(settings, left)[spec.features.all].isna().all().all()
    # the training set joins the new day's labels again, nothing else, and equals a full build
    assert _metadata(result, "training_set")["reused"] is False
    assert _metadata(result, "training_set")["days_joined"] == [new_day]

    # a full rebuild of the same four days gives the same tables, lake and online values
    full = _settings(tmp_path / "full")
    shutil.copytree(settings.landing_dir, full.landing_dir)
    rebuild = run_pipeline(full, instance, days[0], new_day)
    assert rebuild.success and _metadata(rebuild, "training_set")["days_joined"] == [*days, new_day]
    for name in ("stg_records", "training_set"):
        a = (
            table(settings, name)
            .drop(columns=["_gated_at", "_built_at"], errors="ignore")
            .sort_values("record_id")
        )
        b = (
            table(full, name)
            .drop(columns=["_gated_at", "_built_at"], errors="ignore")
            .sort_values("record_id")
        )
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    for day in [*days, new_day]:
        pd.testing.assert_frame_equal(
            pd.read_parquet(feature_lake.day_file(settings.lake_dir, day)),
            pd.read_parquet(feature_lake.day_file(full.lake_dir, day)),
        )
    online_ids = sorted(after.index[after["day"].isin([days[2], new_day])])
    pd.testing.assert_frame_equal(_online(settings, online_ids), _online(full, online_ids))
    assert warehouse.table_version(settings.warehouse_path, "training_set") == warehouse.table_version(
        full.warehouse_path, "training_set"
    )

    # a window of one day after the newest day is judged again: every held day leaves, so the
    # view is emptied at once and the day written again instead of deleting record by record
    raw = yaml.safe_load(full.dataset_spec_path.read_text())
    raw["features"]["online_ttl_days"] = 1
    full.dataset_spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    shrunk = _metadata(run_pipeline(full, instance, new_day), "feature_store")
    assert shrunk["online_days"] == [new_day] and shrunk["days_exported"] == [new_day]
    assert shrunk["online_records_deleted"] == 2 * ROWS_PER_DAY
    assert shrunk["online_rows_written"] == ROWS_PER_DAY
    newest = sorted(after.index[after["day"] == new_day])
    pd.testing.assert_frame_equal(_online(full, newest), _online(settings, newest))
    gone = sorted(after.index[after["day"] == days[2]])
    assert _online(full, gone)[spec.features.all].isna().all().all()

    # a run stopped after marking the window offline and before emptying the view: the
    # view still holds records the manifest does not; the next run empties it first
    feast_online.write_day(
        _store(full), feature_view_name(spec), feature_lake.day_file(full.lake_dir, days[2]), 50
    )
    manifest_file = feature_lake.manifest_path(full.lake_dir)
    stopped = feature_lake.LakeManifest.read(manifest_file)
    stopped.online.clear()
    stopped.write(manifest_file)
    repaired = run_pipeline(full, instance, new_day, assets=[dg.AssetKey("feature_store")])
    assert repaired.success and _metadata(repaired, "feature_store")["online_days"] == [new_day]
    assert _online(full, gone)[spec.features.all].isna().all().all()
    pd.testing.assert_frame_equal(_online(full, newest), _online(settings, newest))

    # a retrain with nothing new reuses the training set instead of rebuilding it
    retrain = (
        build_definitions(settings)
        .resolve_job_def(RETRAIN_MODEL)
        .execute_in_process(instance=instance, asset_selection=[dg.AssetKey("training_set")])
    )
    assert retrain.success and _metadata(retrain, "training_set")["reused"] is True

    # the ASOF join equals Feast's get_historical_features, also for times before a record's
    # features (no value), after them, and for ids Feast has never seen
    labels = table(settings, "labels").sample(n=90, random_state=0).reset_index(drop=True)
    shift = np.array([pd.Timedelta(0), pd.Timedelta(days=-1), pd.Timedelta(hours=5)] * 30)
    entities = labels[["record_id", "label"]].assign(event_timestamp=labels["event_timestamp"] + shift)
    entities.loc[0, "record_id"] = "never-landed"
    store = _store(settings)
    feast = store.get_historical_features(entity_df=entities, features=feature_references(spec)).to_df()
    files = f"read_parquet('{feature_lake.features_dir(settings.lake_dir) / '*.parquet'}')"
    with warehouse.connect(settings.warehouse_path, read_only=True) as con:
        con.register("entities", entities)
        ours = con.execute(
            point_in_time_sql(spec, "SELECT record_id, event_timestamp, label FROM entities", files)
        ).df()
    # Feast's file offline store drops an entity row whose record has only later features;
    # the ASOF join keeps it, without features (the left join Feast documents)
    key = ["record_id", "event_timestamp"]
    ours = ours.set_index(key).sort_index()
    feast = feast.set_index(key).sort_index()
    dropped = ours.index.difference(feast.index)
    assert len(dropped) == 30 and ours.loc[dropped, spec.features.all].isna().all().all()
    assert ours[spec.features.numeric[0]].isna().sum() == 31  # those, and the unknown id
    ours = ours.loc[feast.index]
    for name in spec.features.numeric:
        np.testing.assert_allclose(ours[name].astype(float), feast[name].astype(float), equal_nan=True)
    for name in spec.features.categorical:
        assert ours[name].fillna("<none>").tolist() == feast[name].fillna("<none>").tolist()
    assert feature_view_name(spec) in {v.name for v in store.list_feature_views()}


@pytest.mark.parametrize("ttl, expected", [(None, 3), (1, 1), (2, 2), (30, 3)])
def test_the_online_window_counts_days_back_from_the_newest(ttl, expected):
    days = ["2026-01-01", "2026-01-02", "2026-01-03"]
    window = feature_lake.online_days(days, ttl)
    assert len(window) == expected and max(days) in window
