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
