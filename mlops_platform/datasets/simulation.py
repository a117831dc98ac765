"""Parsed forms of the spec's simulation and canary settings: column shifts and the canary
analysis thresholds (no heavy imports; `lib/` applies them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shift:
    """A change applied to a column of simulated batches.

    Numeric columns: `delta` is added (and the result clipped to the spec's range, so the
    rows stay valid and the shift shows up as drift, not as quarantine). Categorical
    columns: a `fraction` of rows takes `value`.
    """

    column: str
    delta: float | None = None
    value: str | None = None
    fraction: float = 0.5

    @classmethod
    def parse(cls, text: str) -> Shift:
        """`NUM=+15`, `NUM=-5`, `CAT=VALUE` or `CAT=VALUE:0.8` (a fraction of rows)."""
        column, sep, change = text.partition("=")
        if not sep or not column or not change:
            raise ValueError(f"shift {text!r}: expected COLUMN=+N, COLUMN=-N or COLUMN=VALUE[:FRACTION]")
        if change[0] in "+-":
            try:
                return cls(column=column, delta=float(change))
            except ValueError:
                raise ValueError(f"shift {text!r}: {change!r} is not a number") from None
        value, _, fraction = change.partition(":")
        try:
            share = float(fraction) if fraction else 0.5
        except ValueError:
            raise ValueError(f"shift {text!r}: fraction {fraction!r} is not a number") from None
        if not 0.0 < share <= 1.0:
            raise ValueError(f"shift {text!r}: fraction must be in (0, 1]")
        return cls(column=column, value=value, fraction=share)


@dataclass(frozen=True)
class AnalysisPolicy:
    min_samples: int = 200
    max_error_rate_increase: float = 0.02
    max_latency_ratio: float = 1.5
    latency_margin_ms: float = 2.0
    max_prediction_psi: float = 0.25
    prediction_alpha: float = 0.01
