"""Group fairness of binary predictions, with bootstrap confidence intervals for every gap.

Definitions follow Fairlearn's: a *difference* is the largest minus the smallest group
value, a *ratio* the smallest over the largest; equalized odds takes the worse of the
true- and false-positive-rate differences.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_platform.lib.metric_names import FAIRNESS_GAPS as GAPS
from mlops_platform.lib.metric_names import GAP_FLOORS


def bin_labels(edges: list[float]) -> list[str]:
    """`[30, 45, 60]` -> `<30`, `30-45`, `45-60`, `>=60` (each bin includes its lower edge)."""
    shown = [f"{e:g}" for e in edges]
    return [f"<{shown[0]}", *(f"{a}-{b}" for a, b in itertools.pairwise(shown)), f">={shown[-1]}"]


def group_values(values: pd.Series, bins: list[float] | None) -> pd.Series:
    """The group of each row: the value itself, or its bin for a binned numeric attribute."""
    if bins is None:
        return values.astype(str).fillna("missing")
    labels = bin_labels(bins)
    index = np.digitize(pd.to_numeric(values).to_numpy(dtype=float), bins)
    return pd.Series([labels[i] for i in index], index=values.index)


def _rates(
    groups: np.ndarray, n_groups: int, labels: np.ndarray, predicted: np.ndarray
) -> dict[str, np.ndarray]:
    count = np.bincount(groups, minlength=n_groups).astype(float)
    positive = np.bincount(groups, weights=labels, minlength=n_groups)
    negative = count - positive
    selected = np.bincount(groups, weights=predicted, minlength=n_groups)
    true_pos = np.bincount(groups, weights=predicted * labels, minlength=n_groups)
    false_pos = selected - true_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "count": count,
            "selection_rate": selected / count,
            "true_positive_rate": true_pos / positive,
            "false_positive_rate": false_pos / negative,
            "precision": true_pos / selected,
        }


def _spread(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max() - finite.min()) if len(finite) else float("nan")


def _gaps(rates: dict[str, np.ndarray], eligible: np.ndarray) -> dict[str, float]:
    present = eligible & (rates["count"] > 0)
    selection = rates["selection_rate"][present]
    finite = selection[np.isfinite(selection)]
    tpr_gap = _spread(rates["true_positive_rate"][present])
    fpr_gap = _spread(rates["false_positive_rate"][present])
    return {
        "demographic_parity_difference": _spread(selection),
        "demographic_parity_ratio": float(finite.min() / finite.max())
        if len(finite) and finite.max() > 0
        else float("nan"),
        "equal_opportunity_difference": tpr_gap,
        "equalized_odds_difference": float(np.nanmax([tpr_gap, fpr_gap])),
        "predictive_parity_difference": _spread(rates["precision"][present]),
    }


@dataclass
class AttributeFairness:
    attribute: str
    groups: pd.DataFrame  # one row per group: count, selection_rate, TPR, FPR, precision
    gaps: dict[str, dict[str, float]]  # gap -> {value, ci_low, ci_high}


def attribute_fairness(
    groups: pd.Series,
    labels: np.ndarray,
    predicted: np.ndarray,
    attribute: str,
    bootstrap: int = 500,
    min_group_size: int = 0,
    seed: int = 0,
) -> AttributeFairness:
    """Per-group rates and the gaps between groups, with percentile bootstrap 95% intervals.

    Groups with fewer than `min_group_size` rows are reported but left out of the gaps.
    """
    names, codes = np.unique(groups.astype(str).to_numpy(), return_inverse=True)
    labels = np.asarray(labels, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    rates = _rates(codes, len(names), labels, predicted)
    eligible = rates["count"] >= max(min_group_size, 1)
    point = _gaps(rates, eligible)
    rng = np.random.default_rng(seed)
    samples = {gap: [] for gap in GAPS}
    for _ in range(bootstrap):
        pick = rng.integers(0, len(codes), len(codes))
        resampled = _rates(codes[pick], len(names), labels[pick], predicted[pick])
        for gap, value in _gaps(resampled, eligible).items():
            samples[gap].append(value)
    gaps = {}
    for gap in GAPS:
        drawn = np.asarray(samples[gap], dtype=float)
        drawn = drawn[np.isfinite(drawn)]
        low, high = np.percentile(drawn, [2.5, 97.5]) if len(drawn) else (np.nan, np.nan)
        gaps[gap] = {"value": point[gap], "ci_low": float(low), "ci_high": float(high)}
    table = pd.DataFrame({"group": names, **{k: v for k, v in rates.items()}})
    table["count"] = table["count"].astype(int)
    table["in_gaps"] = eligible
    return AttributeFairness(attribute=attribute, groups=table, gaps=gaps)


def plot_fairness(reports: list[AttributeFairness], path: Path) -> Path:
    """One panel per attribute: selection rate, TPR and FPR per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(reports), figsize=(4.8 * len(reports), 3.8), squeeze=False)
    for ax, report in zip(axes[0], reports, strict=True):
        table = report.groups
        x = np.arange(len(table))
        for offset, column in zip(
            (-0.27, 0.0, 0.27), ("selection_rate", "true_positive_rate", "false_positive_rate"), strict=True
        ):
            ax.bar(x + offset, table[column].fillna(0), width=0.27, label=column.replace("_", " "))
        ax.set_xticks(x, table["group"], rotation=30, ha="right", fontsize=8)
        dp = report.gaps["demographic_parity_difference"]
        ax.set_title(
            f"{report.attribute}: DP diff {dp['value']:.3f} [{dp['ci_low']:.3f}, {dp['ci_high']:.3f}]",
            fontsize=9,
        )
        ax.set_ylim(0, 1)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def gaps_markdown(report: dict, ungated: str = "") -> str:
    """A report (attribute -> {gaps, limits}) as a markdown table with intervals and limits."""
    lines = ["| attribute | gap | value | 95% CI | limit |", "|---|---|---:|---|---|"]
    for attribute, entry in report.items():
        for gap, v in entry["gaps"].items():
            limit = entry["limits"].get(gap)
            shown = ungated if limit is None else (f">= {limit}" if gap in GAP_FLOORS else f"<= {limit}")
            interval = f"[{v['ci_low']:.3f}, {v['ci_high']:.3f}]"
            lines.append(f"| {attribute} | {gap} | {v['value']:.3f} | {interval} | {shown} |")
    return "\n".join(lines)
