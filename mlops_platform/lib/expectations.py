"""Great Expectations suites built from a dataset spec, and the row rules behind them.

Two suites validate the well-formed records of a landed batch:
- the *format* suite runs on the text as it landed: the column set, a non-empty batch,
  and that numeric cells have the declared number format (ASCII digits);
- the *values* suite runs on the typed records: null rules, numeric ranges (a float must
  also be finite), categorical domains, plus a unique record id and an event timestamp.

Each row-level expectation is also a `RowRule` that pandas evaluates on every row, to say
which rows break it and why; Great Expectations' unexpected count must equal the rule's
count, or validation stops (`RulesDisagree`). Row-level expectations carry
`mostly = 1 - max_quarantine_fraction`: a batch passes when each holds for enough rows.

A row is quarantined when it breaks any rule or cannot be checked: a ragged line, a
column missing from the file, a timestamp that is not ISO 8601. Its reason starts with
its line in the landing file (`line 7: age: 'abc' is not a number ...; income: missing`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mlops_platform.datasets.csv_text import NUMBER_PATTERNS
from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.lib.landing import LandedFile

if TYPE_CHECKING:
    from great_expectations.core import ExpectationValidationResult

RAGGED = "(ragged line)"
SUITE_CHUNK_ROWS = 250_000  # rows Great Expectations validates at a time
_LARGEST = sys.float_info.max
_NUMBER_KINDS = {
    NUMBER_PATTERNS["integer"]: "integer: ASCII digits, at most 18 of them",
    NUMBER_PATTERNS["float"]: "float: ASCII decimal",
}


class RulesDisagree(RuntimeError):
    """Great Expectations and the row rules counted a different number of breaking rows."""


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
    raised: bool = False

    @property
    def unexpected_fraction(self) -> float:
        return self.unexpected_count / self.element_count if self.element_count else 0.0


@dataclass(frozen=True)
class BatchValidation:
    """The suites' outcomes, every row's reasons, and rows quarantined per column."""

    outcomes: list[ExpectationOutcome]
    row_reasons: pd.Series  # aligned with the batch; empty string for a valid row
    quarantined_by_column: dict[str, int]

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def valid_mask(self) -> pd.Series:
        return self.row_reasons == ""

    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]


@dataclass(frozen=True)
class RowRule:
    """A rule each row must keep: a Great Expectations column expectation, in pandas too."""

    suite: str  # "format": the text as landed; "values": the typed records
    expectation: str
    column: str
    mostly: float | None = None
    regex: str | None = None
    min_value: float | None = None
    max_value: float | None = None
    value_set: tuple[str, ...] | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.suite, self.expectation, self.column)

    def expectation_object(self) -> object:
        import great_expectations.expectations as gxe

        options: dict[str, object] = {"column": self.column}
        if self.mostly is not None:
            options["mostly"] = self.mostly
        if self.expectation == "expect_column_values_to_match_regex":
            return gxe.ExpectColumnValuesToMatchRegex(regex=self.regex, **options)
        if self.expectation == "expect_column_values_to_be_between":
            return gxe.ExpectColumnValuesToBeBetween(
                min_value=self.min_value, max_value=self.max_value, **options
            )
        if self.expectation == "expect_column_values_to_be_in_set":
            return gxe.ExpectColumnValuesToBeInSet(value_set=list(self.value_set or ()), **options)
        if self.expectation == "expect_column_values_to_be_unique":
            return gxe.ExpectColumnValuesToBeUnique(**options)
        return gxe.ExpectColumnValuesToNotBeNull(**options)

    def breaks(self, text: pd.DataFrame, records: pd.DataFrame) -> np.ndarray:
        """Which rows break the rule, counted as Great Expectations counts them."""
        if self.suite == "format":  # the pattern is tried once per distinct cell
            codes, distinct = pd.factorize(text[self.column])  # a missing cell: code -1
            mismatch = ~pd.Index(distinct).astype(str).str.contains(self.regex or "")
            return np.append(np.asarray(mismatch, dtype=bool), False)[codes]
        values = records[self.column]
        present = values.notna().to_numpy(bool)
        if self.expectation == "expect_column_values_to_not_be_null":
            return ~present
        if self.expectation == "expect_column_values_to_be_unique":
            return present & values.duplicated(keep=False).to_numpy(bool)
        if self.expectation == "expect_column_values_to_be_in_set":
            return present & ~values.isin(list(self.value_set or ())).fillna(False).to_numpy(bool)
        outside = np.zeros(len(values), dtype=bool)
        if self.min_value is not None:
            outside |= (values < self.min_value).fillna(False).to_numpy(bool)
        if self.max_value is not None:
            outside |= (values > self.max_value).fillna(False).to_numpy(bool)
        return present & outside

    def reasons(self, text: pd.DataFrame, records: pd.DataFrame, rows: np.ndarray) -> list[str]:
        """Why each of `rows` breaks the rule, naming the column and the value."""
        name = self.column
        if self.suite == "format":
            kind = _NUMBER_KINDS[self.regex or ""]
            return [
                f"{name}: {_shown(c)} is not a number of the declared type ({kind})"
                for c in text[name].to_numpy()[rows]
            ]
        if self.expectation == "expect_column_values_to_not_be_null":
            return [f"{name}: missing"] * len(rows)
        values = records[name].to_numpy(dtype=object)[rows]
        if self.expectation == "expect_column_values_to_be_unique":
            return [f"{name}: {_shown(v)} is not unique in the file" for v in values]
        if self.expectation == "expect_column_values_to_be_in_set":
            return [f"{name}: {_shown(v)} not in the domain" for v in values]
        landed = text[name].to_numpy()[rows] if name in text.columns else values
        bounds = f"[{_bound(self.min_value, '-inf')}, {_bound(self.max_value, 'inf')}]"
        return [
            f"{name}: {_shown(t)} is not a finite number"
            if isinstance(v, float) and not np.isfinite(v)
            else f"{name}: {_shown(v)} outside {bounds}"
            for v, t in zip(values, landed, strict=True)
        ]


def row_rules(spec: DatasetSpec, columns_present: list[str]) -> list[RowRule]:
    """The spec's row-level rules, in suite order (format first, then values)."""
    mostly = 1.0 - spec.quality.max_quarantine_fraction
    present = set(columns_present)
    rules = [
        RowRule("format", "expect_column_values_to_match_regex", name, mostly, regex=NUMBER_PATTERNS[c.type])
        for name, c in spec.columns.items()
        if c.is_numeric and name in present
    ]
    rules += [
        RowRule("values", "expect_column_values_to_not_be_null", "record_id"),
        RowRule("values", "expect_column_values_to_be_unique", "record_id"),
        RowRule("values", "expect_column_values_to_not_be_null", "event_timestamp", mostly),
    ]
    for name, column in spec.columns.items():
        if not column.nullable:
            rules.append(RowRule("values", "expect_column_values_to_not_be_null", name, mostly))
        if column.type == "float" or (column.is_numeric and (column.min, column.max) != (None, None)):
            low, high = column.min, column.max
            if column.type == "float":  # also finite: infinity (e.g. `1e999`) is out of range
                low, high = (-_LARGEST if low is None else low), (_LARGEST if high is None else high)
            rules.append(
                RowRule(
                    "values",
                    "expect_column_values_to_be_between",
                    name,
                    mostly,
                    min_value=low,
                    max_value=high,
                )
            )
        if column.domain is not None:
            rules.append(
                RowRule(
                    "values",
                    "expect_column_values_to_be_in_set",
                    name,
                    mostly,
                    value_set=tuple(column.domain),
                )
            )
    return rules


def build_suites(spec: DatasetSpec, columns_present: list[str]) -> dict[str, object]:
    """The format and values suites for a spec (GX objects; imported here, not at load)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suites: dict[str, list[object]] = {
        "format": [
            gxe.ExpectTableColumnsToMatchSet(column_set=list(spec.columns), exact_match=True),
            gxe.ExpectTableRowCountToBeBetween(min_value=1),
        ],
        "values": [],
    }
    for rule in row_rules(spec, columns_present):
        suites[rule.suite].append(rule.expectation_object())
    return {
        name: gx.ExpectationSuite(name=f"{spec.name}_{name}", expectations=expectations)
        for name, expectations in suites.items()
    }


def run_suites(
    text: pd.DataFrame, records: pd.DataFrame, spec: DatasetSpec, chunk_rows: int = SUITE_CHUNK_ROWS
) -> list[ExpectationOutcome]:
    """Great Expectations' verdict on well-formed records (`text` as landed, `records` typed).

    Great Expectations validates chunks of about `chunk_rows` rows; each expectation's
    counts are added up over the chunks and judged on the whole batch the way Great
    Expectations judges one batch (`mostly` of all rows, the row count of all rows). Rows go
    to chunks by a hash of their record id, so every copy of an id is in one chunk and the
    uniqueness expectation counts them as on the whole batch. A chunk's columns reach Great
    Expectations holding the same values in cheaper containers: text as categoricals (its
    pandas metrics then work once per distinct value) and integers as float64 when every
    value is exact in it (compared vectorized).
    """
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    batches = context.data_sources.add_pandas("landing").add_dataframe_asset("batch")
    definition = batches.add_batch_definition_whole_dataframe("whole_batch")
    suites = build_suites(spec, list(text.columns))
    measured: dict[str, list[list[_Measured]]] = {name: [] for name in suites}
    for rows in _chunks(records["record_id"], chunk_rows):
        for suite_name, frame in (("format", text), ("values", records)):
            chunk = _as_gx_columns(frame.iloc[rows])
            batch = definition.get_batch(batch_parameters={"dataframe": chunk})
            result = batch.validate(suites[suite_name], result_format={"result_format": "BASIC"})
            measured[suite_name].append([_Measured.of(res, chunk) for res in result.results])
    return [
        _combined(suite_name, [chunk[i] for chunk in chunks])
        for suite_name, chunks in measured.items()
        for i in range(len(chunks[0]))
    ]


def rows_where(frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """The rows of `frame` where `mask` holds, numbered from 0: `frame` itself, not copied,
    when that is every row and they are numbered from 0 already."""
    if mask.all() and frame.index.equals(pd.RangeIndex(len(frame))):
        return frame
    return frame[mask].reset_index(drop=True)


def _chunks(record_ids: pd.Series, chunk_rows: int) -> list[np.ndarray]:
    """Row positions of each chunk (in batch order), chunks chosen by a hash of the record id;
    one chunk, maybe empty, for a small batch."""
    count = max(1, -(-len(record_ids) // chunk_rows))
    if count == 1:
        return [np.arange(len(record_ids))]
    chunk_of = pd.util.hash_pandas_object(record_ids, index=False).to_numpy() % np.uint64(count)
    order = np.argsort(chunk_of, kind="stable")
    return np.split(order, np.cumsum(np.bincount(chunk_of.astype(np.int64), minlength=count))[:-1])


_EXACT_IN_FLOAT = 2**53  # every integer of smaller magnitude is exact in a float64


def _as_gx_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame's values in the containers Great Expectations evaluates fastest."""
    out = {}
    for name, values in frame.items():
        if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
            codes, distinct = pd.factorize(values)
            out[name] = pd.Categorical.from_codes(codes, categories=distinct)
        elif isinstance(values.dtype, pd.Int64Dtype) and (values.abs() < _EXACT_IN_FLOAT).all():
            out[name] = values.astype("float64")
        else:
            out[name] = values
    return pd.DataFrame(out, index=frame.index)


@dataclass(frozen=True)
class _Measured:
    """One expectation's result on one chunk."""

    expectation: str
    column: str | None
    kwargs: dict
    success: bool
    unexpected_count: int
    element_count: int
    missing_count: int
    observed: object
    raised: bool

    @classmethod
    def of(cls, res: ExpectationValidationResult, frame: pd.DataFrame) -> _Measured:
        config = res.expectation_config
        column = config.kwargs.get("column")
        detail = res.result or {}
        raised = bool((res.exception_info or {}).get("raised_exception"))
        observed = detail.get("observed_value")
        if observed is None and column is not None and column not in frame.columns:
            observed = "column missing"
        elif raised:
            observed = (res.exception_info or {}).get("exception_message")
        return cls(
            expectation=config.type,
            column=column,
            kwargs=dict(config.kwargs),
            success=bool(res.success),
            unexpected_count=int(detail.get("unexpected_count") or 0),
            element_count=int(detail.get("element_count") or len(frame)),
            missing_count=int(detail.get("missing_count") or 0),
            observed=observed,
            raised=raised,
        )


def _combined(suite: str, chunks: list[_Measured]) -> ExpectationOutcome:
    """One expectation's outcome on the whole batch from its results on the chunks."""
    first = chunks[0]
    unexpected = sum(c.unexpected_count for c in chunks)
    elements = sum(c.element_count for c in chunks)
    observed = first.observed
    raised = [c for c in chunks if c.raised]
    if raised:
        success, observed = False, raised[0].observed
    elif first.expectation == "expect_table_row_count_to_be_between":
        low, high = first.kwargs.get("min_value"), first.kwargs.get("max_value")
        observed = sum(int(c.observed or 0) for c in chunks)
        success = (low is None or observed >= low) and (high is None or observed <= high)
    elif first.column is None:  # table-level, the same on every chunk (the column set)
        success = all(c.success for c in chunks)
        observed = next((c.observed for c in chunks if not c.success), first.observed)
    else:  # a column map expectation: `mostly` of the rows it considers (non-null ones, but
        # for the null rule itself), vacuously true when there are none
        considered = elements - sum(c.missing_count for c in chunks)
        mostly = 1.0 if first.kwargs.get("mostly") is None else first.kwargs["mostly"]
        success = considered == 0 or (considered - unexpected) / considered >= mostly
    return ExpectationOutcome(
        suite=suite,
        expectation=first.expectation,
        column=first.column,
        success=success,
        unexpected_count=unexpected,
        element_count=elements,
        observed="" if observed is None else f"(observed: {_short(observed)})",
        raised=bool(raised),
    )


def outcomes_markdown(outcomes: list[ExpectationOutcome]) -> str:
    """The outcomes as a Markdown table."""
    lines = ["| suite | expectation | column | unexpected | passed |", "|---|---|---|---:|---|"]
    for o in outcomes:
        lines.append(
            f"| {o.suite} | {o.expectation} | {o.column or ''} | "
            f"{o.unexpected_count}/{o.element_count} | {'yes' if o.success else '**no**'} {o.observed} |"
        )
    return "\n".join(lines)


def outcomes_to_json(outcomes: list[ExpectationOutcome]) -> str:
    return json.dumps([dataclasses.asdict(o) for o in outcomes])


def outcomes_from_json(text: str) -> list[ExpectationOutcome]:
    return [ExpectationOutcome(**o) for o in json.loads(text)]


def validate_batch(
    landed: LandedFile, records: pd.DataFrame, spec: DatasetSpec, outcomes: list[ExpectationOutcome]
) -> BatchValidation:
    """Every row's reasons to be quarantined, checked against the suites' `outcomes`.

    `records` are the typed rows of `landed`, in its order. Raises `RulesDisagree` when a
    rule finds a different number of breaking rows than Great Expectations did.
    """
    well = landed.well_formed
    text = landed.text
    rows_w = np.flatnonzero(well)
    text_w, records_w = rows_where(text, well), rows_where(records, well)
    found: list[tuple[np.ndarray, str, list[str]]] = []

    ragged = np.flatnonzero(~well)
    found.append((ragged, RAGGED, landed.faults.to_numpy()[ragged].tolist()))
    for name in spec.columns:
        if name not in text.columns:
            found.append((rows_w, name, [f"column {name} missing from {landed.path}"] * len(rows_w)))
    for name, column in spec.columns.items():
        if column.type == "timestamp" and name in text.columns:
            bad = np.flatnonzero(text_w[name].notna().to_numpy(bool) & records_w[name].isna().to_numpy(bool))
            reasons = [
                f"{name}: {_shown(c)} is not an ISO 8601 timestamp" for c in text_w[name].to_numpy()[bad]
            ]
            found.append((rows_w[bad], name, reasons))

    counts = {}
    for rule in row_rules(spec, list(text.columns)):
        bad = np.flatnonzero(rule.breaks(text_w, records_w))
        counts[rule.key] = len(bad)
        found.append((rows_w[bad], rule.column, rule.reasons(text_w, records_w, bad)))
    _require_agreement(landed, outcomes, counts)

    problems = pd.DataFrame(
        {
            "row": np.concatenate([rows for rows, _, _ in found]).astype(np.int64),
            "column": [column for rows, column, _ in found for _ in range(len(rows))],
            "reason": [reason for _, _, reasons in found for reason in reasons],
        }
    ).drop_duplicates(["row", "column"])  # one reason per cell: the first (most basic) one
    joined = problems.groupby("row", sort=True)["reason"].agg("; ".join)
    row_reasons = pd.Series("", index=range(len(text)), dtype="string")
    row_reasons[joined.index] = [f"line {landed.lines[r]}: {reason}" for r, reason in joined.items()]
    return BatchValidation(
        outcomes=outcomes,
        row_reasons=row_reasons,
        quarantined_by_column=problems["column"].value_counts().to_dict(),
    )


def _require_agreement(
    landed: LandedFile, outcomes: list[ExpectationOutcome], counts: dict[tuple[str, str, str], int]
) -> None:
    measured = {(o.suite, o.expectation, o.column): o for o in outcomes if o.column is not None}
    missing = sorted(set(counts) - set(measured))
    if missing:
        raise RulesDisagree(f"{landed.path}: Great Expectations did not report {missing}")
    disagree = [
        f"{key[1]}({key[2]}): Great Expectations {measured[key].unexpected_count}, rules {count}"
        for key, count in counts.items()
        if not measured[key].raised and measured[key].unexpected_count != count
    ]
    if disagree:
        raise RulesDisagree(
            f"{landed.path}: the row rules in lib/expectations.py and Great Expectations count different "
            f"rows: {'; '.join(disagree)}"
        )


def _shown(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return "missing"
    return _short(repr(value.item() if isinstance(value, np.generic) else value))


def _bound(value: float | None, unbounded: str) -> str:
    if value is None or abs(value) >= _LARGEST:
        return unbounded
    return str(int(value)) if float(value).is_integer() else str(value)


def _short(value: object, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
