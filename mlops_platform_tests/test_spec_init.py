"""`mlops init`: a spec inferred from a CSV loads as it is and describes the file."""

import datetime as dt
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_platform.datasets.check import check_spec
from mlops_platform.datasets.inference import infer_spec, size_for, write_spec
from mlops_platform.datasets.spec import DatasetSpec, load_spec, shipped_spec_path

ADULT_CSV = shipped_spec_path().parent / "data" / "adult.csv.gz"
TODAY = dt.date(2026, 11, 24)


def _heart(folder: Path, rows: int = 300, seed: int = 0) -> Path:
    """A generated clinic file: an id, visit times, integer codes, nulls, a float, text, a 0/1 label."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "patient_id": [f"P{i:05d}" for i in range(rows)],
            "visit_time": pd.date_range("2024-03-01", periods=rows, freq="7h", tz="UTC").strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "age": rng.integers(29, 78, rows),
            "sex": rng.integers(0, 2, rows),
            "cp": rng.integers(0, 4, rows),
            "chol": rng.integers(120, 400, rows).astype(object),
            "oldpeak": rng.normal(1, 1, rows).round(1),
            "thal": rng.choice(["normal", "fixed", "reversable"], rows).astype(object),
            "target": (rng.random(rows) < 0.3).astype(int),
        }
    )
    frame.loc[rng.random(rows) < 0.05, "chol"] = None
    frame.loc[rng.random(rows) < 0.05, "thal"] = None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "heart.csv"
    frame.to_csv(path, index=False)
    return path


def _write(tmp_path: Path, text: str | bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_init_on_the_shipped_adult_csv_yields_the_types_and_domains_of_adult_yaml(tmp_path):
    output, inferred = write_spec(
        ADULT_CSV, "income", tmp_path / "adult.yaml", sensitive=["sex", "race", "age"], today=TODAY
    )
    spec, shipped = load_spec(output), load_spec(shipped_spec_path())

    assert list(spec.columns) == list(shipped.columns)
    for name, column in shipped.columns.items():
        assert spec.columns[name].type == column.type, name
        assert spec.columns[name].domain == column.domain, name  # both sorted as Python sorts text
        assert spec.columns[name].nullable == column.nullable, name
        # adult.yaml's ranges are the observed ones (README); init's contain them, widened
        if column.min is not None:
            assert spec.columns[name].min <= column.min, name
        if column.max is not None:
            assert spec.columns[name].max >= column.max, name
    assert spec.label == shipped.label
    assert spec.source.path == ADULT_CSV.resolve()
    assert (spec.source.id_column, spec.source.timestamp_column) == (None, None)
    assert set(spec.features.all) == set(shipped.columns) - {"income"}  # fnlwgt too: init cannot know
    assert [a.column for a in spec.sensitive_attributes] == ["sex", "race", "age"]
    assert spec.sensitive_attributes[2].bins == [28, 37, 48]  # age quartiles
    assert inferred.rows == 48_842
    # the sizes of a 48,842-row file are the shipped ones
    assert (spec.monitoring.window_rows, spec.monitoring.min_window_rows) == (1000, 300)
    assert (spec.monitoring.reference_rows, spec.monitoring.min_labelled_rows) == (2000, 200)
    # race's smallest group (Other, under 1% of rows) sets the minimum: half its expected test rows
    assert 20 <= spec.gates.min_group_size < 50 and spec.gates.on_unmeasurable == "fail"
    assert spec.simulation.reference_days == 30
    assert check_spec(output) == []


def test_init_finds_codes_nulls_an_id_and_a_timestamp_in_generated_data(tmp_path):
    csv = _heart(tmp_path)
    output, _ = write_spec(csv, "target", sensitive=["sex", "age"], today=TODAY)

    assert output == tmp_path / "heart.yaml"  # <stem>.yaml beside the CSV
    text = output.read_text()
    assert "  path: heart.csv" in text  # relative to the spec's folder
    assert "sex: {type: categorical, domain: [0, 1]}" in text  # codes as plain YAML numbers
    spec = load_spec(output)
    types = {name: column.type for name, column in spec.columns.items()}
    assert types == {
        "patient_id": "categorical",
        "visit_time": "timestamp",
        "age": "integer",
        "sex": "categorical",
        "cp": "categorical",
        "chol": "integer",
        "oldpeak": "float",
        "thal": "categorical",
        "target": "categorical",
    }
    assert spec.columns["cp"].domain == ["0", "1", "2", "3"]
    assert spec.columns["thal"].domain == ["fixed", "normal", "reversable"]
    assert spec.columns["target"].domain == ["0", "1"]
    nullable = {name for name, column in spec.columns.items() if column.nullable}
    assert nullable == {"chol", "thal"}
    assert spec.source.id_column == "patient_id"
    assert spec.source.timestamp_column == "visit_time"
    assert spec.label.positive_class == "1"  # 1 of 0/1
    assert spec.features.numeric == ["age", "chol", "oldpeak"]
    assert spec.features.categorical == ["sex", "cp", "thal"]
    # the simulation starts after the newest visit, which is well before today
    assert spec.simulation.start_date == dt.date(2024, 5, 28)
    assert spec.sensitive_attributes[1].bins == [55]  # a median: 36 test rows hold two age groups
    assert check_spec(output) == []


def test_ranges_are_widened_rounded_outward_and_stay_non_negative(tmp_path):
    csv = _heart(tmp_path)
    spec = load_spec(write_spec(csv, "target", today=TODAY)[0])
    frame = pd.read_csv(csv)
    for name in ("age", "chol", "oldpeak"):
        low, high = frame[name].min(), frame[name].max()
        column = spec.columns[name]
        margin = 0.1 * (high - low)
        assert column.min <= max(0.0, low - margin) + 1e-9 and column.max >= high + margin - 1e-9, name
        assert (column.min >= 0) == (low >= 0), name  # min >= 0 unless a negative value was seen
    assert spec.columns["age"].min == int(spec.columns["age"].min)


def test_a_300_row_file_gets_sizes_it_can_meet(tmp_path):
    csv = _heart(tmp_path)
    inferred = infer_spec(csv, "target", sensitive=["sex"], today=TODAY)
    spec = DatasetSpec.model_validate(yaml.safe_load(inferred.text))
    sizing = inferred.sizing
    reference_rows = spec.simulation.reference_days * spec.simulation.rows_per_day
    assert reference_rows <= 300
    test_rows = int(reference_rows * spec.split.test)
    train_rows = reference_rows - 2 * test_rows
    sex = pd.read_csv(csv)["sex"].value_counts(normalize=True)
    # both sex groups of the test split are expected to hold min_group_size rows
    assert 1 <= spec.gates.min_group_size <= sex.min() * test_rows
    assert spec.monitoring.reference_rows == max(100, train_rows)
    assert 50 <= spec.monitoring.window_rows <= spec.monitoring.reference_rows
    assert 30 <= spec.monitoring.min_window_rows <= spec.monitoring.window_rows
    assert spec.monitoring.min_labelled_rows == max(10, spec.monitoring.window_rows // 5)
    assert spec.training.search.trials == 20 and spec.training.search.timeout_minutes == 30
    assert spec.gates.max_metrics["expected_calibration_error"] == 0.3  # a 54-row test split is noisy
    assert spec.gates.min_metrics == {"roc_auc": 0.7} and spec.gates.judge == "point"
    assert spec.sensitive_attributes[0].max_gaps["equalized_odds_difference"] > 0.2
    assert sizing.rows == 300


@pytest.mark.parametrize(
    ("rows", "trials"), [(300, 20), (19_999, 20), (50_000, 10), (500_000, 5), (2_000_000, 0)]
)
def test_search_trials_shrink_with_the_rows(rows, trials):
    sizing = size_for(rows)
    assert sizing.search_trials == trials
    assert sizing.reference_days * sizing.rows_per_day <= max(rows, 3)
    assert sizing.min_window_rows <= sizing.window_rows


def test_every_value_reads_back_as_written_in_the_csv(tmp_path):
    values = ["yes", "no", "1.0", "a, b", "#x", " padded", "null", "[x]", "ü", "-", "on"]
    rows = 40 * len(values)
    frame = pd.DataFrame(
        {
            "kind": [values[i % len(values)] for i in range(rows)],
            "y": ["b" if i % 3 else "a" for i in range(rows)],
            "code": [str(i % 3) for i in range(rows)],
        }
    )
    csv = tmp_path / "odd.csv"
    frame.to_csv(csv, index=False)
    output, _ = write_spec(csv, "y", positive_class="a", today=TODAY)
    spec = load_spec(output)
    assert spec.columns["kind"].domain == sorted(values)
    assert spec.label.positive_class == "a"
    text = output.read_text()
    assert "'null', 'on', 'yes'" in text  # YAML would read them as null and booleans unquoted
    assert "'-', 'null' kept as categories" in text
    assert check_spec(output) == []


def test_name_defaults_to_the_file_stem_as_an_identifier_and_force_overwrites(tmp_path):
    csv = _heart(tmp_path)
    target = csv.with_name("Heart Disease-2020.csv")
    csv.rename(target)
    output, _ = write_spec(target, "target", tmp_path / "spec.yaml", today=TODAY)
    assert load_spec(output).name == "heart_disease_2020"
    with pytest.raises(FileExistsError, match="--force"):
        write_spec(target, "target", output, today=TODAY)
    output.write_text("stale")
    write_spec(target, "target", output, force=True, name="clinic", today=TODAY)
    assert load_spec(output).name == "clinic"


def test_a_gzip_csv_is_read_and_its_spec_lands_beside_it(tmp_path):
    csv = _heart(tmp_path)
    packed = tmp_path / "packed.csv.gz"
    packed.write_bytes(gzip.compress(csv.read_bytes()))
    output, inferred = write_spec(packed, "target", today=TODAY)
    assert output == tmp_path / "packed.yaml"
    assert load_spec(output).source.path == packed
    assert inferred.rows == 300


@pytest.mark.parametrize(
    ("content", "label", "message"),
    [
        ("", "y", "is empty"),
        ("a,y\n", "y", "has a header but no rows"),
        ("a,y\n1,p\n2,p\n", "y", "has 1 distinct value"),
        ("a,y\n1,p\n2,q\n3,\n", "y", "--label 'y' is empty in 1 rows"),
        ("a,y\n1,p\n2,q\n3,r\n", "y", "has 3 distinct value(s) ('p', 'q', 'r')"),
        ("a,y\n1,p\n2,q\n", "z", "--label 'z': "),
        ("Age,y\n1,p\n2,q\n", "y", "column 'Age' is not a lower-case SQL identifier"),
        ("chest pain,y\n1,p\n2,q\n", "y", "column 'chest pain' is not a lower-case SQL identifier"),
        ("a,a,y\n1,2,p\n2,3,q\n", "y", "fields 1 and 2: column 'a' is named twice"),
        ("a,label\n1,p\n2,q\n", "label", "column 'label': the platform adds a column of that name"),
        ("a,y\n1,p\n?,q\n3,p\n", "y", "column 'a' holds numbers, and '?' (1 rows)"),
        ("a,y\n1,p\n2,q,3\n", "y", "Expected 2 columns, got 3"),
    ],
)
def test_init_refuses_a_file_it_cannot_describe_with_one_clear_line(tmp_path, content, label, message):
    with pytest.raises(ValueError) as failure:
        infer_spec(_write(tmp_path, content), label, today=TODAY)
    assert message in str(failure.value)
    assert "\n" not in str(failure.value)


def test_init_refuses_a_file_that_is_not_utf8_naming_the_line(tmp_path):
    csv = _write(tmp_path, b"a,y\n1,p\n2,caf\xe9\n")
    with pytest.raises(ValueError, match=r"data.csv: line 3: not UTF-8"):
        infer_spec(csv, "y", today=TODAY)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"positive_class": "x"}, "--positive-class 'x': the label 'y' in"),
        ({"sensitive": ["nope"]}, "--sensitive 'nope': "),
        ({"sensitive": ["y"]}, "--sensitive 'y': that is the label"),
        ({"name": "Bad Name"}, "--name 'Bad Name': must be a lower-case identifier"),
    ],
)
def test_init_refuses_bad_options_naming_the_flag(tmp_path, options, message):
    csv = _write(tmp_path, "a,y\n1,p\n2,q\n3,q\n")
    with pytest.raises(ValueError) as failure:
        infer_spec(csv, "y", today=TODAY, **options)
    assert message in str(failure.value)


def test_init_refuses_an_output_in_a_missing_folder(tmp_path):
    csv = _write(tmp_path, "a,y\n1,p\n2,q\n")
    with pytest.raises(FileNotFoundError, match=r"the folder \S*missing does not exist"):
        write_spec(csv, "y", tmp_path / "missing" / "spec.yaml")
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    ("labels", "positive"),
    [
        (["0"] * 3 + ["1"] * 7, "1"),  # 1 of 0/1, even as the majority
        (["No"] * 2 + ["Yes"] * 8, "Yes"),
        (["true"] * 6 + ["false"] * 4, "true"),
        (["approved"] * 7 + ["denied"] * 3, "denied"),  # no convention: the minority class
    ],
)
def test_the_positive_class_follows_convention_then_the_minority(tmp_path, labels, positive):
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"x": range(len(labels)), "y": labels}).to_csv(csv, index=False)
    assert load_spec(write_spec(csv, "y", today=TODAY)[0]).label.positive_class == positive


def test_an_attribute_with_groups_too_rare_to_measure_makes_the_gate_warn_and_says_so(tmp_path):
    output, _ = write_spec(
        ADULT_CSV, "income", tmp_path / "a.yaml", sensitive=["native_country"], today=TODAY
    )
    spec = load_spec(output)
    assert spec.gates.on_unmeasurable == "warn" and spec.gates.min_group_size >= 5
    assert "native_country: some groups are too rare" in output.read_text()


@pytest.mark.parametrize("header", ["yes,null,on,y", "off,true,no,y"])
def test_column_names_that_yaml_reads_as_keywords_stay_names(tmp_path, header):
    rows = [header] + [f"{i % 40},{'ab'[i % 2]},{i / 7:.2f},{i % 2}" for i in range(200)]
    csv = _write(tmp_path, "\n".join(rows) + "\n")
    spec = load_spec(write_spec(csv, "y", sensitive=[header.split(",")[1]], today=TODAY)[0])
    assert list(spec.columns) == header.split(",")
    assert spec.sensitive_attributes[0].column == header.split(",")[1]


def test_init_never_writes_over_its_data_and_lists_an_attribute_once(tmp_path):
    csv = _heart(tmp_path)
    with pytest.raises(ValueError, match="that is the data file"):
        write_spec(csv, "target", csv, force=True, today=TODAY)
    assert csv.read_text().startswith("patient_id,")
    spec = load_spec(write_spec(csv, "target", sensitive=["sex", "sex"], today=TODAY)[0])
    assert [a.column for a in spec.sensitive_attributes] == ["sex"]


def test_values_at_the_float_limits_keep_their_observed_range(tmp_path):
    csv = _write(
        tmp_path, "x,y\n" + "".join(f"{v},{i % 2}\n" for i, v in enumerate([-1.7e308, 1.7e308] * 20))
    )
    spec = load_spec(write_spec(csv, "y", today=TODAY)[0])
    assert (spec.columns["x"].min, spec.columns["x"].max) == (-1.7e308, 1.7e308)
