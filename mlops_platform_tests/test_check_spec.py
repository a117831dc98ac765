"""`mlops check-spec` and the code location's check: a spec against its source data, every
problem at once, each naming the spec file and the field."""

from pathlib import Path

import pytest
import yaml

from mlops_platform.datasets.check import check_spec, require_matching_source
from mlops_platform.datasets.spec import SpecError, load_spec, shipped_spec_path
from mlops_platform.settings import Settings
from mlops_platform_tests.datasets import write_adult_spec, write_sensor_dataset

HEADER = "patient_id,visit_time,age,cp,thal,target"
ROWS = [
    "P1,2024-03-01T08:00:00Z,54,0,normal,1",
    "P2,2024-03-02T09:30:00Z,61,2,fixed,0",
    "P3,2024-03-03T10:00:00Z,47,3,,0",
]


def _spec() -> dict:
    return {
        "name": "clinic",
        "source": {"path": "data.csv", "id_column": "patient_id", "timestamp_column": "visit_time"},
        "columns": {
            "patient_id": {"type": "categorical"},
            "visit_time": {"type": "timestamp"},
            "age": {"type": "integer", "min": 18, "max": 100},
            "cp": {"type": "categorical", "domain": [0, 1, 2, 3]},
            "thal": {"type": "categorical", "nullable": True, "domain": ["normal", "fixed", "reversable"]},
            "target": {"type": "categorical", "domain": [0, 1]},
        },
        "label": {"column": "target", "positive_class": 1},
        "features": {"numeric": ["age"], "categorical": ["cp", "thal"]},
        "simulation": {"start_date": "2024-04-01", "reference_days": 1, "rows_per_day": 3},
    }


def _dataset(
    folder: Path, spec: dict | None = None, rows: list[str] | None = None, header: str = HEADER
) -> Path:
    """`data.csv` and `spec.yaml` in `folder`; returns the spec's path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.csv").write_text("\n".join([header, *(ROWS if rows is None else rows)]) + "\n")
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec or _spec(), sort_keys=False))
    return path


def _replace(row: int, column: str, value: str) -> list[str]:
    rows = [r.split(",") for r in ROWS]
    rows[row][HEADER.split(",").index(column)] = value
    return [",".join(r) for r in rows]


def test_the_shipped_spec_and_the_test_datasets_are_clean(tmp_path):
    assert check_spec(shipped_spec_path()) == []
    assert check_spec(write_adult_spec(tmp_path / "adult", 150, 4)) == []
    assert check_spec(write_sensor_dataset(tmp_path / "sensors")) == []
    assert check_spec(_dataset(tmp_path / "clinic")) == []


def _with_column(spec: dict, name: str, column: dict) -> dict:
    spec["columns"][name] = column
    return spec


@pytest.mark.parametrize(
    ("spec", "rows", "header", "problem"),
    [
        (
            _with_column(_spec(), "ghost", {"type": "float"}),
            None,
            HEADER,
            "columns.ghost: declared, but the source data.csv has no column 'ghost'",
        ),
        (
            None,
            [r + ",x" for r in ROWS],
            HEADER + ",extra",
            "columns.extra: not declared, but the source data.csv has a column 'extra'",
        ),
        (
            None,
            _replace(1, "age", "abc"),
            HEADER,
            "columns.age: declared integer, but 'abc' is not an integer",
        ),
        (
            None,
            _replace(1, "age", "54.5"),
            HEADER,
            "columns.age: declared integer, but '54.5' is not an integer",
        ),
        (
            None,
            _replace(0, "visit_time", "yesterday"),
            HEADER,
            "columns.visit_time: declared timestamp, but 'yesterday' is not ISO 8601 (1 of 3 sampled rows)",
        ),
        (None, _replace(2, "cp", "7"), HEADER, "columns.cp: '7' is not in the domain [0, 1, 2, 3]"),
        (None, _replace(0, "age", "150"), HEADER, "columns.age: 150 is outside min/max [18, 100]"),
        (
            None,
            _replace(0, "age", ""),
            HEADER,
            "columns.age: not nullable, but 1 of 3 sampled rows have an empty cell",
        ),
        (
            None,
            _replace(2, "patient_id", "P1"),
            HEADER,
            "source.id_column: patient_id is not unique: 'P1' repeats",
        ),
        (None, [], HEADER, "source.path: data.csv has a header but no rows"),
    ],
)
def test_each_kind_of_problem_names_the_spec_file_and_the_field(tmp_path, spec, rows, header, problem):
    path = _dataset(tmp_path, spec, rows, header)
    problems = check_spec(path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}: {problem}")


def test_a_missing_or_unreadable_source_is_one_problem(tmp_path):
    spec = _spec()
    spec["source"]["path"] = "nope.csv"
    assert check_spec(_dataset(tmp_path / "missing", spec)) == [
        f"{tmp_path / 'missing' / 'spec.yaml'}: source.path: nope.csv does not exist"
    ]

    path = _dataset(tmp_path / "latin1")
    (tmp_path / "latin1" / "data.csv").write_bytes(
        f"{HEADER}\n{ROWS[0]}\nP2,x,1,0,caf\xe9,0\n".encode("latin-1")
    )
    assert check_spec(path) == [
        f"{path}: source.path: data.csv: line 3: not UTF-8 (invalid continuation byte); "
        "save the file as UTF-8"
    ]

    path = _dataset(tmp_path / "empty")
    (tmp_path / "empty" / "data.csv").write_text("")
    assert check_spec(path) == [
        f"{path}: source.path: data.csv is empty: expected a header line naming the columns, then rows"
    ]

    path = _dataset(tmp_path / "ragged", rows=[*ROWS, "P4,2024-03-04T10:00:00Z,50,1,normal,0,surplus"])
    (problem,) = check_spec(path)
    assert problem.startswith(f"{path}: source.path: data.csv is not a CSV table: ")
    assert "Expected 6 fields in line 5, saw 7" in problem


def test_a_spec_that_does_not_load_is_one_problem_on_one_line(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("columns: [\n")
    (problem,) = check_spec(path)
    assert problem.startswith(f"{path}: not valid YAML") and "\n" not in problem


def test_every_problem_is_listed_at_once(tmp_path):
    spec = _with_column(_spec(), "ghost", {"type": "float"})
    rows = [r + ",x" for r in _replace(0, "age", "abc")]
    rows[1] = rows[1].replace(",2,", ",9,")
    rows[2] = rows[2].replace("P3,", "P1,")
    path = _dataset(tmp_path, spec, rows, HEADER + ",extra")
    fields = [problem.removeprefix(f"{path}: ").split(":")[0] for problem in check_spec(path)]
    assert fields == ["columns.ghost", "columns.extra", "columns.age", "columns.cp", "source.id_column"]


def test_the_sample_is_bounded(tmp_path):
    rows = [f"P{i},2024-03-01T08:00:00Z,50,0,normal,0" for i in range(50)]
    rows.append("P99,2024-03-01T08:00:00Z,abc,0,normal,0")  # row 51: past a 50-row sample
    path = _dataset(tmp_path, rows=rows)
    assert check_spec(path, sample_rows=50) == []
    assert len(check_spec(path, sample_rows=51)) == 1


def test_the_code_location_refuses_a_spec_whose_columns_its_data_contradicts(tmp_path):
    """Loading checks the header only: a bad row is ingestion's to quarantine, a column the spec
    and the file disagree on stops the load, named on the first line."""
    from mlops_platform.definitions import build_definitions

    path = _dataset(tmp_path, _with_column(_spec(), "ghost", {"type": "float"}), _replace(2, "cp", "7"))
    expected = check_spec(path)
    assert any("columns.cp: '7' is not in the domain" in problem for problem in expected)
    with pytest.raises(SpecError) as failure:
        build_definitions(Settings(home=tmp_path / "home", dataset_spec_path=path))
    assert str(failure.value).splitlines() == [p for p in expected if "columns.ghost" in p]
    assert str(failure.value).splitlines()[0] == (
        f"{path}: columns.ghost: declared, but the source data.csv has no column 'ghost'"
    )


def test_the_code_location_check_skips_a_source_that_is_not_there(tmp_path):
    spec = _spec()
    spec["source"]["path"] = "elsewhere.csv"  # data lands from another system
    path = _dataset(tmp_path, spec)
    require_matching_source(load_spec(path), path)  # no error
    bad_row = _dataset(tmp_path / "row", rows=_replace(0, "cp", "9"))
    require_matching_source(load_spec(bad_row), bad_row)  # a row for ingestion to quarantine
    bad = _dataset(tmp_path / "bad", _with_column(_spec(), "ghost", {"type": "float"}))
    with pytest.raises(SpecError, match=r"columns\.ghost: declared, but the source"):
        require_matching_source(load_spec(bad), bad)
