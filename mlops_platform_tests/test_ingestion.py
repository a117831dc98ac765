"""raw_data and quarantined_rows on real landing files: accounting, reasons, idempotency, gates."""

import json

import pandas as pd
import pytest

from mlops_platform.lib.landing import read_landing_file, write_landing_file
from mlops_platform_tests.pipeline import (
    INGESTION,
    checks,
    corrupt_landing_file,
    land_reference,
    materialized,
    run_pipeline,
    table,
)


def _rows_of_day(frame: pd.DataFrame, day: str) -> pd.DataFrame:
    return frame[frame["ingestion_date"].dt.strftime("%Y-%m-%d") == day]


def test_bad_rows_are_quarantined_with_reasons_and_nothing_is_lost(adult_settings, instance):
    days = land_reference(adult_settings)
    spec = adult_settings.load_spec()
    numeric, other_numeric = spec.features.numeric[:2]
    categorical = spec.features.categorical[0]
    text = corrupt_landing_file(
        adult_settings,
        days[1],
        {
            (3, numeric): "abc",
            (5, numeric): "1000",
            (8, categorical): "Astronaut",
            (13, spec.label.column): None,
            (21, other_numeric): "4.5",
        },
    )
    result = run_pipeline(adult_settings, instance, days[0], days[1], assets=INGESTION)
    assert result.success
    raw, quarantined = table(adult_settings, "raw_data"), table(adult_settings, "quarantined_rows")
    for day in days[:2]:
        landed = len(read_landing_file(adult_settings.landing_dir / f"{day}.csv"))
        assert len(_rows_of_day(raw, day)) + len(_rows_of_day(quarantined, day)) == landed
    assert set(raw["record_id"]).isdisjoint(quarantined["record_id"])
    assert len(quarantined) == 5
    reasons = " | ".join(quarantined["quarantine_reason"])
    assert f"{numeric}: 'abc' is not a number" in reasons
    assert f"{numeric}: 1000 outside" in reasons
    assert f"{categorical}: 'Astronaut' not in the domain" in reasons
    assert f"{spec.label.column}: missing" in reasons
    assert f"{other_numeric}: '4.5' is not a number of the declared type" in reasons
    # each reason starts with the record's line in the landing file (line 1 is the header)
    assert sorted(quarantined["quarantine_reason"].str.extract(r"^line (\d+): ")[0].astype(int)) == [
        5, 7, 10, 15, 23,
    ]  # fmt: skip
    held = next(e for e in result.get_asset_materialization_events() if e.asset_key == INGESTION[1])
    by_column = held.materialization.metadata["quarantined_by_column"].value
    assert by_column == {numeric: 2, categorical: 1, spec.label.column: 1, other_numeric: 1}
    # the quarantined row keeps its text exactly as it landed
    landed_rows = {
        json.dumps({k: (None if pd.isna(v) else v) for k, v in r.items()}, sort_keys=True)
        for r in text.to_dict("records")
    }
    assert set(quarantined["raw_record"]) <= landed_rows
    evaluations = checks(result)
    assert evaluations["great_expectations_suite"].passed
    assert evaluations["quarantine_rate"].passed
    assert evaluations["quarantine_rate"].metadata["worst_day_fraction"].value == pytest.approx(
        5 / 150, abs=1e-4
    )


def test_rematerializing_a_day_replaces_it_in_the_warehouse_and_the_lake(adult_settings, instance):
    days = land_reference(adult_settings)
    for _ in range(2):
        assert run_pipeline(adult_settings, instance, days[0], assets=INGESTION).success
    assert len(table(adult_settings, "raw_data")) == 150
    # the day's landing file changes: the partition is replaced, not appended to
    path = adult_settings.landing_dir / f"{days[0]}.csv"
    write_landing_file(read_landing_file(path).head(140), adult_settings.landing_dir, days[0])
    assert run_pipeline(adult_settings, instance, days[0], assets=INGESTION).success
    raw = table(adult_settings, "raw_data")
    assert len(raw) == 140 and not raw["record_id"].duplicated().any()
    parquet = list((adult_settings.lake_dir / "raw_data").rglob("*.parquet"))
    assert len(parquet) == 1
    assert len(pd.read_parquet(parquet[0])) == 140
    materializations = instance.fetch_materializations(INGESTION[0], limit=10).records
    assert len(materializations) == 3
    assert materializations[0].asset_materialization.tags["dagster/data_version"]


def test_a_batch_over_the_quarantine_limit_fails_the_gates_and_blocks_downstream(adult_settings, instance):
    days = land_reference(adult_settings)
    numeric = adult_settings.load_spec().features.numeric[0]
    corrupt_landing_file(adult_settings, days[0], {(row, numeric): "not-a-number" for row in range(30)})
    result = run_pipeline(adult_settings, instance, days[0])
    assert not result.success
    assert materialized(result) == {"raw_data", "quarantined_rows"}
    evaluations = checks(result)
    rate = evaluations["quarantine_rate"]
    assert not rate.passed
    assert "quarantined fraction 20.00% exceeds the limit 5.00%" in rate.description
    suite = evaluations["great_expectations_suite"]
    assert not suite.passed
    assert f"expect_column_values_to_match_regex({numeric}) unexpected 30/150" in suite.description
    with pytest.raises(LookupError):
        table(adult_settings, "training_set")


@pytest.mark.parametrize("damage", ["drop_column", "empty_batch"])
def test_schema_and_empty_batches_fail_the_suite(adult_settings, instance, damage):
    days = land_reference(adult_settings)
    path = adult_settings.landing_dir / f"{days[0]}.csv"
    text = read_landing_file(path)
    spec = adult_settings.load_spec()
    text = text.drop(columns=[spec.features.categorical[-1]]) if damage == "drop_column" else text.head(0)
    write_landing_file(text, adult_settings.landing_dir, days[0])
    result = run_pipeline(adult_settings, instance, days[0], assets=INGESTION)
    suite = checks(result)["great_expectations_suite"]
    assert not suite.passed
    expected = (
        "expect_table_columns_to_match_set"
        if damage == "drop_column"
        else "expect_table_row_count_to_be_between"
    )
    assert expected in suite.description
    # no row of the day lands in raw_data; a missing column quarantines every row, naming it
    assert _rows_of_day(table(adult_settings, "raw_data"), days[0]).empty
    held = _rows_of_day(table(adult_settings, "quarantined_rows"), days[0])
    assert len(held) == len(text)
    missing = f"column {spec.features.categorical[-1]} missing from {path}"
    assert held["quarantine_reason"].str.endswith(missing).all()


def test_a_missing_landing_file_fails_with_what_to_do(adult_settings, instance):
    result = run_pipeline(adult_settings, instance, "2026-01-01", assets=INGESTION)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "mlops simulate-batches" in str(failure.event_specific_data.error)


def test_suite_outcomes_are_reused_only_while_the_file_is_unchanged(adult_settings, monkeypatch):
    from mlops_platform.lib import ingestion

    day = land_reference(adult_settings)[0]
    spec, folder = adult_settings.load_spec(), adult_settings.validations_dir
    first = ingestion.ingest_day(adult_settings.landing_dir, spec, day, folder)
    assert first.validation.success and len(list(folder.glob(f"{day}-*.pickle"))) == 1

    def no_second_run(*args: object) -> None:
        raise AssertionError("Great Expectations ran again on an unchanged file")

    monkeypatch.setattr(ingestion, "run_suites", no_second_run)
    again = ingestion.ingest_day(adult_settings.landing_dir, spec, day, folder)
    assert again.validation.row_reasons.equals(first.validation.row_reasons)

    monkeypatch.undo()
    column = spec.features.numeric[0]
    corrupt_landing_file(adult_settings, day, {(0, column): "not a number"})
    changed = ingestion.ingest_day(adult_settings.landing_dir, spec, day, folder)
    assert column in changed.validation.row_reasons.iloc[0] and len(changed.quarantined) == 1
    assert len(list(folder.glob(f"{day}-*.pickle"))) == 1  # the outcome of the old file is gone
