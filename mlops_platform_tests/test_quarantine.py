"""Row-level quarantine on real landing files, Great Expectations and the spec's rules.

Every bad cell, ragged line or missing column becomes a quarantined row with a reason that
names the column and the line (line 1 = header); nothing crashes the day and nothing is
lost: raw + quarantined = landed, exactly.
"""

import csv
import dataclasses
import io
import json
import re

import numpy as np
import pandas as pd
import pytest

from mlops_platform.datasets.spec import ColumnSpec, DatasetSpec
from mlops_platform.lib.expectations import RulesDisagree, run_suites, validate_batch
from mlops_platform.lib.ingestion import IngestedDay, ingest_day, read_day
from mlops_platform.lib.landing import landing_path, read_landing_file, simulate_batches, write_landing_file
from mlops_platform.settings import Settings
from mlops_platform_tests.datasets import write_adult_spec
from mlops_platform_tests.pipeline import corrupt_landing_file, land_reference

ROW = 7  # the damaged record; it starts on line ROW + 2 (line 1 is the header)
NUMBER = "is not a number of the declared type"


def _ingest(settings: Settings, day: str) -> IngestedDay:
    return ingest_day(settings.landing_dir, settings.load_spec(), day)


def _assert_accounted(settings: Settings, day: str, ingested: IngestedDay) -> None:
    ids = read_day(settings.landing_dir, settings.load_spec(), day)[1]["record_id"]
    assert ingested.landed == len(ids) == len(ingested.valid) + len(ingested.quarantined)
    assert set(ingested.valid["record_id"]).isdisjoint(ingested.quarantined["record_id"])
    assert set(ingested.valid["record_id"]) | set(ingested.quarantined["record_id"]) == set(ids)


@pytest.mark.parametrize(
    ("column", "cell", "reason", "kept_as"),
    [
        ("age", "inf", f"age: 'inf' {NUMBER} (integer", None),
        ("age", "-inf", f"age: '-inf' {NUMBER} (integer", None),
        ("age", "nan", f"age: 'nan' {NUMBER} (integer", None),
        ("age", "NaN", f"age: 'NaN' {NUMBER} (integer", None),
        ("fnlwgt", "12345678901234567890", f"fnlwgt: '12345678901234567890' {NUMBER}", None),
        ("fnlwgt", "9223372036854775808", f"fnlwgt: '9223372036854775808' {NUMBER}", None),
        ("age", "٣٥", f"age: '٣٥' {NUMBER}", None),  # Arabic-Indic digits
        ("age", "３５", f"age: '３５' {NUMBER}", None),  # fullwidth digits
        ("age", "1e3", f"age: '1e3' {NUMBER}", None),
        ("age", "35\n", f"age: '35\\n' {NUMBER}", None),
        ("age", " ", f"age: ' ' {NUMBER}", None),
        ("age", None, "age: missing", None),
        ("age", "150", "age: 150 outside [17, 90]", None),
        ("education", "NaN", "education: 'NaN' not in the domain", None),
        ("age", " +035.000\t", None, 35),
        ("fnlwgt", "999999999999999999", None, 999_999_999_999_999_999),
    ],
)
def test_each_bad_cell_quarantines_its_row_naming_column_and_line(
    adult_settings, column, cell, reason, kept_as
):
    day = land_reference(adult_settings)[0]
    text = corrupt_landing_file(adult_settings, day, {(ROW, column): cell})
    ingested = _ingest(adult_settings, day)
    _assert_accounted(adult_settings, day, ingested)
    if reason is None:
        assert ingested.quarantined.empty
        assert ingested.valid[column].iloc[ROW] == kept_as
        return
    reasons = ingested.quarantined["quarantine_reason"].tolist()
    assert len(reasons) == 1 and reasons[0].startswith(f"line {ROW + 2}: {reason}")
    landed = {k: (None if pd.isna(v) else v) for k, v in text.iloc[ROW].items()}
    assert json.loads(ingested.quarantined["raw_record"].iloc[0]) == landed
    assert len(ingested.valid) == len(text) - 1


@pytest.mark.parametrize(
    ("column", "cell", "reason", "kept_as"),
    [
        ("temperature", "1e999", "temperature: '1e999' is not a finite number", None),
        ("temperature", "-1e999", "temperature: '-1e999' is not a finite number", None),
        ("temperature", "inf", f"temperature: 'inf' {NUMBER} (float", None),
        ("temperature", "nan", f"temperature: 'nan' {NUMBER} (float", None),
        ("temperature", "151.5", "temperature: 151.5 outside [-40, 150]", None),
        (
            "measured_at",
            "2025-02-30T00:00:00Z",
            "measured_at: '2025-02-30T00:00:00Z' is not an ISO 8601",
            None,
        ),
        ("pressure", "٩٠٠", f"pressure: '٩٠٠' {NUMBER}", None),
        ("temperature", None, None, None),  # nullable: kept, missing
        ("temperature", "1.5e2", None, 150.0),
    ],
)
def test_float_and_timestamp_cells_of_a_second_dataset(sensor_settings, column, cell, reason, kept_as):
    spec = sensor_settings.load_spec()
    day = simulate_batches(spec, sensor_settings.landing_dir, days=1)[0].stem
    corrupt_landing_file(sensor_settings, day, {(ROW, column): cell})
    ingested = _ingest(sensor_settings, day)
    _assert_accounted(sensor_settings, day, ingested)
    if reason is None:
        assert ingested.quarantined.empty
        value = ingested.valid[column].iloc[ROW]
        assert (pd.isna(value) and kept_as is None) or value == kept_as
        return
    reasons = ingested.quarantined["quarantine_reason"].tolist()
    assert len(reasons) == 1 and reasons[0].startswith(f"line {ROW + 2}: {reason}")


def test_ragged_lines_are_quarantined_as_landed_with_stable_ids(adult_settings):
    day = land_reference(adult_settings)[0]
    path = landing_path(adult_settings.landing_dir, day)
    lines = path.read_text().splitlines()
    long_line, short_line = lines[4] + ",surplus", ",".join(lines[8].split(",")[:5])
    lines[4], lines[8] = long_line, short_line
    path.write_text("\n".join(lines) + "\n")

    first, again = _ingest(adult_settings, day), _ingest(adult_settings, day)
    _assert_accounted(adult_settings, day, first)
    held = first.quarantined
    assert held["quarantine_reason"].tolist() == [
        "line 5: 16 fields where the header has 15",
        "line 9: 5 fields where the header has 15",
    ]
    assert held["raw_record"].tolist() == [long_line, short_line]
    assert held["record_id"].is_unique and held["record_id"].notna().all()
    assert held["record_id"].tolist() == again.quarantined["record_id"].tolist()
    assert first.valid["record_id"].tolist() == again.valid["record_id"].tolist()
    assert first.validation.quarantined_by_column == {"(ragged line)": 2}


def test_a_quote_left_open_quarantines_each_line_it_swallows(adult_settings):
    day = land_reference(adult_settings)[0]
    path = landing_path(adult_settings.landing_dir, day)
    lines = path.read_text().splitlines()
    lines[141] = '"' + lines[141]  # record 140 opens a quote that nothing closes
    path.write_text("\n".join(lines) + "\n")
    ingested = _ingest(adult_settings, day)
    _assert_accounted(adult_settings, day, ingested)
    assert ingested.landed == 150 and len(ingested.valid) == 140
    assert ingested.quarantined["raw_record"].tolist() == lines[141:]
    assert (
        ingested.quarantined["quarantine_reason"]
        .str.endswith("spans lines 142-151 (a quote left open?)")
        .all()
    )


def test_a_missing_column_quarantines_every_row_and_lands_no_nulls(adult_settings):
    day = land_reference(adult_settings)[0]
    path = landing_path(adult_settings.landing_dir, day)
    column = "workclass"  # nullable: filling it with NULL would have passed every row rule
    spec = adult_settings.load_spec()
    assert spec.columns[column].nullable
    write_landing_file(read_landing_file(path).drop(columns=[column]), adult_settings.landing_dir, day)
    ingested = _ingest(adult_settings, day)
    _assert_accounted(adult_settings, day, ingested)
    assert ingested.valid.empty
    reasons = ingested.quarantined["quarantine_reason"]
    assert reasons.str.contains(f"column {column} missing from {path}", regex=False).all()
    assert ingested.quarantined["quarantine_reason"].iloc[0].startswith("line 2: ")
    assert not ingested.validation.success
    failed = {(o.expectation, o.column) for o in ingested.validation.failed()}
    assert ("expect_table_columns_to_match_set", None) in failed


def test_every_one_of_250_rows_breaking_a_rule_is_quarantined(tmp_path):
    spec_path = write_adult_spec(tmp_path / "specs", rows_per_day=400, reference_days=1)
    settings = Settings(home=tmp_path / "home", dataset_spec_path=spec_path)
    day = land_reference(settings)[0]
    corrupt_landing_file(settings, day, {(row, "age"): "150" for row in range(250)})
    ingested = _ingest(settings, day)
    _assert_accounted(settings, day, ingested)
    assert len(ingested.quarantined) == 250 and len(ingested.valid) == 150
    assert (ingested.valid["age"] != 150).all()
    between = next(
        o
        for o in ingested.validation.outcomes
        if o.expectation == "expect_column_values_to_be_between" and o.column == "age"
    )
    assert between.unexpected_count == 250 and not between.success


def test_a_disagreement_between_the_rules_and_great_expectations_stops_validation(adult_settings):
    day = land_reference(adult_settings)[0]
    corrupt_landing_file(adult_settings, day, {(ROW, "age"): "150"})
    spec = adult_settings.load_spec()
    landed, records = read_day(adult_settings.landing_dir, spec, day)
    outcomes = run_suites(landed.text, records, spec)
    assert validate_batch(landed, records, spec, outcomes).row_reasons.ne("").sum() == 1
    tampered = [
        dataclasses.replace(o, unexpected_count=0) if o.column == "age" and "between" in o.expectation else o
        for o in outcomes
    ]
    with pytest.raises(
        RulesDisagree, match=r"expect_column_values_to_be_between\(age\): Great Expectations 0, rules 1"
    ):
        validate_batch(landed, records, spec, tampered)


# A seeded fuzz of landing cells (hypothesis is not a dependency): garbage into random cells
# of a valid day, and some ragged lines. An independent oracle below says which rows are valid.
_GARBAGE = [
    "", " ", "  ", "\t7", "7\n", "inf", "-inf", "nan", "NaN", "None", "null", "1e3", "4.5", "42",
    " 42 ", "+42", "42.000", "0042", "-1", "17", "90", "91", "٣٥", "３５", "12345678901234567890",
    "999999999999999999", "1_000", "0x1F", "1,000", "Private", "Private ", "private", "Male", "<=50K",
    ">50K", "?", ",", '"', '""', "a,b", "line\nbreak", "\r", "x\r\ny", "\u00a0", "\x00", "🙂", "Ⅻ",
]  # fmt: skip
_ALPHABET = [*"0123456789 .,-+eE\"'\n\rxyzé٣３\t", "🙂"]


def _garbage(rng: np.random.Generator) -> str | None:
    pick = rng.random()
    if pick < 0.6:
        cell = _GARBAGE[rng.integers(len(_GARBAGE))]
        return None if cell == "" else cell
    if pick < 0.8:
        return str(rng.integers(-200, 200_000))
    return "".join(rng.choice(_ALPHABET, size=rng.integers(1, 12)))


def _oracle_cell(cell: str | None, column: ColumnSpec) -> bool:
    """Whether a landed cell is valid for its column, written apart from the platform's rules."""
    if cell is None:
        return column.nullable
    if column.type == "integer":
        value = _oracle_integer(cell)
        if value is None:
            return False
        return (column.min is None or value >= column.min) and (column.max is None or value <= column.max)
    return column.domain is None or cell in column.domain


def _oracle_integer(cell: str) -> int | None:
    """ASCII digits with optional sign, blanks and `.0`; at most 18 significant digits."""
    match = re.fullmatch(r"[ \t]*([-+]?)0*([0-9]+)(?:\.0*)?[ \t]*", cell)
    if match is None or len(match.group(2)) > 18:
        return None
    return int(match.group(1) + match.group(2))


def _render(rows: list[list[str | None]]) -> tuple[list[str], list[int]]:
    """Each record as CSV (CRLF, as the platform writes) and the line it starts on."""
    texts, starts, line = [], [], 2
    for row in rows:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerow(["" if c is None else c for c in row])
        texts.append(buffer.getvalue())
        starts.append(line)
        line += len(io.StringIO(buffer.getvalue(), newline="").readlines())
    return texts, starts


def _fuzz_day(rng: np.random.Generator, header: list[str], clean: pd.DataFrame, spec: DatasetSpec):
    """Rows with garbage in random cells and a few ragged rows; which rows are valid; which ragged."""
    rows = [[None if pd.isna(v) else v for v in row] for row in clean.itertuples(index=False, name=None)]
    for _ in range(rng.integers(1, 25)):
        rows[rng.integers(len(rows))][rng.integers(len(header))] = _garbage(rng)
    ragged = {int(i) for i in rng.choice(len(rows), size=rng.integers(0, 3), replace=False)}
    for i in ragged:
        rows[i] = [*rows[i], "surplus"] if rng.random() < 0.5 else rows[i][: rng.integers(1, len(header))]
    valid = np.array(
        [
            i not in ragged
            and all(_oracle_cell(c, spec.columns[h]) for h, c in zip(header, row, strict=True))
            for i, row in enumerate(rows)
        ]
    )
    return rows, valid, ragged


def test_fuzzed_landing_cells_never_crash_a_day_and_lose_nothing(adult_settings):
    day = land_reference(adult_settings)[0]
    spec = adult_settings.load_spec()
    path = landing_path(adult_settings.landing_dir, day)
    clean = read_landing_file(path)
    header = list(clean.columns)
    integers = [h for h in header if spec.columns[h].type == "integer"]
    rng = np.random.default_rng(20260101)
    quarantined_rows = 0
    for _ in range(30):
        rows, valid, ragged = _fuzz_day(rng, header, clean, spec)
        texts, starts = _render(rows)
        path.write_text(",".join(header) + "\r\n" + "".join(texts), newline="")
        ingested = _ingest(adult_settings, day)
        _assert_accounted(adult_settings, day, ingested)
        ids = read_day(adult_settings.landing_dir, spec, day)[1]["record_id"].tolist()
        assert set(ingested.valid["record_id"]) == {rid for rid, ok in zip(ids, valid, strict=True) if ok}
        position = {rid: i for i, rid in enumerate(ids)}
        for rid, reason, raw in ingested.quarantined[
            ["record_id", "quarantine_reason", "raw_record"]
        ].itertuples(index=False):
            i = position[rid]
            assert not valid[i] and reason.startswith(f"line {starts[i]}: ")
            if i in ragged:
                assert raw == texts[i].removesuffix("\r\n")
            else:
                assert json.loads(raw) == dict(zip(header, rows[i], strict=True))
        for record in ingested.valid.itertuples(index=False):  # typed exactly as landed
            row = rows[position[record.record_id]]
            for name in integers:
                assert getattr(record, name) == _oracle_integer(row[header.index(name)])
        quarantined_rows += len(ingested.quarantined)
    assert quarantined_rows > 100  # the fuzz did damage rows


def test_great_expectations_in_chunks_gives_the_verdict_on_the_whole_day(sensor_settings):
    """Chunks split copies of an id apart in file order; they are still counted together."""
    spec = sensor_settings.load_spec()
    day = simulate_batches(spec, sensor_settings.landing_dir, days=1)[0].stem
    text = read_landing_file(landing_path(sensor_settings.landing_dir, day))
    edits = {(row, "device_id"): text.loc[row - 100, "device_id"] for row in (100, 150, 199)}
    edits |= {(row, "temperature"): "151.5" for row in range(0, 180, 20)}  # 9: under 5% of those present
    edits |= {(row, "region"): "mars" for row in range(5, 200, 10)}  # 20: over the limit
    corrupt_landing_file(sensor_settings, day, edits)
    landed, records = read_day(sensor_settings.landing_dir, spec, day)
    whole = run_suites(landed.text, records, spec)
    chunked = run_suites(landed.text, records, spec, chunk_rows=30)
    assert chunked == whole
    outcomes = {(o.expectation, o.column): o for o in whole}
    unique = outcomes[("expect_column_values_to_be_unique", "record_id")]
    assert (unique.unexpected_count, unique.element_count, unique.success) == (6, 200, False)
    between = outcomes[("expect_column_values_to_be_between", "temperature")]
    assert (between.unexpected_count, between.success) == (9, True)
    in_set = outcomes[("expect_column_values_to_be_in_set", "region")]
    assert (in_set.unexpected_count, in_set.success) == (20, False)
    rows = outcomes[("expect_table_row_count_to_be_between", None)]
    assert (rows.observed, rows.success) == ("(observed: 200)", True)
    validation = validate_batch(landed, records, spec, chunked)  # the rules agree with the chunks
    assert validation.row_reasons.ne("").sum() == 6 + 9 + 20 - 2  # rows 0 and 100 break two rules
