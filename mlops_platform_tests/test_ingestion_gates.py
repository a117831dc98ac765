"""A day that failed its blocking gates stays out of every later run, until it passes.

`raw_data` is written before its gates judge it; the gates' verdicts per day
(`raw_data_gates`) decide which days `stg_records`, and so features, the online store and
the training set, are built from.
"""

import dagster as dg
import pandas as pd

from mlops_platform.definitions import build_definitions
from mlops_platform.defs.ingestion.checks import RAW_DATA_GATES
from mlops_platform.defs.jobs import RETRAIN_MODEL
from mlops_platform.feature_repo.definitions import feature_references
from mlops_platform.lib import warehouse
from mlops_platform.lib.landing import landing_path, read_landing_file, write_landing_file
from mlops_platform.resources.feast import FeastResource
from mlops_platform.settings import Settings
from mlops_platform_tests.pipeline import (
    DATA_HALF,
    checks,
    corrupt_landing_file,
    land_reference,
    materialized,
    run_pipeline,
    table,
)


def _ids_of_day(settings: Settings, name: str, day: str) -> set[str]:
    frame = table(settings, name)
    return set(frame.loc[frame["ingestion_date"].dt.strftime("%Y-%m-%d") == day, "record_id"])


def _downstream_ids(settings: Settings) -> dict[str, set[str]]:
    """Record ids in every model built from stg_records."""
    return {
        "stg_records": set(table(settings, "stg_records")["record_id"]),
        "labels": set(table(settings, "labels")["record_id"]),
        "features (lake)": set(pd.read_parquet(settings.lake_dir / "features")["record_id"]),
        "training_set": set(table(settings, "training_set")["record_id"]),
    }


def _verdicts(settings: Settings, day: str) -> dict[str, bool]:
    rows = warehouse.query(
        settings.warehouse_path,
        "SELECT check_name, passed FROM raw_data_gates WHERE ingestion_date = CAST(? AS DATE)",
        [day],
    )
    return dict(zip(rows["check_name"], rows["passed"], strict=True))


def test_the_gates_recorded_are_the_blocking_checks_on_raw_data(adult_settings):
    graph = build_definitions(adult_settings).resolve_asset_graph()
    blocking = {
        key.name
        for key in graph.asset_check_keys
        if key.asset_key == dg.AssetKey("raw_data") and graph.get_check_spec(key).blocking
    }
    assert blocking == set(RAW_DATA_GATES)


def test_a_failed_day_never_reaches_training_until_it_is_re_landed_and_passes(adult_settings, instance):
    days = land_reference(adult_settings)
    spec = adult_settings.load_spec()
    failed, clean = days[1], days[2:]
    original = read_landing_file(landing_path(adult_settings.landing_dir, failed))
    corrupt = {(row, "age"): ["inf", "not-a-number", "٣٥"][row % 3] for row in range(15)}  # 10%
    corrupt_landing_file(adult_settings, failed, corrupt)

    # the failed day: its good rows land in raw_data, its gates fail, nothing downstream runs
    result = run_pipeline(adult_settings, instance, failed)
    assert not result.success
    assert materialized(result) == {"raw_data", "quarantined_rows"}
    assert not checks(result)["quarantine_rate"].passed
    landed_then = _ids_of_day(adult_settings, "raw_data", failed)
    assert len(landed_then) == 135
    assert _verdicts(adult_settings, failed) == dict.fromkeys(RAW_DATA_GATES, False)

    # a clean run of other days later: none of the failed day's rows reach any model
    result = run_pipeline(adult_settings, instance, clean[0], clean[-1])
    assert result.success and materialized(result) == DATA_HALF
    downstream = _downstream_ids(adult_settings)
    for name, ids in downstream.items():
        assert not ids & landed_then, f"{name} holds rows of the failed day {failed}"
    assert len(downstream["training_set"]) == 300
    store = FeastResource(project=spec.name, repo_dir=str(adult_settings.feast_dir)).store()
    sample = sorted(landed_then)[:20]
    online = store.get_online_features(feature_references(spec), [{"record_id": r} for r in sample]).to_dict()
    assert all(value is None for value in online[spec.features.numeric[0]])

    # the day re-landed clean and run again: it passes and its rows join the training set
    write_landing_file(original, adult_settings.landing_dir, failed)
    result = run_pipeline(adult_settings, instance, failed)
    assert result.success
    assert _verdicts(adult_settings, failed) == dict.fromkeys(RAW_DATA_GATES, True)
    passed_ids = _ids_of_day(adult_settings, "raw_data", failed)
    assert len(passed_ids) == 150
    downstream = _downstream_ids(adult_settings)
    assert all(passed_ids <= ids for ids in downstream.values())
    assert len(downstream["training_set"]) == 450

    # re-ingesting the day crashes (not UTF-8) after its verdicts were cleared: its rows still
    # in raw_data and in the dbt models (dbt did not run) are no longer gated, so a retrain
    # that rebuilds only training_set leaves them out, and so does the next run of another day
    landing_path(adult_settings.landing_dir, failed).write_bytes(b"age,fnlwgt\n\xff\n")
    result = run_pipeline(adult_settings, instance, failed)
    assert not result.success and materialized(result) == set()
    assert _verdicts(adult_settings, failed) == {}
    assert _ids_of_day(adult_settings, "raw_data", failed) == passed_ids
    assert passed_ids <= set(table(adult_settings, "labels")["record_id"])
    retrain = (
        build_definitions(adult_settings)
        .resolve_job_def(RETRAIN_MODEL)
        .execute_in_process(instance=instance, asset_selection=[dg.AssetKey("training_set")])
    )
    assert retrain.success
    assert len(table(adult_settings, "training_set")) == 300
    assert not set(table(adult_settings, "training_set")["record_id"]) & passed_ids
    assert run_pipeline(adult_settings, instance, clean[-1]).success
    assert all(not ids & passed_ids for ids in _downstream_ids(adult_settings).values())
