"""raw_data and quarantined_rows on real landing files: accounting, reasons, idempotency, gates."""

import json

import dagster as dg
import pandas as pd
import pytest

from mlops_platform.definitions import build_definitions
from mlops_platform.defs.jobs import DATA_PIPELINE
from mlops_platform.lib import ingestion, warehouse
from mlops_platform.lib.landing import read_landing_file, write_landing_file
from mlops_platform.settings import Settings
from mlops_platform_tests.datasets import write_adult_spec
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


def test_a_run_of_several_days_validates_and_writes_one_day_at_a_time(adult_settings, instance, monkeypatch):
    """The frames handed to the warehouse never hold more than one day, and Great
    Expectations runs once per day (the gates read what ingestion recorded)."""
    days = land_reference(adult_settings)
    numeric = adult_settings.load_spec().features.numeric[0]
    corrupt_landing_file(adult_settings, days[1], {(3, numeric): "abc", (9, numeric): "1000"})
    writes, validated = [], []

    def write_partitions(con, table, frame, partition_column, partitions):
        writes.append((table, list(partitions), sorted(set(frame[partition_column].dt.strftime("%Y-%m-%d")))))
        real_write_partitions(con, table, frame, partition_column, partitions)

    def run_suites(text, records, spec):
        validated.append(sorted(set(records["ingestion_date"].dt.strftime("%Y-%m-%d"))))
        return real_run_suites(text, records, spec)

    real_write_partitions, real_run_suites = warehouse.write_partitions, ingestion.run_suites
    monkeypatch.setattr(warehouse, "write_partitions", write_partitions)
    monkeypatch.setattr(ingestion, "run_suites", run_suites)
    result = run_pipeline(adult_settings, instance, days[0], days[-1], assets=INGESTION)
    assert result.success and all(e.passed for e in checks(result).values())
    assert validated == [[day] for day in days]
    assert writes == [
        (name, [day], [day] if name == "raw_data" or day == days[1] else [])
        for day in days
        for name in ("raw_data", "quarantined_rows")
    ]
    assert len(table(adult_settings, "raw_data")) == 4 * 150 - 2
    assert len(table(adult_settings, "quarantined_rows")) == 2


def _gates_only(settings: Settings, instance: dg.DagsterInstance, first: str, last: str):
    """Run the gates on raw_data over first..last, without ingesting anything."""
    defs = build_definitions(settings)
    gates = dg.AssetSelection.checks_for_assets(INGESTION[0]).resolve_checks(defs.resolve_asset_graph())
    job = defs.resolve_job_def(DATA_PIPELINE).get_subset(asset_selection=set(), asset_check_selection=gates)
    result = job.execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        raise_on_error=False,
    )
    return checks(result)


def test_the_suite_gate_fails_a_day_whose_recorded_validation_is_missing_or_stale(
    adult_settings, instance, tmp_path
):
    days = land_reference(adult_settings)
    assert run_pipeline(adult_settings, instance, days[0], days[-1], assets=INGESTION).success
    assert all(e.passed for e in _gates_only(adult_settings, instance, days[0], days[-1]).values())

    # day 0's record is gone; day 1's file is landed again (the same rows); a row of day 2
    # changed in raw_data; day 3 is untouched
    with warehouse.connect(adult_settings.warehouse_path) as con:
        con.execute("DELETE FROM raw_data_validations WHERE ingestion_date = CAST(? AS DATE)", [days[0]])
        con.execute(
            "UPDATE raw_data SET age = 99 WHERE record_id = (SELECT min(record_id) FROM raw_data "
            "WHERE CAST(ingestion_date AS DATE) = CAST(? AS DATE))",
            [days[2]],
        )
    relanded = adult_settings.landing_dir / f"{days[1]}.csv"
    write_landing_file(read_landing_file(relanded), adult_settings.landing_dir, days[1])
    gates = _gates_only(adult_settings, instance, days[0], days[-1])
    failures = gates["great_expectations_suite"].metadata["failures"].value
    assert not gates["great_expectations_suite"].passed and len(failures) == 3
    assert failures[0] == (
        f"{days[0]}: no validation is recorded with raw_data: materialize raw_data for {days[0]}"
    )
    assert failures[1].startswith(f"{days[1]}: {relanded} is not the file raw_data was validated from")
    assert failures[1].endswith(f"materialize raw_data for {days[1]} again")
    assert failures[2] == (
        f"{days[2]}: the rows of raw_data for {days[2]} changed after they were validated: "
        f"materialize raw_data for {days[2]} again"
    )
    assert gates["quarantine_rate"].metadata["days"].value.keys() == set(days[1:])
    assert gates["quarantine_rate"].description == (
        f"{days[0]}: no landed count is recorded with raw_data: materialize raw_data for {days[0]}"
    )
    verdicts = warehouse.query(
        adult_settings.warehouse_path,
        "SELECT strftime(ingestion_date, '%Y-%m-%d') AS day, passed FROM raw_data_gates "
        "WHERE check_name = 'great_expectations_suite' ORDER BY day",
    )
    assert verdicts["passed"].tolist() == [False, False, False, True]

    # judged by another version of the spec, the untouched day fails too
    spec_path = write_adult_spec(tmp_path / "other", 150, 4, description="The same data, another spec.")
    other = Settings(home=adult_settings.home, dataset_spec_path=spec_path)
    suite = _gates_only(other, instance, days[-1], days[-1])["great_expectations_suite"]
    assert not suite.passed
    assert suite.description == (
        f"{days[-1]}: raw_data was validated under another version of dataset spec 'adult': "
        f"materialize raw_data for {days[-1]} again"
    )


@pytest.mark.parametrize(
    ("tamper", "problems"),
    [
        ("UPDATE raw_data SET record_id = 'forged' WHERE record_id = (SELECT min(record_id) FROM raw_data)",
         ["raw 145 + quarantined 5 != landed 150"]),
        ("DELETE FROM raw_data WHERE record_id = (SELECT min(record_id) FROM raw_data)",
         ["raw 144 + quarantined 5 != landed 150"]),
        ("UPDATE raw_data SET record_id = (SELECT min(record_id) FROM quarantined_rows) "
         "WHERE record_id = (SELECT min(record_id) FROM raw_data)",
         ["1 records are both kept and quarantined", "raw 145 + quarantined 5 != landed 150"]),
    ],
)  # fmt: skip
def test_the_quarantine_gate_counts_ids_against_those_landed(adult_settings, instance, tamper, problems):
    day = land_reference(adult_settings)[0]
    numeric = adult_settings.load_spec().features.numeric[0]
    corrupt_landing_file(adult_settings, day, {(row, numeric): "abc" for row in range(5)})
    assert run_pipeline(adult_settings, instance, day, assets=INGESTION).success
    with warehouse.connect(adult_settings.warehouse_path) as con:
        con.execute(tamper)
    rate = _gates_only(adult_settings, instance, day, day)["quarantine_rate"]
    assert not rate.passed
    assert rate.description == "; ".join(f"{day}: {problem}" for problem in problems)


def test_a_day_version_read_in_the_transaction_that_creates_the_table_is_the_stored_one(tmp_path):
    """More rows than one DuckDB row group, written by the transaction that creates the table."""
    rows = 130_000
    frame = pd.DataFrame(
        {
            "record_id": pd.array([f"r{i}" for i in range(rows)], dtype="string"),
            "value": pd.array(range(rows), dtype="Int64"),
            "ingestion_date": pd.Timestamp("2026-01-01"),
        }
    )
    path = tmp_path / "warehouse.duckdb"
    with warehouse.connect(path) as con:
        con.execute("BEGIN TRANSACTION")
        warehouse.write_partitions(con, "raw_data", frame, "ingestion_date", ["2026-01-01"])
        written = warehouse.partition_version(con, "raw_data", "ingestion_date", "2026-01-01")
        con.execute("COMMIT")
    with warehouse.connect(path, read_only=True) as con:
        assert warehouse.partition_version(con, "raw_data", "ingestion_date", "2026-01-01") == written
    assert warehouse.query(path, "SELECT sum(value) AS total FROM raw_data")["total"][0] == sum(range(rows))
