"""Landing files: deterministic simulated days, shifts, and clear errors."""

import pandas as pd
import pytest

from mlops_platform.lib.landing import Shift, apply_shifts, landed_days, read_landing_file, simulate_batches


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
