"""The dataset spec: the shipped spec loads, bad specs fail naming the field, no code names a column."""

import re
from pathlib import Path

import pytest
import yaml

from mlops_platform.datasets.spec import SpecError, load_spec, shipped_spec_path

PACKAGE = Path(__file__).resolve().parents[1] / "mlops_platform"


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(shipped_spec_path().read_text())
    mutate(raw)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_shipped_adult_spec_loads_and_resolves_its_source():
    spec = load_spec(shipped_spec_path())
    assert spec.name == "adult"
    assert spec.source.path.is_file()
    assert spec.label.positive_class in spec.columns[spec.label.column].domain
    assert set(spec.features.all) <= set(spec.columns)
    assert spec.label.column not in spec.features.all


@pytest.mark.parametrize(
    ("mutate", "named"),
    [
        (lambda r: r["features"]["numeric"].append("salary"), "features.numeric"),
        (lambda r: r["columns"]["age"].update(min=100, max=10), "columns.age"),
        (lambda r: r["columns"]["age"].update(type="number"), "columns.age.type"),
        (lambda r: r["label"].update(positive_class="rich"), "label.positive_class"),
        (lambda r: r["features"]["categorical"].append("age"), "features.categorical"),
        (lambda r: r["columns"]["sex"].update(min=0), "columns.sex"),
        (lambda r: r["split"].update(test=0.5, validation=0.45), "split"),
        (lambda r: r.update(thresholds={}), "thresholds"),
        (lambda r: r["gates"]["min_metrics"].update(auc=0.9), "gates"),
        (lambda r: r["sensitive_attributes"][0].update(max_gaps={"parity": 0.1}), "max_gaps"),
        (lambda r: r["sensitive_attributes"].append({"column": "sex", "bins": [1]}), "sensitive_attributes"),
        (lambda r: r["columns"].update(record_id={"type": "categorical"}), "record_id"),
        (lambda r: r["simulation"].update(demo_drift=["salary=+5"]), "simulation.demo_drift.0"),
        (lambda r: r["simulation"].update(demo_drift=["age"]), "simulation.demo_drift.0"),
        (lambda r: r["deployment"].update(canary_steps=[10, 50]), "canary_steps"),
        (lambda r: r["deployment"]["analysis"].update(max_latency=2.0), "unknown threshold"),
        (lambda r: r["monitoring"].update(sensor_interval_seconds=1), "sensor_interval_seconds"),
    ],
)
def test_an_invalid_spec_fails_at_load_naming_the_field(tmp_path, mutate, named):
    with pytest.raises(SpecError) as failure:
        load_spec(_write(tmp_path, mutate))
    assert named in str(failure.value)
    assert "spec.yaml" in str(failure.value)


def test_a_missing_spec_file_is_a_clear_error(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")


def test_no_python_or_sql_module_names_a_column_of_the_demo_data():
    columns = list(load_spec(shipped_spec_path()).columns)
    offenders = []
    for path in [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.sql")]:
        text = path.read_text()
        for column in columns:
            if re.search(rf"""["'`]{column}["'`]|\b{column}\s*=|\.{column}\b""", text):
                offenders.append(f"{path.relative_to(PACKAGE)}: {column}")
    assert offenders == []


def _coded_spec(tmp_path: Path, **label: object) -> Path:
    """A small spec whose categories are integer codes, written as plain YAML numbers."""
    raw = {
        "name": "heart",
        "source": {"path": "heart.csv"},
        "columns": {
            "age": {"type": "integer", "min": 20, "max": 90},
            "cp": {"type": "categorical", "domain": [0, 1, 2, 3]},
            "thal": {"type": "categorical", "nullable": True, "domain": [1, 2.0, 3]},
            "target": {"type": "categorical", "domain": [0, 1]},
        },
        "label": {"column": "target", "positive_class": 1, **label},
        "features": {"numeric": ["age"], "categorical": ["cp", "thal"]},
        "simulation": {"start_date": "2026-01-01"},
    }
    path = tmp_path / "heart.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_integer_codes_are_accepted_in_domains_and_positive_class(tmp_path):
    spec = load_spec(_coded_spec(tmp_path))
    assert spec.columns["cp"].domain == ["0", "1", "2", "3"]
    assert spec.columns["thal"].domain == ["1", "2", "3"]  # 2.0 is the code 2
    assert spec.label.positive_class == "1"


def test_errors_quote_integer_codes_as_the_spec_wrote_them(tmp_path):
    with pytest.raises(SpecError) as failure:
        load_spec(_coded_spec(tmp_path, positive_class=2))
    assert "label.positive_class 2 is not in the domain of column target: [0, 1]" in str(failure.value)


def test_yaml_booleans_in_a_domain_are_refused_with_the_fix(tmp_path):
    path = tmp_path / "spec.yaml"
    raw = yaml.safe_load(_coded_spec(tmp_path).read_text())
    raw["columns"]["target"]["domain"] = [True, False]  # what YAML makes of unquoted yes / no
    raw["label"]["positive_class"] = True
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError) as failure:
        load_spec(path)
    assert "columns.target.domain" in str(failure.value)
    assert 'quote it, e.g. "yes"' in str(failure.value)


def test_the_server_takes_an_integer_code_as_a_number_or_as_text(tmp_path):
    from mlops_platform.serving.validation import InvalidRequest, RequestValidator

    validator = RequestValidator(load_spec(_coded_spec(tmp_path)), max_rows=10)
    as_numbers = validator.v1_batch([{"age": 50, "cp": 2, "thal": 3.0}, {"age": 61, "cp": 0, "thal": None}])
    as_text = validator.v1_batch([{"age": 50, "cp": "2", "thal": "3"}, {"age": 61, "cp": "0", "thal": None}])
    assert as_numbers.categorical == as_text.categorical == [["2", "0"], ["3", None]]
    v2 = validator.v2_batch(
        {
            "inputs": [
                {"name": "age", "datatype": "INT64", "shape": [1], "data": [50]},
                {"name": "cp", "datatype": "INT64", "shape": [1], "data": [2]},
                {"name": "thal", "datatype": "BYTES", "shape": [1], "data": ["3"]},
            ]
        }
    )
    assert v2.categorical == [["2"], ["3"]]
    for value, words in (
        (1.5, "expected an integer code, got 1.5"),
        (True, "expected a string or an integer"),
        (7, "7 is not an allowed value"),
        ([1], "expected a string or an integer"),
    ):
        with pytest.raises(InvalidRequest) as refused:
            validator.v1_batch([{"age": 50, "cp": value, "thal": 1}])
        assert refused.value.field == "instances[0].cp"
        assert words in refused.value.problem


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (float("nan"), "not an integer code"),
        (float("inf"), "not an integer code"),
        (0.5, "not an integer code: quote a category written with a fraction"),
        (10**300, "too large for an integer code"),
        ({"a": 1}, "expected a string or a number"),
    ],
)
def test_numbers_that_are_no_integer_code_are_refused_in_a_domain(tmp_path, value, words):
    raw = yaml.safe_load(_coded_spec(tmp_path).read_text())
    raw["columns"]["cp"]["domain"] = [0, value]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError) as failure:
        load_spec(path)
    assert "columns.cp.domain" in str(failure.value) and words in str(failure.value)


def test_one_rule_says_what_an_integer_code_is_for_the_server_and_its_schema(tmp_path):
    from mlops_platform.serving.schemas import _feature_schema
    from mlops_platform.serving.validation import InvalidRequest, RequestValidator

    raw = yaml.safe_load(_coded_spec(tmp_path).read_text())
    raw["columns"]["cp"]["domain"] = ["01", "02", "²"]  # text that only looks like numbers
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = load_spec(path)
    assert _feature_schema(spec, "cp") == {"type": "string", "enum": ["01", "02", "²"]}
    with pytest.raises(InvalidRequest, match="expected a string, got"):
        RequestValidator(spec, max_rows=10).v1_batch([{"age": 50, "cp": 1, "thal": 1}])
    coded = load_spec(_coded_spec(tmp_path))
    assert _feature_schema(coded, "cp")["anyOf"][1] == {"type": "integer", "enum": [0, 1, 2, 3]}


@pytest.mark.parametrize(
    ("tensor", "field", "words"),
    [
        ({"datatype": "INTEGER", "data": [2]}, "inputs[cp].datatype", "needs BYTES or INT*"),
        ({"datatype": "INT8", "data": [2.0]}, "inputs[cp].data[0]", "expected an integer code (INT8)"),
        ({"datatype": "INT64", "data": ["2"]}, "inputs[cp].data[0]", "expected an integer code (INT64)"),
        ({"datatype": "INT64", "data": [9]}, "inputs[cp].data[0]", "9 is not an allowed value"),
    ],
)
def test_integer_code_tensors_are_checked_like_any_input(tmp_path, tensor, field, words):
    from mlops_platform.serving.validation import InvalidRequest, RequestValidator

    validator = RequestValidator(load_spec(_coded_spec(tmp_path)), max_rows=10)
    body = {
        "inputs": [
            {"name": "age", "datatype": "INT64", "shape": [1], "data": [50]},
            {"name": "cp", "shape": [1], **tensor},
            {"name": "thal", "datatype": "BYTES", "shape": [1], "data": ["3"]},
        ]
    }
    with pytest.raises(InvalidRequest) as refused:
        validator.v2_batch(body)
    assert refused.value.field == field and words in refused.value.problem
