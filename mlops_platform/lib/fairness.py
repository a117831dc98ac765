"""Group fairness of binary predictions, with bootstrap confidence intervals for every gap.

Definitions follow Fairlearn's: a *difference* is the largest minus the smallest group
value, a *ratio* the smallest over the largest; equalized odds takes the worse of the
true- and false-positive-rate differences. A gap is *measured* over the groups with at
least `min_group_size` rows whose rate is defined; with fewer than two such groups it has
no value (NaN, shown as "not measured"), never 0.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_platform.datasets.metric_names import FAIRNESS_GAPS as GAPS
from mlops_platform.datasets.metric_names import GAP_FLOORS

# The group rates each gap compares (a group whose rate is undefined cannot enter the gap).
GAP_RATES = {
    "demographic_parity_difference": ("selection_rate",),
    "demographic_parity_ratio": ("selection_rate",),
    "equal_opportunity_difference": ("true_positive_rate",),
    "equalized_odds_difference": ("true_positive_rate", "false_positive_rate"),
    "predictive_parity_difference": ("precision",),
}
RATE_NEEDS = {
    "selection_rate": "test rows",
    "true_positive_rate": "positive test rows",
    "false_positive_rate": "negative test rows",
    "precision": "predicted positives",
}
_BOOTSTRAP_BLOCK = 256  # resamples drawn at once
# A number in a group name; a `-` right after a digit separates a range (`17-25`), no sign.
_NUMBER = re.compile(r"(?<![\d.])[-+]?\d+(?:\.\d+)?")
# The chart fits the metadata dialog of the Dagster UI: 6.4 in at 100 dpi is 640 px wide.
CHART_WIDTH_INCHES = 6.4
CHART_DPI = 100


def bin_labels(edges: list[float]) -> list[str]:
    """`[30, 45, 60]` -> `<30`, `30-45`, `45-60`, `>=60` (each bin includes its lower edge)."""
    shown = [f"{e:g}" for e in edges]
    return [f"<{shown[0]}", *(f"{a}-{b}" for a, b in itertools.pairwise(shown)), f">={shown[-1]}"]


def group_values(values: pd.Series, bins: list[float] | None) -> pd.Series:
    """The group of each row: the value itself (missing: `missing`), or its bin for a binned
    numeric attribute, as an ordered categorical in bin order."""
    if bins is None:
        return values.astype(object).where(values.notna(), "missing").astype(str)
    labels = bin_labels(bins)
    numbers = pd.to_numeric(values).to_numpy(dtype=float)
    index = np.digitize(numbers, bins)
    missing = np.isnan(numbers)
    if missing.any():
        index[missing] = len(labels)
        labels = [*labels, "missing"]
    return pd.Series(
        pd.Categorical.from_codes(index, categories=labels, ordered=True),
        index=values.index,
        name=values.name,
    )


def group_order(name: str) -> tuple[int, float, float, str]:
    """Sort key of a group name: names with a number (bins such as `17-25`, `[18, 30)`, `<30`,
    `>=60`, `60+`) by their numeric lower bound (`<30` has none: first), then by the upper one;
    names without a number after them, in text order."""
    numbers = [float(n) for n in _NUMBER.findall(name)]
    if not numbers:
        return (1, math.inf, math.inf, name)
    text = name.strip()
    if text.startswith("<"):
        return (0, -math.inf, numbers[0], name)
    if len(numbers) > 1:
        return (0, numbers[0], numbers[1], name)
    open_above = text.startswith(">") or text.endswith("+")
    return (0, numbers[0], math.inf if open_above else numbers[0], name)


def _group_codes(groups: pd.Series) -> tuple[list[str], np.ndarray]:
    """Group names (category order for an ordered categorical, `group_order` otherwise) and each
    row's code."""
    if isinstance(groups.dtype, pd.CategoricalDtype) and groups.cat.ordered:
        codes = groups.cat.codes.to_numpy()
        if (codes < 0).any():
            raise ValueError("every row needs a group: missing values too (group_values gives them one)")
        present = np.flatnonzero(np.bincount(codes, minlength=len(groups.cat.categories)))
        remap = np.full(len(groups.cat.categories), -1)
        remap[present] = np.arange(len(present))
        return [str(groups.cat.categories[i]) for i in present], remap[codes]
    names, codes = np.unique(groups.astype(str).to_numpy(), return_inverse=True)
    order = sorted(range(len(names)), key=lambda i: group_order(str(names[i])))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return [str(names[i]) for i in order], rank[codes]


def _rates(cells: np.ndarray) -> dict[str, np.ndarray]:
    """Group rates from counts shaped (..., group, label, predicted)."""
    count = cells.sum(axis=(-1, -2)).astype(float)
    positive = cells[..., 1, :].sum(axis=-1)
    negative = cells[..., 0, :].sum(axis=-1)
    selected = cells[..., :, 1].sum(axis=-1)
    true_pos = cells[..., 1, 1]
    false_pos = cells[..., 0, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "count": count,
            "selection_rate": selected / count,
            "true_positive_rate": true_pos / positive,
            "false_positive_rate": false_pos / negative,
            "precision": true_pos / selected,
        }


def _spread(values: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Largest minus smallest finite eligible value along the last axis; NaN under two values."""
    usable = eligible & np.isfinite(values)
    high = np.where(usable, values, -np.inf).max(axis=-1)
    low = np.where(usable, values, np.inf).min(axis=-1)
    return np.where(usable.sum(axis=-1) >= 2, high - low, np.nan)


def _gaps(rates: dict[str, np.ndarray], eligible: np.ndarray) -> dict[str, np.ndarray]:
    selection = rates["selection_rate"]
    usable = eligible & np.isfinite(selection)
    high = np.where(usable, selection, -np.inf).max(axis=-1)
    low = np.where(usable, selection, np.inf).min(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where((usable.sum(axis=-1) >= 2) & (high > 0), low / high, np.nan)
    tpr_gap = _spread(rates["true_positive_rate"], eligible)
    fpr_gap = _spread(rates["false_positive_rate"], eligible)
    return {
        "demographic_parity_difference": _spread(selection, eligible),
        "demographic_parity_ratio": ratio,
        "equal_opportunity_difference": tpr_gap,
        # NaN when either part is not measured: the worse of two rates, one unknown, is unknown
        "equalized_odds_difference": np.maximum(tpr_gap, fpr_gap),
        "predictive_parity_difference": _spread(rates["precision"], eligible),
    }


@dataclass
class AttributeFairness:
    attribute: str
    groups: pd.DataFrame  # one row per group: count, selection_rate, TPR, FPR, precision, in_gaps
    gaps: dict[str, dict[str, float]]  # gap -> {value, ci_low, ci_high, measured_groups}; NaN: not measured
    min_group_size: int = 0
    # per group left out of a gap: {group, rows, reason, gaps}
    unmeasured: list[dict] = field(default_factory=list)


def _unmeasured(table: pd.DataFrame, minimum: int) -> list[dict]:
    """The groups each gap leaves out, and why: too few rows, or the rate it compares undefined."""
    found = []
    for row in table.itertuples(index=False):
        rows = int(row.count)
        if rows < minimum:
            found.append(
                {
                    "group": row.group,
                    "rows": rows,
                    "reason": f"has {rows} test rows < min_group_size {minimum}",
                    "gaps": list(GAPS),
                }
            )
            continue
        missing = [rate for rate in RATE_NEEDS if not math.isfinite(getattr(row, rate))]
        if missing:
            found.append(
                {
                    "group": row.group,
                    "rows": rows,
                    "reason": "has no " + " and no ".join(RATE_NEEDS[rate] for rate in missing),
                    "gaps": [gap for gap in GAPS if set(GAP_RATES[gap]) & set(missing)],
                }
            )
    return found


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

    Groups with fewer than `min_group_size` rows are reported but left out of the gaps (and
    listed in `unmeasured`). The bootstrap resamples rows with replacement; since every rate
    depends only on the counts of (group, label, prediction) cells, it draws those counts from
    one multinomial per resample, which is the same distribution at any number of rows.
    """
    names, codes = _group_codes(groups)
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    n_groups = len(names)
    cells = np.bincount(codes * 4 + labels * 2 + predicted, minlength=n_groups * 4).reshape(n_groups, 2, 2)
    rates = _rates(cells)
    eligible = rates["count"] >= max(min_group_size, 1)
    point = _gaps(rates, eligible)
    rng = np.random.default_rng(seed)
    total = int(cells.sum())
    drawn: dict[str, list[np.ndarray]] = {gap: [] for gap in GAPS}
    for start in range(0, bootstrap if total else 0, _BOOTSTRAP_BLOCK):
        size = min(_BOOTSTRAP_BLOCK, bootstrap - start)
        counts = rng.multinomial(total, cells.ravel() / total, size=size).reshape(size, n_groups, 2, 2)
        for gap, values in _gaps(_rates(counts), eligible).items():
            drawn[gap].append(values)
    gaps = {}
    for gap in GAPS:
        values = np.concatenate(drawn[gap]) if drawn[gap] else np.empty(0)
        values = values[np.isfinite(values)]
        value = float(point[gap])
        low, high = (
            np.percentile(values, [2.5, 97.5]) if len(values) and math.isfinite(value) else (np.nan,) * 2
        )
        usable = eligible.copy()
        for rate in GAP_RATES[gap]:
            usable &= np.isfinite(rates[rate])
        gaps[gap] = {
            "value": value,
            "ci_low": float(low),
            "ci_high": float(high),
            "measured_groups": int(usable.sum()),
        }
    table = pd.DataFrame({"group": names, **rates})
    table["count"] = table["count"].astype(int)
    table["in_gaps"] = eligible
    return AttributeFairness(
        attribute=attribute,
        groups=table,
        gaps=gaps,
        min_group_size=min_group_size,
        unmeasured=_unmeasured(table, max(min_group_size, 1)),
    )


def shown_value(value: float | None, digits: int = 3) -> str:
    """A gap or metric as text; a missing one reads `not measured`, never 0."""
    if value is None or not math.isfinite(value):
        return "not measured"
    return f"{value:.{digits}f}"


def plot_fairness(reports: list[AttributeFairness], path: Path) -> Path:
    """One panel per attribute, stacked (the chart is `CHART_WIDTH_INCHES` wide at `CHART_DPI`
    whatever the number of attributes): selection rate, TPR and FPR per group, groups in their
    order (bins by edge), each labelled with its row count; groups left out of the gaps are
    hatched and an undefined rate is marked `n/a` instead of drawn as 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(reports), 1, figsize=(CHART_WIDTH_INCHES, 0.4 + 2.7 * len(reports)), squeeze=False
    )
    rates = ("selection_rate", "true_positive_rate", "false_positive_rate")
    for ax, report in zip(axes[:, 0], reports, strict=True):
        table = report.groups
        x = np.arange(len(table))
        for offset, column in zip((-0.27, 0.0, 0.27), rates, strict=True):
            values = table[column].to_numpy(dtype=float)
            bars = ax.bar(x + offset, np.nan_to_num(values), width=0.27, label=column.replace("_", " "))
            for bar, value, in_gaps in zip(bars, values, table["in_gaps"], strict=True):
                if not in_gaps:
                    bar.set_hatch("//")
                    bar.set_alpha(0.45)
                if not np.isfinite(value):
                    ax.text(
                        bar.get_x() + bar.get_width() / 2, 0.01, "n/a", ha="center", fontsize=6, rotation=90
                    )
        many = len(table) > 8  # one line each, steeply rotated, or they would overlap
        sep = " " if many else "\n"
        ticks = [f"{g}{sep}n={n}" for g, n in zip(table["group"], table["count"], strict=True)]
        ax.set_xticks(x, ticks, fontsize=6 if many else 7)
        if many or max(len(str(g)) for g in table["group"]) > 10:  # long names would overlap
            plt.setp(ax.get_xticklabels(), rotation=60 if many else 25, ha="right", rotation_mode="anchor")
        dp = report.gaps["demographic_parity_difference"]
        interval = f" [{dp['ci_low']:.3f}, {dp['ci_high']:.3f}]" if math.isfinite(dp["value"]) else ""
        ax.set_title(f"{report.attribute}: DP diff {shown_value(dp['value'])}{interval}", fontsize=9)
        ax.set_ylim(0, 1.05)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=3, fontsize=7, frameon=False)  # above, not on bars
    if any(not r.groups["in_gaps"].all() for r in reports):
        note = "hatched: fewer test rows than min_group_size, left out of the gaps"
        fig.text(0.01, 0.005, note, fontsize=7)
    top = 1 - 0.3 / fig.get_figheight()  # room for the legend
    bottom = 0.2 / fig.get_figheight()  # and for the note
    fig.tight_layout(rect=(0, bottom, 1, top))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=CHART_DPI)
    plt.close(fig)
    return path


def gaps_markdown(report: dict, ungated: str = "") -> str:
    """A report (attribute -> {gaps, limits}) as a markdown table with intervals and limits;
    a gap without a value reads `not measured`."""
    lines = ["| attribute | gap | value | 95% CI | limit |", "|---|---|---:|---|---|"]
    for attribute, entry in report.items():
        for gap, v in entry["gaps"].items():
            limit = entry["limits"].get(gap)
            shown = ungated if limit is None else (f">= {limit}" if gap in GAP_FLOORS else f"<= {limit}")
            measured = v["value"] is not None and math.isfinite(v["value"])
            interval = f"[{v['ci_low']:.3f}, {v['ci_high']:.3f}]" if measured else "-"
            lines.append(f"| {attribute} | {gap} | {shown_value(v['value'])} | {interval} | {shown} |")
    return "\n".join(lines)
