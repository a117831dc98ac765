"""Fairness metrics: hand-computed on a tiny table, and equal to Fairlearn's on the real data;
groups in numeric order, and a chart that fits Dagster's metadata dialog."""

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
)
from sklearn.metrics import precision_score

from mlops_platform.datasets.metric_names import FAIRNESS_GAPS as GAPS
from mlops_platform.datasets.spec import load_spec, shipped_spec_path
from mlops_platform.lib.fairness import (
    attribute_fairness,
    bin_labels,
    gaps_markdown,
    group_order,
    group_values,
    plot_fairness,
)

# Group a: 4 rows, labels 1 1 0 0, predictions 1 0 1 0 -> selection 2/4, TPR 1/2, FPR 1/2, precision 1/2
# Group b: 4 rows, labels 1 1 1 0, predictions 1 1 0 0 -> selection 2/4, TPR 2/3, FPR 0/1, precision 2/2
TINY = pd.DataFrame(
    {
        "group": ["a"] * 4 + ["b"] * 4,
        "label": [1, 1, 0, 0, 1, 1, 1, 0],
        "predicted": [1, 0, 1, 0, 1, 1, 0, 0],
    }
)


def test_gaps_on_a_tiny_table_match_the_hand_computed_values():
    report = attribute_fairness(
        TINY["group"], TINY["label"].to_numpy(), TINY["predicted"].to_numpy(), "g", bootstrap=200
    )
    groups = report.groups.set_index("group")
    assert groups.loc["a", "selection_rate"] == 0.5 and groups.loc["b", "selection_rate"] == 0.5
    assert groups.loc["a", "true_positive_rate"] == 0.5
    assert groups.loc["b", "true_positive_rate"] == pytest.approx(2 / 3)
    assert groups.loc["a", "false_positive_rate"] == 0.5 and groups.loc["b", "false_positive_rate"] == 0.0
    assert groups.loc["b", "precision"] == 1.0 and groups.loc["a", "count"] == 4
    gaps = {name: v["value"] for name, v in report.gaps.items()}
    assert gaps["demographic_parity_difference"] == 0.0
    assert gaps["demographic_parity_ratio"] == 1.0
    assert gaps["equal_opportunity_difference"] == pytest.approx(2 / 3 - 1 / 2)
    assert gaps["equalized_odds_difference"] == pytest.approx(0.5)  # the FPR gap is the larger
    assert gaps["predictive_parity_difference"] == pytest.approx(0.5)


def test_bootstrap_intervals_are_seeded_and_bracket_the_estimate():
    rng = np.random.default_rng(1)
    groups = pd.Series(rng.choice(["x", "y", "z"], 2000))
    labels = rng.integers(0, 2, 2000)
    predicted = np.where(groups == "x", rng.random(2000) < 0.6, rng.random(2000) < 0.4).astype(int)
    first = attribute_fairness(groups, labels, predicted, "g", bootstrap=300, seed=3)
    again = attribute_fairness(groups, labels, predicted, "g", bootstrap=300, seed=3)
    assert first.gaps == again.gaps
    dp = first.gaps["demographic_parity_difference"]
    assert dp["ci_low"] <= dp["value"] <= dp["ci_high"]
    assert 0.1 < dp["value"] < 0.3 and dp["ci_high"] - dp["ci_low"] < 0.15


def test_small_groups_are_reported_and_left_out_of_the_gaps():
    groups = pd.Series(["big"] * 100 + ["mid"] * 40 + ["tiny"] * 5)
    labels = np.array([1, 0] * 50 + [1, 0] * 20 + [1] * 5)
    predicted = np.array([1, 0] * 50 + [1, 1, 0, 0] * 10 + [0] * 5)  # tiny would make every gap 1.0
    report = attribute_fairness(groups, labels, predicted, "g", bootstrap=100, min_group_size=10)
    table = report.groups.set_index("group")
    assert table["in_gaps"].to_dict() == {"big": True, "mid": True, "tiny": False}
    # measured over big (TPR 1) and mid (TPR 1/2) only
    assert report.gaps["equal_opportunity_difference"]["value"] == pytest.approx(0.5)
    assert report.gaps["equal_opportunity_difference"]["measured_groups"] == 2
    assert report.unmeasured == [
        {"group": "tiny", "rows": 5, "reason": "has 5 test rows < min_group_size 10", "gaps": list(GAPS)}
    ]


def test_a_gap_over_fewer_than_two_measurable_groups_is_not_measured_never_zero():
    groups = pd.Series(["big"] * 100 + ["tiny"] * 5)
    labels = np.array([1, 0] * 50 + [1] * 5)
    predicted = np.array([1, 0] * 50 + [0] * 5)
    report = attribute_fairness(groups, labels, predicted, "g", bootstrap=100, min_group_size=10)
    for gap, v in report.gaps.items():
        assert np.isnan(v["value"]) and np.isnan(v["ci_low"]) and np.isnan(v["ci_high"]), gap
        assert v["measured_groups"] == 1
    assert [u["group"] for u in report.unmeasured] == ["tiny"]
    table = gaps_markdown({"g": {"gaps": report.gaps, "limits": {"equalized_odds_difference": 0.2}}})
    assert "| g | equalized_odds_difference | not measured | - | <= 0.2 |" in table
    assert "0.000" not in table


def test_a_group_whose_rate_is_undefined_is_left_out_of_the_gaps_that_need_it():
    # group b has no positive row: its TPR is undefined, so equal opportunity compares nothing
    groups = pd.Series(["a"] * 50 + ["b"] * 50)
    labels = np.array([1, 0] * 25 + [0] * 50)
    predicted = np.array([1, 0] * 25 + [1, 0] * 25)
    report = attribute_fairness(groups, labels, predicted, "g", bootstrap=100, min_group_size=10)
    assert np.isnan(report.gaps["equal_opportunity_difference"]["value"])
    assert np.isnan(report.gaps["equalized_odds_difference"]["value"])
    assert report.gaps["demographic_parity_difference"]["value"] == 0.0  # measured: both select half
    assert report.unmeasured == [
        {
            "group": "b",
            "rows": 50,
            "reason": "has no positive test rows",
            "gaps": ["equal_opportunity_difference", "equalized_odds_difference"],
        }
    ]


def _plain_row_bootstrap(codes: np.ndarray, labels: np.ndarray, predicted: np.ndarray, seed: int) -> dict:
    """Demographic parity and equal opportunity differences of 2000 row resamples, plain numpy."""
    rng = np.random.default_rng(seed)
    drawn = {"demographic_parity_difference": [], "equal_opportunity_difference": []}
    for _ in range(2000):
        pick = rng.integers(0, len(codes), len(codes))
        g, y, p = codes[pick], labels[pick], predicted[pick]
        selection = np.bincount(g, weights=p) / np.bincount(g)
        tpr = np.bincount(g, weights=p * y) / np.bincount(g, weights=y)
        drawn["demographic_parity_difference"].append(selection.max() - selection.min())
        drawn["equal_opportunity_difference"].append(tpr.max() - tpr.min())
    return {gap: np.percentile(values, [2.5, 97.5]) for gap, values in drawn.items()}


def test_the_cell_bootstrap_matches_a_row_bootstrap():
    """Resampling (group, label, prediction) cell counts from a multinomial is row resampling:
    the intervals agree with a plain numpy row bootstrap up to Monte Carlo error."""
    rng = np.random.default_rng(4)
    codes = rng.choice(3, 3000, p=[0.6, 0.3, 0.1])
    labels = rng.integers(0, 2, 3000)
    predicted = np.where(codes == 0, rng.random(3000) < 0.6, rng.random(3000) < 0.4).astype(int)
    ours = attribute_fairness(pd.Series(codes), labels, predicted, "g", bootstrap=2000, seed=1).gaps
    for gap, (low, high) in _plain_row_bootstrap(codes, labels, predicted, seed=2).items():
        width = high - low
        assert ours[gap]["ci_low"] == pytest.approx(low, abs=0.1 * width)
        assert ours[gap]["ci_high"] == pytest.approx(high, abs=0.1 * width)


def test_numeric_attributes_are_binned_at_the_spec_edges():
    assert bin_labels([30, 45, 60]) == ["<30", "30-45", "45-60", ">=60"]
    binned = group_values(pd.Series([17, 29, 30, 44, 45, 60, 90]), [30, 45, 60])
    assert binned.tolist() == ["<30", "<30", "30-45", "30-45", "45-60", ">=60", ">=60"]
    assert group_values(pd.Series([20.0, None]), [30]).tolist() == ["<30", "missing"]


def test_bins_keep_their_numeric_order_in_the_report_and_the_chart(tmp_path):
    ages = pd.Series([70, 50, 35, 8] * 40)
    labels = np.array([1, 0, 1, 0] * 40)
    report = attribute_fairness(group_values(ages, [10, 30, 45, 60]), labels, labels, "age", bootstrap=50)
    assert report.groups["group"].tolist() == ["<10", "30-45", "45-60", ">=60"]  # "10-30" is empty
    chart = plot_fairness([report], tmp_path / "fairness.png")
    assert chart.stat().st_size > 10_000


@pytest.mark.parametrize(
    "ordered",
    [
        ["17-25", "26-35", "36-45", "100-120", "missing"],
        ["[5, 18)", "[18, 30)", "[30, 45)", "[45, 100)"],
        ["<17", "<30", "30-45", "45-60", ">=60"],
        ["-10--5", "-5-0", "0-5", "60+"],
        ["1st-4th", "5th-6th", "9th", "10th", "12th", "Bachelors", "HS-grad"],
        ["Black", "Female", "White"],  # no number: text order
    ],
)
def test_group_names_with_numbers_sort_by_their_numeric_lower_bound(ordered):
    assert sorted(reversed(ordered), key=group_order) == ordered
    assert sorted(ordered[::2] + ordered[1::2], key=group_order) == ordered


def test_bins_given_as_text_keep_their_numeric_order_in_the_report():
    ages = pd.Series(["26-35", "100-120", "17-25", "36-45"] * 30)
    labels = np.array([1, 0, 1, 0, 0, 1] * 20)
    report = attribute_fairness(ages, labels, labels, "age_band", bootstrap=20)
    assert report.groups["group"].tolist() == ["17-25", "26-35", "36-45", "100-120"]
    assert report.groups["count"].tolist() == [30, 30, 30, 30]
    unordered = attribute_fairness(ages.astype("category"), labels, labels, "age_band", bootstrap=20)
    assert unordered.groups["group"].tolist() == report.groups["group"].tolist()


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height in pixels, from the PNG header."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_the_chart_fits_the_metadata_dialog_however_many_attributes(tmp_path):
    spec = load_spec(shipped_spec_path())
    adult = pd.read_csv(spec.source.path).sample(n=2000, random_state=0).reset_index(drop=True)
    labels = (adult[spec.label.column] == spec.label.positive_class).astype(int).to_numpy()
    reports = [
        attribute_fairness(group_values(adult[column], bins), labels, labels, column, bootstrap=20)
        for column, bins in [("sex", None), ("race", None), ("age", [30, 45, 60]), ("education", None)]
    ]
    for count in (1, len(reports)):
        width, height = _png_size(plot_fairness(reports[:count], tmp_path / f"{count}.png"))
        assert 500 <= width <= 650
        assert height > width if count > 1 else height < width  # attributes are stacked


def test_gaps_equal_fairlearn_on_the_adult_data():
    spec = load_spec(shipped_spec_path())
    adult = pd.read_csv(spec.source.path).sample(n=8000, random_state=0).reset_index(drop=True)
    labels = (adult[spec.label.column] == spec.label.positive_class).astype(int).to_numpy()
    # a fixed, imperfect scorer on real rows: what matters here is the metric code
    score = adult[spec.features.numeric].rank(pct=True).mean(axis=1)
    predicted = (score > score.quantile(0.7)).astype(int).to_numpy()
    for attr in spec.sensitive_attributes:
        groups = group_values(adult[attr.column], attr.bins)
        ours = {
            k: v["value"]
            for k, v in attribute_fairness(groups, labels, predicted, attr.column, bootstrap=50).gaps.items()
        }
        kwargs = {"y_true": labels, "y_pred": predicted, "sensitive_features": groups}
        assert ours["demographic_parity_difference"] == pytest.approx(demographic_parity_difference(**kwargs))
        assert ours["demographic_parity_ratio"] == pytest.approx(demographic_parity_ratio(**kwargs))
        assert ours["equal_opportunity_difference"] == pytest.approx(equal_opportunity_difference(**kwargs))
        assert ours["equalized_odds_difference"] == pytest.approx(equalized_odds_difference(**kwargs))
        frame = MetricFrame(metrics=lambda t, p: precision_score(t, p, zero_division=0), **kwargs)
        assert ours["predictive_parity_difference"] == pytest.approx(frame.difference())
