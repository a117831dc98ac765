"""Names of the metrics and fairness gaps that specs, gates and reports share (no heavy imports)."""

CLASSIFICATION_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier_score",
    "expected_calibration_error",
)
# Lower is better for these; every other metric is better when higher.
LOWER_IS_BETTER = frozenset({"log_loss", "brier_score", "expected_calibration_error"})

FAIRNESS_GAPS = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equal_opportunity_difference",
    "equalized_odds_difference",
    "predictive_parity_difference",
)
# A ratio is a floor (higher is fairer); every other gap is a ceiling.
GAP_FLOORS = frozenset({"demographic_parity_ratio"})
