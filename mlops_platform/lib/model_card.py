"""The model card: a markdown page generated from the spec and the measured results."""

from datetime import UTC, datetime

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.lib.fairness import gaps_markdown

CARD_METRICS = (
    "roc_auc",
    "pr_auc",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "log_loss",
    "brier_score",
    "expected_calibration_error",
)


def model_card(
    spec: DatasetSpec,
    version: str,
    metrics: dict[str, float],
    fairness: dict,
    facts: dict[str, str],
) -> str:
    """Intended use, data, metrics, fairness with intervals, limitations."""
    lines = [
        f"# Model card: {spec.registered_model_name} v{version}",
        "",
        f"_Generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by mlops_platform._",
        "",
        "## Intended use",
        f"Binary classification: predicts whether `{spec.label.column}` is `{spec.label.positive_class}`. "
        f"{spec.description.strip()}",
        "Decision support on records like the training data; not for decisions about individuals "
        "without human review, and not outside the population and period the data covers.",
        "",
        "## Data",
        f"- Dataset `{spec.name}`, training set version `{facts.get('training_set_version', '?')}`.",
        f"- Features: numeric {spec.features.numeric}; categorical {spec.features.categorical}.",
        f"- Splits by a hash of the record id: validation {spec.split.validation:.0%}, "
        f"test {spec.split.test:.0%}; preprocessing fitted on the training split only.",
        "",
        "## Metrics (test split)",
        f"Decision threshold {metrics['threshold']:.3f}, chosen on the validation split to maximize F1.",
        "",
        "| metric | value |",
        "|---|---:|",
        *[f"| {name} | {metrics[name]:.4f} |" for name in CARD_METRICS if name in metrics],
        "",
        "## Fairness (test split, 95% bootstrap intervals)",
        "",
        gaps_markdown(fairness, ungated="not gated"),
        "",
        "## Limitations",
        f"- Groups with fewer than {spec.gates.min_group_size} test rows are left out of the gaps; "
        "small groups have wide intervals.",
        "- Parity gaps partly reflect differences in base rates between groups in the data itself.",
        "- Performance is measured on held-out records from the same period as training; it may drift "
        "as the population changes.",
        "",
        "## Lineage",
        *[f"- {key}: `{value}`" for key, value in facts.items()],
    ]
    return "\n".join(lines) + "\n"
