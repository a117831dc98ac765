"""Landing files: deterministic simulated days, shifts, parsing as landed, and clear errors."""

import pandas as pd
import pytest

from mlops_platform.lib.landing import (
    LandingFileError,
    Shift,
    apply_shifts,
    landed_days,
    parse_landing_file,
    read_landing_file,
    simulate_batches,
    write_landing_file,
)


def test_reference_period_then_batches_continue_day_after_day(adult_settings):
    spec = adult_settings.load_spec()
    simulate_batches(spec, adult_settings.landing_dir, days=0, reference=True)
    assert landed_days(adult_settings.landing_dir) == ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]
    simulate_batches(spec, adult_settings.landing_dir, days=2)
    days = landed_days(adult_settings.landing_dir)
    assert days[-2:] == ["2026-01-05", "2026-01-06"]
    batch = read_landing_file(adult_settings.landing_dir / "2026-01-05.csv")
    assert len(batch) == 150
    assert list(batch.columns) == list(spec.columns)


def test_the_same_day_always_lands_the_same_records(adult_settings, tmp_path):
    spec = adult_settings.load_spec()
    first = simulate_batches(spec, tmp_path / "a", days=0, reference=True)
    second = simulate_batches(spec, tmp_path / "b", days=0, reference=True)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    days = [read_landing_file(p) for p in first]
    assert not pd.concat(days).duplicated().sum() > 1  # disjoint slices of the source


def test_running_out_of_source_rows_says_how_many_there_are(adult_settings):
    spec = adult_settings.load_spec()
    with pytest.raises(ValueError, match="48842 rows"):
        simulate_batches(spec, adult_settings.landing_dir, days=10_000)


def test_shifts_move_numeric_columns_within_range_and_set_categories(adult_settings):
    spec = adult_settings.load_spec()
    batch = pd.DataFrame({"age": ["20", "85", None], "sex": ["Male", "Male", "Male"]}, dtype="string")
    shifted = apply_shifts(batch, [Shift.parse("age=+15"), Shift.parse("sex=Female:1")], spec, seed=0)
    assert shifted["age"].tolist()[:2] == ["35", "90"]  # clipped to the spec's max
    assert shifted["age"].isna().iloc[2]
    assert set(shifted["sex"]) == {"Female"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("age", "expected COLUMN"),
        ("age=+x", "not a number"),
        ("sex=Female:2", "fraction"),
        ("salary=+3", "not a column"),
        ("sex=+3", "categorical"),
        ("age=old", "numeric"),
        ("sex=Other", "domain"),
    ],
)
def test_bad_shifts_are_refused_with_the_reason(adult_settings, text, message):
    spec = adult_settings.load_spec()
    batch = pd.DataFrame({"age": ["20"], "sex": ["Male"]}, dtype="string")
    with pytest.raises(ValueError, match=message):
        apply_shifts(batch, [Shift.parse(text)], spec, seed=0)


def test_cells_with_line_breaks_quotes_and_commas_round_trip_through_a_landing_file(tmp_path):
    cells = ["x\ry", "p\nq", "r\r\ns", None, " ", '"', "a,b", "٣٥", "\x00"]
    batch = pd.DataFrame({"a": cells, "b": [str(i) for i in range(len(cells))]})
    landed = parse_landing_file(write_landing_file(batch, tmp_path, "2026-01-01"))
    assert landed.text["a"].tolist() == cells
    assert landed.well_formed.all()
    # a record starts on the line after the previous one ended (line 1 is the header)
    assert landed.lines.tolist() == [2, 4, 6, 8, 9, 10, 11, 12, 13]


def test_ragged_records_are_kept_as_landed_with_their_line(tmp_path):
    path = tmp_path / "2026-01-01.csv"
    path.write_text('a,b,c\n1,2,3\n4,5,6,7\n\n8,9\n"multi\nline",10,11,12\n13,14,15\n')
    landed = parse_landing_file(path)
    assert landed.lines.tolist() == [2, 3, 5, 6, 7, 8]  # the blank line 4 holds no record
    assert landed.well_formed.tolist() == [True, False, False, False, False, True]
    assert landed.ragged.dropna().tolist() == ["4,5,6,7", "8,9", '"multi', 'line",10,11,12']
    assert landed.faults.dropna().tolist() == [
        "4 fields where the header has 3",
        "2 fields where the header has 3",
        *["one record of 4 fields where the header has 3 spans lines 6-7 (a quote left open?)"] * 2,
    ]
    assert landed.text.iloc[[0, 5]].to_numpy().tolist() == [["1", "2", "3"], ["13", "14", "15"]]
    assert landed.text.iloc[1:5].isna().all(axis=None)
    with pytest.raises(LandingFileError, match=r"2026-01-01\.csv: line 3: 4 fields where the header has 3"):
        read_landing_file(path)


def test_a_quote_left_open_turns_each_line_it_swallows_into_a_ragged_record(tmp_path):
    path = tmp_path / "2026-01-01.csv"
    path.write_text('a,b,c\n1,2,3\n4,"5,6\n7,8,9\n\n10,11,12\n')
    landed = parse_landing_file(path)
    assert landed.lines.tolist() == [2, 3, 4, 6]
    assert landed.ragged.tolist()[1:] == ['4,"5,6', "7,8,9", "10,11,12"]
    assert set(landed.faults.dropna()) == {
        "one record of 2 fields where the header has 3 spans lines 3-6 (a quote left open?)"
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"the file is empty"),
        (b"\n\n", r"the file is empty"),
        (b"\na,b\n1,2\n", r"line 1 is empty"),
        (b"a,,c\n1,2,3\n", r"line 1, field 2: no column name"),
        (b"a,b,a\n1,2,3\n", r"line 1, fields 1 and 3: column 'a' is named twice"),
        (b"a,b\n1,2\n3,\xff\xfe\n", r"line 3, byte 3 of the line: not UTF-8"),
    ],
)
def test_a_file_that_is_not_a_table_fails_naming_the_file_and_line(tmp_path, content, message):
    path = tmp_path / "2026-01-01.csv"
    path.write_bytes(content)
    with pytest.raises(LandingFileError, match=message) as failure:
        parse_landing_file(path)
    assert str(path) in str(failure.value)


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path):
    path = tmp_path / "2026-01-01.csv"
    path.write_bytes("a,b\r\n1,2\r\n".encode("utf-8-sig"))
    assert list(parse_landing_file(path).text.columns) == ["a", "b"]
