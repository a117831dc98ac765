"""Does a spec fit its data? `mlops check-spec` and the code location's check at load.

`load_spec` validates the YAML itself; this compares the spec with its source: the header and
a bounded sample of rows (the first SAMPLE_ROWS), read the way `lib/landing.py` reads the
source (every cell text, an empty cell missing) and judged by the row rules' own formats
(`lib/batches.py`). Every problem is listed at once, each naming the spec file and the field.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlops_platform.datasets.csv_text import read_csv_text
from mlops_platform.datasets.spec import ColumnSpec, DatasetSpec, SpecError, category_text, load_spec, shown

SAMPLE_ROWS = 10_000
_SHOWN_VALUES = 3  # offending values quoted per problem
_SHOWN_DOMAIN = 12  # domain values quoted per problem


def check_spec(path: Path, sample_rows: int = SAMPLE_ROWS) -> list[str]:
    """Every problem of the spec at `path`: one when it does not load (the `SpecError`), else
    each way it and a sample of its source disagree. Empty when the spec fits its data."""
    try:
        spec = load_spec(path)
    except SpecError as exc:  # a YAML error spans several lines: one problem, one line
        return ["; ".join(line.strip() for line in str(exc).splitlines() if line.strip())]
    return source_problems(spec, path, sample_rows)


def require_matching_source(spec: DatasetSpec, spec_path: Path) -> None:
    """Raise `SpecError` listing (one a line) the columns the spec and its source's header disagree
    on, or why the header cannot be read. Only the header: a bad row is for ingestion to
    quarantine, not a reason to refuse the code location; a source that is not there is not
    checked (data may land from elsewhere)."""
    if not Path(spec.source.path).is_file():
        return
    _, problems = _header_problems(spec, spec_path)
    if problems:
        raise SpecError("\n".join(problems))


def source_problems(spec: DatasetSpec, spec_path: Path, sample_rows: int = SAMPLE_ROWS) -> list[str]:
    """Each way the spec and the header plus the first `sample_rows` rows of its source disagree."""
    header, problems = _header_problems(spec, spec_path)
    if header is None:
        return problems
    where, source = str(spec_path), Path(spec.source.path)
    named = _shown_path(source, Path(spec_path))
    try:
        sample = read_csv_text(source, sample_rows, header)
    except (ValueError, OSError, EOFError) as exc:
        return [*problems, f"{where}: source.path: {_unreadable(exc, source, named)}"]
    if sample.empty:
        return [*problems, f"{where}: source.path: {named} has a header but no rows"]
    for name, column in spec.columns.items():
        if name in sample.columns:
            problems += [f"{where}: columns.{name}: {p}" for p in column_problems(column, sample[name])]
    id_column = spec.source.id_column
    if id_column in sample.columns:
        ids = sample[id_column].dropna()
        repeated = ids[ids.duplicated()].unique().tolist()
        if repeated:
            problems.append(
                f"{where}: source.id_column: {id_column} is not unique: {_values(repeated)} "
                f"{'repeats' if len(repeated) == 1 else 'repeat'} (in {len(sample):,} sampled rows)"
            )
    return problems


def _header_problems(spec: DatasetSpec, spec_path: Path) -> tuple[list[str] | None, list[str]]:
    """The source's header (None when it cannot be read) and the columns it and the spec
    disagree on, or why it cannot be read."""
    from mlops_platform.datasets.inference import read_header

    where = str(spec_path)
    source = Path(spec.source.path)
    named = _shown_path(source, Path(spec_path))
    if not source.exists():
        return None, [f"{where}: source.path: {named} does not exist"]
    if not source.is_file():
        return None, [f"{where}: source.path: {named} is not a file"]
    try:
        header = read_header(source)
    except (ValueError, OSError, EOFError) as exc:
        return None, [f"{where}: source.path: {_unreadable(exc, source, named)}"]
    problems = [
        f"{where}: columns.{name}: declared, but the source {named} has no column {name!r}"
        for name in spec.columns
        if name not in header
    ]
    problems += [
        f"{where}: columns.{name}: not declared, but the source {named} has a column {name!r}"
        for name in header
        if name not in spec.columns
    ]
    return header, problems


def column_problems(column: ColumnSpec, cells: pd.Series) -> list[str]:
    """What in `cells` (text, missing as NA) breaks `column`'s type, nulls, range or domain."""
    from mlops_platform.datasets.csv_text import has_number_format, parse_timestamps

    problems = []
    sampled = f"of {len(cells):,} sampled rows"
    present = cells.notna()
    empty = int((~present).sum())
    if empty and not column.nullable:
        problems.append(f"not nullable, but {empty:,} {sampled} have an empty cell")
    values = cells[present]
    if column.is_numeric:
        formatted = has_number_format(values, column.type)
        wrong = values[~formatted]
        if len(wrong):
            kind = "an integer" if column.type == "integer" else "a number"
            problems.append(
                f"declared {column.type}, but {_values(wrong.unique())} {_is(wrong)} not {kind} "
                f"({len(wrong):,} {sampled})"
            )
        numbers = pd.to_numeric(values[formatted].str.strip(), errors="coerce")
        outside = pd.Series(False, index=numbers.index)
        if column.min is not None:
            outside |= numbers < column.min
        if column.max is not None:
            outside |= numbers > column.max
        if outside.any():
            bounds = f"[{_bound(column.min, '-inf')}, {_bound(column.max, 'inf')}]"
            written = values[formatted][outside]
            problems.append(
                f"{_values(written.unique(), quote=False)} {_is(written)} outside min/max {bounds} "
                f"({int(outside.sum()):,} {sampled})"
            )
    elif column.type == "timestamp":
        wrong = values[parse_timestamps(values).isna()]
        if len(wrong):
            problems.append(
                f"declared timestamp, but {_values(wrong.unique())} {_is(wrong)} not ISO 8601 "
                f"({len(wrong):,} {sampled})"
            )
    elif column.domain is not None:
        wrong = values[~values.isin(column.domain)]
        if len(wrong):
            problems.append(
                f"{_values(wrong.unique())} {_is(wrong)} not in the domain {_domain(column.domain)} "
                f"({len(wrong):,} {sampled})"
            )
    return problems


def _unreadable(exc: Exception, source: Path, named: str) -> str:
    """Why the source cannot be read, naming it as the spec does."""
    if isinstance(exc, UnicodeDecodeError):
        return f"{named} is not UTF-8 ({exc.reason}); save it as UTF-8"
    text = " ".join(str(exc).split()).replace(str(source), named)
    if isinstance(exc, pd.errors.EmptyDataError) or "is empty" in text:
        return f"{named} is empty: expected a header line naming the columns, then rows"
    if isinstance(exc, pd.errors.ParserError):
        return f"{named} is not a CSV table: {text}"
    return text if text.startswith(named) else f"{named}: {text}"


def _shown_path(source: Path, spec_path: Path) -> str:
    """The source as the spec names it: relative to the spec's folder when inside it."""
    try:
        return str(source.resolve().relative_to(spec_path.resolve().parent))
    except ValueError:
        return str(source)


def _values(values: object, quote: bool = True) -> str:
    """Up to _SHOWN_VALUES values as the source writes them (quoted: `'abc'`, or as numbers)."""
    items = list(values)  # type: ignore[call-overload]
    shown_items = [repr(v) if quote else str(v).strip() for v in items[:_SHOWN_VALUES]]
    more = f" and {len(items) - _SHOWN_VALUES} more" if len(items) > _SHOWN_VALUES else ""
    return ", ".join(shown_items) + more


def _is(values: pd.Series) -> str:
    return "is" if values.nunique() == 1 else "are"


def _domain(domain: list[str]) -> str:
    if len(domain) <= _SHOWN_DOMAIN:
        return shown(domain)
    return shown(domain[:_SHOWN_DOMAIN])[:-1] + f", ... ({len(domain)} values)]"


def _bound(value: float | None, unbounded: str) -> str:
    return unbounded if value is None else category_text(value)
