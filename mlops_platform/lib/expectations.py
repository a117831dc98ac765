"""Great Expectations suites built from a dataset spec, and the row-level split they drive.

Two suites validate a landed batch:
- the *format* suite runs on the text as it landed: the column set, a non-empty batch,
  and that numeric cells parse as numbers of the declared type;
- the *values* suite runs on the typed records: null rules, numeric ranges and
  categorical domains, plus a record id and event timestamp on every row.

Row-level expectations carry `mostly = 1 - max_quarantine_fraction`: a batch passes when
each of them holds for enough rows. Rows that break any row-level expectation are
quarantined with the reasons; the rest continue.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from mlops_platform.datasets.spec import DatasetSpec

_NUMBER_PATTERNS = {
    "integer": r"^\s*[-+]?\d+(?:\.0*)?\s*$",
    "float": r"^\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*$",
}


@dataclass(frozen=True)
class ExpectationOutcome:
    """The result of one expectation on one batch."""

    suite: str
    expectation: str
    column: str | None
    success: bool
    unexpected_count: int
    element_count: int
    observed: str

    @property
    def unexpected_fraction(self) -> float:
        return self.unexpected_count / self.element_count if self.element_count else 0.0


@dataclass(frozen=True)
class BatchValidation:
    """Everything the suites found in a batch: per-expectation outcomes and per-row reasons."""

    outcomes: list[ExpectationOutcome]
    row_reasons: pd.Series  # aligned with the batch; empty string for a valid row

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def valid_mask(self) -> pd.Series:
        return self.row_reasons == ""

    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def as_markdown(self) -> str:
        lines = ["| suite | expectation | column | unexpected | passed |", "|---|---|---|---:|---|"]
        for o in self.outcomes:
            lines.append(
                f"| {o.suite} | {o.expectation} | {o.column or ''} | "
                f"{o.unexpected_count}/{o.element_count} | {'yes' if o.success else '**no**'} {o.observed} |"
            )
        return "\n".join(lines)


def build_suites(spec: DatasetSpec, columns_present: list[str]) -> dict[str, object]:
    """The format and values suites for a spec (GX objects; imported here, not at load)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    mostly = 1.0 - spec.quality.max_quarantine_fraction
    present = set(columns_present)
    fmt = [
        gxe.ExpectTableColumnsToMatchSet(column_set=list(spec.columns), exact_match=True),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
    ]
    for name, column in spec.columns.items():
        if column.is_numeric and name in present:
            fmt.append(
                gxe.ExpectColumnValuesToMatchRegex(
                    column=name, regex=_NUMBER_PATTERNS[column.type], mostly=mostly
                )
            )
    values = [
        gxe.ExpectColumnValuesToNotBeNull(column="record_id"),
        gxe.ExpectColumnValuesToBeUnique(column="record_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="event_timestamp", mostly=mostly),
    ]
    for name, column in spec.columns.items():
        if not column.nullable:
            values.append(gxe.ExpectColumnValuesToNotBeNull(column=name, mostly=mostly))
        if column.is_numeric and (column.min is not None or column.max is not None):
            values.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=name, min_value=column.min, max_value=column.max, mostly=mostly
                )
            )
        if column.domain is not None:
            values.append(
                gxe.ExpectColumnValuesToBeInSet(column=name, value_set=column.domain, mostly=mostly)
            )
    return {
        "format": gx.ExpectationSuite(name=f"{spec.name}_format", expectations=fmt),
        "values": gx.ExpectationSuite(name=f"{spec.name}_values", expectations=values),
    }


def validate_batch(text: pd.DataFrame, records: pd.DataFrame, spec: DatasetSpec) -> BatchValidation:
    """Run both suites on one batch (`text` as landed, `records` typed, same row order)."""
    import great_expectations as gx

    text = text.reset_index(drop=True)
    records = records.reset_index(drop=True)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    batches = context.data_sources.add_pandas("landing").add_dataframe_asset("batch")
    definition = batches.add_batch_definition_whole_dataframe("whole_batch")
    reasons: list[list[str]] = [[] for _ in range(len(records))]
    outcomes = []
    suites = build_suites(spec, list(text.columns))
    for suite_name, frame in (("format", text), ("values", records)):
        batch = definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suites[suite_name], result_format={"result_format": "COMPLETE"})
        for res in result.results:
            config = res.expectation_config
            column = config.kwargs.get("column")
            detail = res.result or {}
            unexpected_index = detail.get("unexpected_index_list") or []
            unexpected_values = detail.get("unexpected_list") or []
            for index, value in zip(unexpected_index, unexpected_values, strict=False):
                reasons[index].append(_reason(config.type, column, value, config.kwargs))
            observed = detail.get("observed_value")
            if observed is None and column is not None and column not in frame.columns:
                observed = "column missing"
            outcomes.append(
                ExpectationOutcome(
                    suite=suite_name,
                    expectation=config.type,
                    column=column,
                    success=bool(res.success),
                    unexpected_count=int(detail.get("unexpected_count") or 0),
                    element_count=int(detail.get("element_count") or len(frame)),
                    observed="" if observed is None else f"(observed: {_short(observed)})",
                )
            )
    return BatchValidation(
        outcomes=outcomes, row_reasons=pd.Series(["; ".join(r) for r in reasons], dtype="string")
    )


def _reason(expectation: str, column: str | None, value: object, kwargs: dict) -> str:
    shown = "missing" if pd.isna(value) else repr(value.item() if hasattr(value, "item") else value)
    if expectation == "expect_column_values_to_be_between":
        return f"{column}: {shown} outside [{kwargs.get('min_value')}, {kwargs.get('max_value')}]"
    if expectation == "expect_column_values_to_be_in_set":
        return f"{column}: {shown} not in the domain"
    if expectation == "expect_column_values_to_not_be_null":
        return f"{column}: missing"
    if expectation == "expect_column_values_to_match_regex":
        return f"{column}: {shown} is not a number of the declared type"
    return f"{column}: {shown} fails {expectation}"


def _short(value: object, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
