"""Landing files: deterministic simulated days, shifts, parsing as landed, and clear errors."""

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_platform import cli
from mlops_platform.datasets.spec import DatasetSpec, SpecError, load_spec
from mlops_platform.lib import landing
from mlops_platform.lib.batches import prepare_batch
from mlops_platform.lib.ingestion import ingest_day
from mlops_platform.lib.landing import (
    CsvFileError,
    Shift,
    apply_shifts,
    landed_days,
    load_source,
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
    with pytest.raises(ValueError, match=r"48842 rows.*simulation\.sampling"):
        simulate_batches(spec, adult_settings.landing_dir, days=10_000, sampling="sequential")
    assert landed_days(adult_settings.landing_dir) == []  # refused before writing anything


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
    with pytest.raises(CsvFileError, match=r"2026-01-01\.csv: line 3: 4 fields where the header has 3"):
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
    with pytest.raises(CsvFileError, match=message) as failure:
        parse_landing_file(path)
    assert str(path) in str(failure.value)


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path):
    path = tmp_path / "2026-01-01.csv"
    path.write_bytes("a,b\r\n1,2\r\n".encode("utf-8-sig"))
    assert list(parse_landing_file(path).text.columns) == ["a", "b"]


def _small_source_spec(spec: DatasetSpec, folder: Path, rows: int) -> DatasetSpec:
    """The spec with a source of only its first `rows` rows."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "small.csv"
    pd.read_csv(spec.source.path, dtype=str, nrows=rows).to_csv(path, index=False)
    return spec.model_copy(update={"source": spec.source.model_copy(update={"path": path})})


def test_days_larger_than_the_source_are_drawn_with_replacement_the_same_way_every_time(
    adult_settings, tmp_path, monkeypatch
):
    monkeypatch.setattr(landing, "RESAMPLE_CHUNK_ROWS", 1_500)  # several chunks per day
    spec = _small_source_spec(adult_settings.load_spec(), tmp_path / "source", rows=600)
    first = simulate_batches(spec, tmp_path / "a", days=2, rows_per_day=5_000)
    again = simulate_batches(spec, tmp_path / "b", days=2, rows_per_day=5_000)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    assert first[0].read_bytes() != first[1].read_bytes()  # each day its own draw
    day = read_landing_file(first[0])
    assert len(day) == 5_000 and list(day.columns) == list(spec.columns)  # one header, every chunk
    source = load_source(spec)
    for name in [name for name, column in spec.columns.items() if column.is_numeric]:
        column, values = spec.columns[name], pd.to_numeric(day[name])
        assert day[name].str.fullmatch(r"-?\d+").all(), name  # integer columns land as integers
        low = -np.inf if column.min is None else column.min
        high = np.inf if column.max is None else column.max
        assert values.between(low, high).all(), name
        original = pd.to_numeric(source[name])
        assert abs(values.mean() - original.mean()) < 0.1 * original.std(), name
    # jitter: far more distinct weights than the source's 600 rows hold
    assert day["fnlwgt"].nunique() > 2_000 and source["fnlwgt"].nunique() <= 600
    for name in spec.features.categorical:
        assert set(day[name].dropna()) <= set(spec.columns[name].domain), name
    share = day["sex"].value_counts(normalize=True)["Female"]
    assert abs(share - source["sex"].value_counts(normalize=True)["Female"]) < 0.03


def test_resampled_rows_pass_the_gates_and_get_unique_record_ids(adult_settings, tmp_path):
    spec = _small_source_spec(adult_settings.load_spec(), tmp_path / "source", rows=300)
    [path] = simulate_batches(spec, adult_settings.landing_dir, days=1, rows_per_day=2_000)
    ingested = ingest_day(adult_settings.landing_dir, spec, path.stem)
    assert len(ingested.valid) == 2_000 and ingested.quarantined.empty
    assert ingested.valid["record_id"].is_unique  # duplicated rows apart by their position


def test_a_source_id_column_gets_fresh_unique_ids_on_resampled_days(sensor_settings):
    spec = sensor_settings.load_spec()
    [path] = simulate_batches(
        spec, sensor_settings.landing_dir, days=1, rows_per_day=2_000, sampling="resample"
    )
    day = read_landing_file(path)
    ids = day[spec.source.id_column]
    assert ids.tolist()[:2] == [f"{path.stem}-0", f"{path.stem}-1"] and ids.is_unique
    assert prepare_batch(day, spec, path.stem)["record_id"].is_unique
    temperature = pd.to_numeric(day["temperature"])  # a float column with missing cells
    assert temperature.dropna().between(-40, 150).all() and 0 < temperature.isna().mean() < 0.1


def test_shifts_apply_to_resampled_days_within_the_range(adult_settings):
    spec = adult_settings.load_spec()
    kwargs = {"days": 1, "rows_per_day": 3_000, "sampling": "resample"}
    [plain] = simulate_batches(spec, adult_settings.landing_dir / "plain", **kwargs)
    [moved] = simulate_batches(
        spec,
        adult_settings.landing_dir / "moved",
        shifts=[Shift.parse("age=+12"), Shift.parse("sex=Female:1")],
        **kwargs,
    )
    before, after = read_landing_file(plain), read_landing_file(moved)
    ages = pd.to_numeric(after["age"])
    assert ages.mean() - pd.to_numeric(before["age"]).mean() > 10 and ages.max() <= 90
    assert set(after["sex"]) == {"Female"}


def test_auto_sampling_lands_source_slices_while_the_source_holds_the_day_then_draws(
    adult_settings, tmp_path
):
    spec = _small_source_spec(adult_settings.load_spec(), tmp_path / "source", rows=600)
    sequential = simulate_batches(spec, tmp_path / "seq", days=2, rows_per_day=250, sampling="sequential")
    with pytest.raises(ValueError, match="enough for 2 days of 250 rows"):
        simulate_batches(spec, tmp_path / "seq", days=1, rows_per_day=250, sampling="sequential")
    auto = simulate_batches(spec, tmp_path / "auto", days=3, rows_per_day=250)
    assert [p.read_bytes() for p in auto[:2]] == [p.read_bytes() for p in sequential]
    assert len(read_landing_file(auto[2])) == 250  # the third day is drawn with replacement


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_a_bad_rows_per_day_flag_is_refused_naming_the_flag(value, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["simulate-batches", f"--rows-per-day={value}"])
    assert exited.value.code == 2
    assert "argument --rows-per-day:" in capsys.readouterr().err


def test_bad_simulation_settings_are_refused_naming_the_field(adult_settings, tmp_path):
    spec = adult_settings.load_spec()
    with pytest.raises(ValueError, match="rows_per_day must be at least 1, got 0"):
        simulate_batches(spec, tmp_path, days=1, rows_per_day=0)
    text = adult_settings.dataset_spec_path.read_text()
    for good, wrong, field in [
        ("sampling: auto", "sampling: random", "simulation.sampling"),
        ("rows_per_day: 150", "rows_per_day: 0", "simulation.rows_per_day"),
        ("jitter: 0.1", "jitter: -1", "simulation.jitter"),
    ]:
        assert good in text
        bad = tmp_path / "bad.yaml"
        bad.write_text(text.replace(good, wrong))
        with pytest.raises(SpecError, match=field.replace(".", r"\.")):
            load_spec(bad)


def test_a_quote_left_open_to_the_end_of_the_file_hides_no_line(tmp_path):
    from mlops_platform.lib.landing import parse_landing_file

    path = tmp_path / "2026-01-01.csv"
    path.write_bytes(b'a,b\r\n1,"abc\r\n2,x\r\n')  # two fields either way: only the open quote tells
    landed = parse_landing_file(path)
    assert list(landed.lines) == [2, 3] and not landed.well_formed.any()
    assert all("never closed" in fault for fault in landed.faults)


def test_a_byte_order_mark_does_not_shift_the_position_of_a_bad_byte(tmp_path):
    from mlops_platform.lib.landing import CsvFileError, parse_landing_file

    path = tmp_path / "2026-01-01.csv"
    path.write_bytes(b"\xef\xbb\xbfa,b\r\n1,2\r\n3,\xff4\r\n")
    with pytest.raises(CsvFileError, match="line 3, byte 3 of the line"):
        parse_landing_file(path)


@pytest.mark.parametrize(
    "content",
    [
        b"a,b,c\r\n1,,x y\r\n\t2 ,\x00,\xc3\xa9\n,,\r\n3,4,5",  # LF and CRLF, empty and odd cells
        b"\xef\xbb\xbfa,b\n1,2\n3,4\n",
        b"a,b\n1,2\n3,4,5\n6,7\n",  # a ragged line: read line by line
        b"a,b\n1,2\n\n3,4\n",  # a blank line: read line by line
    ],
)
def test_a_plain_file_reads_as_the_line_by_line_reader_reads_it(tmp_path, content):
    path = tmp_path / "2026-01-01.csv"
    path.write_bytes(content)
    landed = parse_landing_file(path)
    by_line = landing._read_lines(
        path, content.removeprefix(b"\xef\xbb\xbf").decode(), landed.fingerprint, landed.sha256
    )
    assert list(landed.text.columns) == list(by_line.text.columns)
    assert landed.text.to_numpy().tolist() == by_line.text.to_numpy().tolist()
    assert set(landed.text.dtypes) == {np.dtype(object)}
    assert landed.lines.tolist() == by_line.lines.tolist()
    assert landed.ragged.equals(by_line.ragged) and landed.faults.equals(by_line.faults)
    assert landed.fingerprint == landing.LandingFingerprint.of(path)
    assert landed.sha256 == hashlib.sha256(content).hexdigest() == landing.file_sha256(path)  # BOM included


def test_a_simulated_day_is_plain_and_its_distinct_cells_are_held_once(adult_settings):
    [path] = simulate_batches(
        adult_settings.load_spec(), adult_settings.landing_dir, days=1, rows_per_day=3_000
    )
    content = path.read_bytes()
    assert landing._is_plain(content)
    landed = parse_landing_file(path)
    by_line = landing._read_lines(path, content.decode(), landed.fingerprint, landed.sha256)
    assert landed.text.equals(by_line.text) and landed.lines.tolist() == by_line.lines.tolist()
    sexes = landed.text["sex"].to_numpy()
    assert len({id(cell) for cell in sexes}) == len(set(sexes))
