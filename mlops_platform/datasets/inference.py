"""A dataset spec inferred from a CSV: what `mlops init DATA.csv --label COLUMN` writes.

The CSV is read the way the platform lands it: every cell is text, only an empty cell is
missing (`lib/landing.py`), numbers must have the format of `lib/batches.py`'s
`NUMBER_PATTERNS`, timestamps are ISO 8601, and the header's names are the column names.
The result is commented YAML that `load_spec` accepts as it is; every section says what it
is and how its values were chosen from the file.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np
import yaml

from mlops_platform.datasets.csv_text import NUMBER_PATTERNS, parse_timestamps
from mlops_platform.datasets.spec import RESERVED_COLUMNS, DatasetSpec, SpecError, is_integer_code

if TYPE_CHECKING:
    import pyarrow as pa

# Integer columns with at most CODE_MAX_DISTINCT distinct values, all within
# [-CODE_MAX_ABS, CODE_MAX_ABS], are codes (`cp: 0..3`, `sex: 0/1`): categorical.
CODE_MAX_DISTINCT = 10
CODE_MAX_ABS = 20
# A categorical column with more distinct values gets no domain (any value is accepted).
MAX_DOMAIN = 200
# Observed numeric ranges are widened by this fraction of their spread on each side.
RANGE_MARGIN = 0.10
# The simulation's reference period (the first model's data) covers this share of the rows.
REFERENCE_SHARE = 0.9
MIN_GROUP_FLOOR = 5  # fewer test rows than this in a group: its rates are not a measurement
MAX_REFERENCE_DAYS = 30
# How other tools write a missing value; the platform reads only an empty cell as missing.
MISSING_MARKERS = frozenset(
    {"?", "-", "NA", "N/A", "n/a", "na", "NaN", "nan", "null", "NULL", "None", "#N/A"}
)
COMPRESSIONS = (".gz", ".bz2")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_TIMESTAMP_LIKE = r"^\d{4}-\d{2}-\d{2}"
_COMMENT_COLUMN = 40
_MAX_LINE = 110


@dataclass(frozen=True)
class ColumnProfile:
    """What the file says about one column.

    `counts`: distinct present values (as written) and their rows, for categorical columns
    with at most MAX_DOMAIN values and for the label; `low`/`high`: the observed range of a
    numeric column; `code`: integer codes declared categorical; `markers`: missing-value
    markers (`?`, `NA`, ...) that a categorical column holds as categories.
    """

    name: str
    type: str
    rows: int
    missing: int
    distinct: int
    counts: dict[str, int] = field(default_factory=dict)
    low: float | None = None
    high: float | None = None
    code: bool = False
    markers: dict[str, int] = field(default_factory=dict)

    @property
    def present(self) -> int:
        return self.rows - self.missing

    @property
    def is_numeric(self) -> bool:
        return self.type in ("integer", "float")

    @property
    def near_unique(self) -> bool:
        """Text with more distinct values than a domain holds, most of them once: free text
        or an identifier, no feature."""
        return self.type == "categorical" and self.distinct > MAX_DOMAIN and self.distinct > self.present / 2


@dataclass(frozen=True)
class Sizing:
    """Sizes scaled to the file's row count (see `size_for`)."""

    rows: int
    reference_days: int
    rows_per_day: int
    holdout: float  # the validation and the test fraction
    train_rows: int
    test_rows: int
    reference_rows: int
    window_rows: int
    min_window_rows: int
    min_labelled_rows: int
    min_group_size: int
    max_calibration_error: float
    regression_tolerance: float
    baseline_tolerance: float
    max_live_degradation: float
    search_trials: int
    hidden_sizes: tuple[int, ...]

    @property
    def reference_total(self) -> int:
        return self.reference_days * self.rows_per_day

    @property
    def source_days(self) -> int:
        """Days of `rows_per_day` the file holds (sequential days; later ones are resampled)."""
        return max(1, self.rows // self.rows_per_day)


def _clamp(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def size_for(rows: int, group_shares: Sequence[float] = ()) -> Sizing:
    """Simulation, split, monitoring, gate and search sizes a file of `rows` rows can meet.

    `group_shares`: for each sensitive attribute, the share of rows in its smallest group (every
    group of a gated attribute needs `min_group_size` test rows, else its gap is unmeasured).
    """
    reference = max(1, round(REFERENCE_SHARE * rows))
    days = 1 if reference < 3 else int(_clamp(math.ceil(reference / 1000), 3, MAX_REFERENCE_DAYS))
    per_day = math.ceil(reference / days)
    total = days * per_day
    holdout = 0.2 if total < 2000 else 0.15
    test = max(1, math.floor(total * holdout))
    train = max(1, total - 2 * test)
    group_size = int(_clamp(test // 20, MIN_GROUP_FLOOR, 50))
    for share in group_shares:  # half a group's expected test rows, unless that leaves under 5
        if math.floor(share * test / 2) >= MIN_GROUP_FLOOR:
            group_size = min(group_size, math.floor(share * test / 2))
    reference_rows = int(_clamp(train, 100, 2000))
    window = int(_clamp(reference_rows // 2, 50, 1000))
    labelled = int(_clamp(window // 5, 10, 200))
    trials = 20 if rows < 20_000 else 10 if rows < 200_000 else 5 if rows < 1_000_000 else 0
    return Sizing(
        rows=rows,
        reference_days=days,
        rows_per_day=per_day,
        holdout=holdout,
        train_rows=train,
        test_rows=test,
        reference_rows=reference_rows,
        window_rows=window,
        min_window_rows=int(_clamp(window * 3 // 10, 30, 300)),
        min_labelled_rows=labelled,
        min_group_size=max(1, group_size),
        max_calibration_error=round(_clamp(3.3 / math.sqrt(test), 0.05, 0.3), 2),
        regression_tolerance=round(_clamp(0.7 / math.sqrt(test), 0.01, 0.1), 2),
        baseline_tolerance=round(_clamp(0.7 / math.sqrt(test), 0.01, 0.1), 2),
        max_live_degradation=round(_clamp(0.7 / math.sqrt(labelled), 0.05, 0.2), 2),
        search_trials=trials,
        hidden_sizes=(32, 16) if train < 5000 else (64, 32),
    )


# ---------------------------------------------------------------------------------------------
# Reading the file


def data_stem(path: Path) -> str:
    """`adult` for `adult.csv.gz`: the file name without compression and CSV suffixes."""
    name = path.name
    for suffix in COMPRESSIONS:
        name = name.removesuffix(suffix)
    return Path(name).stem or name


def default_output(csv_path: Path) -> Path:
    """Where `mlops init` writes without `-o`: `<stem>.yaml` beside the CSV."""
    return csv_path.parent / f"{data_stem(csv_path)}.yaml"


def identifier(text: str) -> str:
    """`text` as a lower-case identifier: `Heart Disease-2020` -> `heart_disease_2020`."""
    name = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")
    return name if name and not name[0].isdigit() else f"data_{name}".rstrip("_")


def _open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when its name ends in .gz or .bz2 (as pandas and Arrow do)."""
    if path.name.endswith(".gz"):
        import gzip

        return gzip.open(path, "rb")
    if path.name.endswith(".bz2"):
        import bz2

        return bz2.open(path, "rb")
    return open(path, "rb")


def _open_text(path: Path) -> IO[str]:
    """The file as UTF-8 text (a leading byte-order mark skipped), for the csv module."""
    return io.TextIOWrapper(_open_binary(path), encoding="utf-8-sig", newline="")


def read_header(path: Path) -> list[str]:
    """The header line's names, checked: the file exists, is UTF-8, has a header, no name is
    empty or repeated. Raises FileNotFoundError or ValueError naming the file."""
    import csv

    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    try:
        with _open_text(path) as text:
            header = next(csv.reader(text), None)
    except UnicodeDecodeError:
        raise ValueError(_not_utf8(path)) from None
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: cannot be read: {exc}") from None
    if header is None:
        raise ValueError(f"{path} is empty: expected a header line naming the columns, then rows")
    if not header or not any(name.strip() for name in header):
        raise ValueError(f"{path}: line 1 is empty; line 1 must be the header naming the columns")
    from mlops_platform.datasets.csv_text import check_header

    check_header(path, header)
    return header


def _check_names(path: Path, header: list[str]) -> None:
    """The platform reads the CSV by its header names: each must be a usable column name."""
    for name in header:
        if not _IDENTIFIER.match(name):
            raise ValueError(
                f"{path}: column {name!r} is not a lower-case SQL identifier ([a-z_][a-z0-9_]*); the "
                f"platform reads the CSV by its header: rename it in the file (to {identifier(name)!r}?)"
            )
        if name in RESERVED_COLUMNS:
            raise ValueError(
                f"{path}: column {name!r}: the platform adds a column of that name at ingestion "
                f"({', '.join(sorted(RESERVED_COLUMNS))}): rename it in the file"
            )


def _not_utf8(path: Path) -> str:
    """Why the file is not UTF-8, naming the first line that is not (the whole file is read)."""
    with _open_binary(path) as binary:
        data = binary.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f"{path}: line {line}: not UTF-8 ({exc.reason}); save the file as UTF-8"
    return f"{path}: not UTF-8; save the file as UTF-8"


def read_text_table(path: Path) -> tuple[list[str], pa.Table]:
    """The CSV as text columns (an empty cell is null), with its checked header."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    header = read_header(path)
    _check_names(path, header)
    try:
        table = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
                null_values=[""],
            ),
        )
    except pa.ArrowInvalid as exc:
        if "UTF8" in str(exc):
            raise ValueError(_not_utf8(path)) from None
        raise ValueError(f"{path}: {' '.join(str(exc).split())}") from None
    if table.num_rows == 0:
        raise ValueError(f"{path} has a header but no rows")
    return header, table


# ---------------------------------------------------------------------------------------------
# Profiling columns


def _matches(values: pa.Array, pattern: str) -> np.ndarray:
    from mlops_platform.datasets.csv_text import matches_pattern

    return np.asarray(matches_pattern(values, pattern).to_numpy(zero_copy_only=False), dtype=bool)


def _numbers(values: pa.Array) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(pc.utf8_trim(values, " \t"), pa.float64()).to_numpy(zero_copy_only=False)


def _all_timestamps(values: pa.Array) -> bool:
    """Every value is an ISO 8601 date or timestamp (as `lib/batches.py` parses them)."""
    if len(values) == 0 or not _matches(values, _TIMESTAMP_LIKE).all():
        return False
    return bool(parse_timestamps(values.to_pandas()).notna().all())


def profile_column(path: Path, name: str, cells: pa.ChunkedArray) -> ColumnProfile:
    """Type, missing count, distinct values and range of one text column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = len(cells)
    counted = pc.value_counts(cells)
    values_all = counted.field("values")
    keep = pc.is_valid(values_all)
    values = pc.filter(values_all, keep)
    counts = pc.filter(counted.field("counts"), keep).to_numpy()
    texts: list[str] = values.to_pylist()
    base = {"name": name, "rows": rows, "missing": cells.null_count, "distinct": len(texts)}
    if not texts:
        return ColumnProfile(type="categorical", **base)
    blank = np.array([t.strip() == "" or t in MISSING_MARKERS for t in texts], dtype=bool)
    real = pc.filter(values, pa.array(~blank))
    numeric = len(real) > 0 and _matches(real, NUMBER_PATTERNS["float"]).all()
    if blank.any() and (numeric or _all_timestamps(real)):
        written = ", ".join(
            f"{t!r} ({c:,} rows)" for t, c, b in sorted(zip(texts, counts.tolist(), blank, strict=True)) if b
        )
        kind = "numbers" if numeric else "timestamps"
        raise ValueError(
            f"{path}: column {name!r} holds {kind}, and {written}: the platform reads only an empty cell as "
            "missing; write missing values as empty cells"
        )
    if numeric:
        numbers = _numbers(values)
        if not np.isfinite(numbers).all():
            raise ValueError(f"{path}: column {name!r} holds a number too large for a float")
        low, high = float(np.min(numbers)), float(np.max(numbers))
        if not _matches(values, NUMBER_PATTERNS["integer"]).all():
            return ColumnProfile(type="float", low=low, high=high, **base)
        distinct_numbers = np.unique(numbers)
        if len(distinct_numbers) <= CODE_MAX_DISTINCT and np.abs(distinct_numbers).max() <= CODE_MAX_ABS:
            counted_codes = dict(zip(texts, counts.tolist(), strict=True))
            return ColumnProfile(type="categorical", counts=counted_codes, code=True, **base)
        return ColumnProfile(type="integer", low=low, high=high, **base)
    if _all_timestamps(values):
        return ColumnProfile(type="timestamp", **base)
    markers = {t: int(c) for t, c, b in sorted(zip(texts, counts, blank, strict=True)) if b}
    kept = dict(zip(texts, counts.tolist(), strict=True)) if len(texts) <= MAX_DOMAIN else {}
    return ColumnProfile(type="categorical", counts=kept, markers=markers, **base)


def _is_id(profile: ColumnProfile) -> bool:
    named = profile.name == "id" or profile.name.endswith("_id")
    unique = profile.missing == 0 and profile.distinct == profile.rows and profile.rows > 1
    kind = profile.type == "integer" or (profile.type == "categorical" and not profile.code)
    return named and unique and kind


# ---------------------------------------------------------------------------------------------
# Choosing values


def _round_outward(value: float, step: float, down: bool) -> float:
    return (math.floor if down else math.ceil)(value / step) * step


def widened_range(profile: ColumnProfile) -> tuple[float, float]:
    """The observed range widened by RANGE_MARGIN of its spread on each side (by 1 for a constant
    column, by RANGE_MARGIN of its value when that is larger); integers rounded outward to whole
    numbers, floats to a step of a hundredth of the spread's order of magnitude; a column with no
    negative value keeps min >= 0."""
    low, high = float(profile.low or 0), float(profile.high or 0)
    spread = high - low
    if not math.isfinite(spread) or not math.isfinite(RANGE_MARGIN * max(abs(low), abs(high), spread)):
        return low, high  # values near the float limits: the observed range, no margin
    margin = RANGE_MARGIN * spread if spread > 0 else max(1.0, RANGE_MARGIN * abs(low))
    new_low, new_high = low - margin, high + margin
    if profile.type == "integer":
        new_low, new_high = math.floor(new_low), math.ceil(new_high)
    else:
        step = 10.0 ** (math.floor(math.log10(max(spread, margin))) - 2)
        new_low, new_high = _round_outward(new_low, step, True), _round_outward(new_high, step, False)
        digits = max(0, -math.floor(math.log10(step)))
        new_low, new_high = round(new_low, digits), round(new_high, digits)
    if low >= 0:
        new_low = max(0.0, new_low)
    return new_low, new_high


def _significant(value: float, digits: int = 2) -> float:
    if value == 0:
        return 0.0
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def bin_edges(numbers: np.ndarray, test_rows: int) -> list[float]:
    """Group edges of a numeric sensitive attribute at its quartiles (at its median when the test
    split is under 200 rows, so that each group keeps enough rows), to 2 significant digits."""
    numbers = numbers[~np.isnan(numbers)]
    if len(numbers) == 0:
        return []
    quantiles = (0.25, 0.5, 0.75) if test_rows >= 200 else (0.5,)
    low, high = float(numbers.min()), float(numbers.max())
    edges = sorted({_significant(float(q)) for q in np.quantile(numbers, quantiles)})
    return [e for e in edges if low < e <= high]


def group_shares(numbers_or_counts: np.ndarray | dict[str, int], edges: list[float] | None) -> list[float]:
    """Shares of rows per group, largest first: by `edges` for numbers, else by category."""
    if isinstance(numbers_or_counts, dict):
        sizes = np.array(list(numbers_or_counts.values()), dtype=float)
    else:
        present = numbers_or_counts[~np.isnan(numbers_or_counts)]
        sizes = np.bincount(np.digitize(present, edges or []), minlength=len(edges or []) + 1).astype(float)
    total = sizes.sum()
    return sorted((sizes / total).tolist(), reverse=True) if total else []


def choose_positive(path: Path, label: str, counts: dict[str, int], given: str | None) -> str:
    """The positive class: `given` (one of the label's two values); else the conventional one of
    `0`/`1`, `no`/`yes`, `false`/`true`, `n`/`y` (`1`, `yes`, ...); else the minority class (on a
    tie, the later of the two in sorted order)."""
    values = sorted(counts)
    if len(values) != 2:
        shown_values = ", ".join(repr(v) for v in values[:10]) + (", ..." if len(values) > 10 else "")
        raise ValueError(
            f"{path}: --label {label!r} has {len(values)} distinct value(s) ({shown_values}); the platform "
            "trains binary classifiers: the label needs exactly two values"
        )
    if given is not None:
        for value in values:
            if value == given or _same_number(value, given):
                return value
        raise ValueError(
            f"--positive-class {given!r}: the label {label!r} in {path} holds {values[0]!r} and {values[1]!r}"
        )
    conventional = {"0": "1", "no": "yes", "false": "true", "n": "y", "negative": "positive"}
    lowered = {v.strip().lower(): v for v in values}
    for negative, positive in conventional.items():
        if set(lowered) == {negative, positive}:
            return lowered[positive]
    ones = [v for v in values if _same_number(v, "1")]
    if len(ones) == 1 and any(_same_number(v, "0") for v in values):  # 0.0 / 1.0
        return ones[0]
    return min(reversed(values), key=lambda v: counts[v])


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# Writing YAML


def scalar(value: object) -> str:
    """`value` as a YAML flow scalar that reads back as the same value: `'yes'`, `">50K"`, `3`."""
    text = yaml.safe_dump([value], default_flow_style=True, width=10**9, allow_unicode=True).strip()
    return text[1:-1]


def category(text: str, code: bool) -> str:
    """A category as YAML: integer codes as plain numbers (the spec turns them back into text)."""
    if code and is_integer_code(text):
        return text
    return scalar(text)


def flow_list(items: Sequence[str], indent: int, width: int = 100) -> str:
    """`[a, b, ...]` (items already YAML) opening at column `indent`, wrapped past `width`."""
    lines, line = [], "["
    for i, item in enumerate(items):
        piece = item + (", " if i < len(items) - 1 else "")
        if line.strip() != "[" and indent + len(line) + len(piece) > width:
            lines.append(line.rstrip())
            line = " " * (indent + 1)
        line += piece
    lines.append(line + "]")
    return "\n".join(lines)


class _Writer:
    """YAML lines with trailing comments aligned."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def comment(self, text: str, indent: int = 0) -> None:
        for line in text.splitlines():
            self.lines.append(" " * indent + ("# " + line if line else "#"))

    def line(self, text: str, comment: str = "") -> None:
        """`text` (one or more lines) with `comment` after it, aligned; above it when the line would
        pass MAX_LINE or spans several lines."""
        padded = text.ljust(_COMMENT_COLUMN - 2)
        if not comment:
            self.lines.append(text)
        elif "\n" not in text and len(padded) + 4 + len(comment) <= _MAX_LINE:
            self.lines.append(f"{padded}  # {comment}")
        else:
            self.comment(comment, len(text) - len(text.lstrip()))
            self.lines.append(text)

    def blank(self) -> None:
        self.lines.append("")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _number(value: float, integer: bool) -> str:
    """A number as YAML writes it: whole ones without a fraction, huge ones in exponent form."""
    if (integer or float(value).is_integer()) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _count(n: int) -> str:
    return f"{n:,}"


@dataclass(frozen=True)
class InferredSpec:
    """The YAML text and what it was chosen from."""

    text: str
    rows: int
    columns: dict[str, ColumnProfile]
    label: str
    positive_class: str
    id_column: str | None
    timestamp_column: str | None
    numeric: list[str]
    categorical: list[str]
    sizing: Sizing


def infer_spec(
    csv_path: Path,
    label: str,
    *,
    positive_class: str | None = None,
    sensitive: Sequence[str] = (),
    name: str | None = None,
    spec_path: Path | None = None,
    today: dt.date | None = None,
) -> InferredSpec:
    """Infer a complete, commented spec for `csv_path` (see the module docstring).

    `spec_path`: where the spec will live (`source.path` is written relative to its folder
    when the CSV lies under that folder or its parent). `today`: the day the simulation's dates
    are counted back from. Raises FileNotFoundError or ValueError naming the file, column or
    flag when the file or the arguments cannot make a spec.
    """
    csv_path = Path(csv_path)
    spec_path = Path(spec_path) if spec_path is not None else default_output(csv_path)
    name = name if name is not None else identifier(data_stem(csv_path))
    if not _IDENTIFIER.match(name):
        raise ValueError(f"--name {name!r}: must be a lower-case identifier ([a-z_][a-z0-9_]*)")
    header, table = read_text_table(csv_path)
    if label not in header:
        raise ValueError(
            f"--label {label!r}: {csv_path} has no such column (its columns: {', '.join(header)})"
        )
    sensitive = list(dict.fromkeys(sensitive))  # each attribute once
    for column in sensitive:
        if column not in header:
            raise ValueError(f"--sensitive {column!r}: {csv_path} has no such column")
        if column == label:
            raise ValueError(f"--sensitive {column!r}: that is the label")
    profiles = {c: profile_column(csv_path, c, table.column(c)) for c in header}
    label_profile = profiles[label]
    if label_profile.missing:
        raise ValueError(
            f"{csv_path}: --label {label!r} is empty in {_count(label_profile.missing)} rows; ingestion "
            "would quarantine them: drop those rows or fill in their label"
        )
    if label_profile.distinct > MAX_DOMAIN:
        raise ValueError(
            f"{csv_path}: --label {label!r} has {label_profile.distinct} distinct values; it needs two"
        )
    counts = label_profile.counts or {}
    if label_profile.is_numeric or label_profile.type == "timestamp":  # two numbers: a categorical label
        counts = _value_counts(table.column(label))
    positive = choose_positive(csv_path, label, counts, positive_class)
    label_code = label_profile.code or (label_profile.type == "integer" and all(map(is_integer_code, counts)))
    profiles[label] = ColumnProfile(
        name=label,
        type="categorical",
        rows=label_profile.rows,
        missing=label_profile.missing,
        distinct=2,
        counts=counts,
        code=label_code,
    )
    id_column = next((c for c in header if c != label and _is_id(profiles[c])), None)
    timestamp_column = next((c for c in header if profiles[c].type == "timestamp" and c != label), None)
    excluded = _not_features(profiles, label, id_column)
    for column in sensitive:
        if column in excluded:
            raise ValueError(
                f"--sensitive {column!r}: {excluded[column]}; it cannot group the fairness report"
            )
    numeric = [c for c in header if c not in excluded and profiles[c].is_numeric]
    categorical = [c for c in header if c not in excluded and profiles[c].type == "categorical"]
    if not numeric and not categorical:
        raise ValueError(f"{csv_path}: no column is left to be a feature ({'; '.join(excluded.values())})")
    attributes = _sensitive_groups(table, profiles, sensitive, size_for(table.num_rows).test_rows)
    sizing = size_for(table.num_rows, [shares[-1] for _, _, shares in attributes if len(shares) > 1])
    text = _render(
        csv_path=csv_path,
        spec_path=spec_path,
        name=name,
        profiles=profiles,
        label=label,
        positive=positive,
        positive_given=positive_class is not None,
        id_column=id_column,
        timestamp_column=timestamp_column,
        excluded=excluded,
        numeric=numeric,
        categorical=categorical,
        attributes=attributes,
        sizing=sizing,
        table=table,
        today=today or dt.date.today(),
    )
    try:
        DatasetSpec.model_validate(yaml.safe_load(text))
    except (ValueError, yaml.YAMLError) as exc:  # a bug here, never the user's: say so
        raise SpecError(f"mlops init wrote a spec that does not validate (a bug): {exc}") from exc
    return InferredSpec(
        text=text,
        rows=table.num_rows,
        columns=profiles,
        label=label,
        positive_class=positive,
        id_column=id_column,
        timestamp_column=timestamp_column,
        numeric=numeric,
        categorical=categorical,
        sizing=sizing,
    )


def _value_counts(cells: pa.ChunkedArray) -> dict[str, int]:
    import pyarrow.compute as pc

    counted = pc.value_counts(cells)
    return {
        v: int(c)
        for v, c in zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True)
        if v is not None
    }


def _not_features(profiles: dict[str, ColumnProfile], label: str, id_column: str | None) -> dict[str, str]:
    """Columns that are landed but not features, and why."""
    why = {label: "the label"}
    if id_column is not None:
        why[id_column] = "the id column"
    for name, profile in profiles.items():
        if name in why:
            continue
        if profile.type == "timestamp":
            why[name] = "a timestamp"
        elif profile.present == 0:
            why[name] = "always empty"
        elif profile.near_unique:
            why[name] = (
                f"{_count(profile.distinct)} distinct values in {_count(profile.rows)} rows "
                "(free text or an id?)"
            )
    return why


def _sensitive_groups(
    table: pa.Table, profiles: dict[str, ColumnProfile], sensitive: Sequence[str], test_rows: int
) -> list[tuple[str, list[float] | None, list[float]]]:
    """Each sensitive attribute with its bin edges (numeric ones) and group shares, largest first."""
    out = []
    for column in sensitive:
        profile = profiles[column]
        if profile.is_numeric:
            numbers = _numbers(table.column(column).combine_chunks())
            edges = bin_edges(numbers, test_rows)
            out.append((column, edges, group_shares(numbers, edges)))
        else:
            counts = profile.counts or _value_counts(table.column(column))
            out.append((column, None, group_shares(counts, None)))
    return out


def _source_path(csv_path: Path, spec_path: Path) -> str:
    """The CSV relative to the spec's folder when it lies in that folder or its parent's tree, else
    absolute."""
    target = csv_path.resolve()
    try:
        relative = os.path.relpath(target, spec_path.resolve().parent)
    except ValueError:  # another drive
        return str(target)
    return relative if Path(relative).parts[:2].count("..") < 2 else str(target)


def _start_date(
    table: pa.Table, timestamp_column: str | None, sizing: Sizing, today: dt.date
) -> tuple[dt.date, str]:
    """The first landing day: the day after the newest timestamp when the file's days (and ten more
    for new batches) fit before today; else the first of the month that leaves them room."""
    room = sizing.source_days + 10
    latest_start = today - dt.timedelta(days=room)
    fallback = latest_start.replace(day=1)
    if timestamp_column is not None:
        newest = parse_timestamps(table.column(timestamp_column).to_pandas()).max()
        after = (newest + dt.timedelta(days=1)).date()
        if after <= latest_start:
            return after, f"the day after the newest {timestamp_column} ({newest.date()})"
        return fallback, (
            f"the newest {timestamp_column} ({newest.date()}) leaves no room before today for the "
            f"{sizing.source_days} days the file holds: the first of the month that does"
        )
    return (
        fallback,
        f"the first of the month that leaves the {sizing.source_days} days the file holds before today",
    )


def _demo_drift(
    profiles: dict[str, ColumnProfile], numeric: list[str], categorical: list[str], table: pa.Table
) -> list[str]:
    """Up to two numeric features moved by one standard deviation and one categorical feature's
    rarest category taking half the rows: what `mlops demo` lands after its first model."""
    drift = []
    for column in numeric[:2]:
        numbers = _numbers(table.column(column).combine_chunks())
        std = float(np.nanstd(numbers)) if np.isfinite(numbers).any() else 0.0
        if std > 0:
            delta = max(1, round(std)) if profiles[column].type == "integer" else _significant(std)
            drift.append(f"{column}=+{_number(delta, profiles[column].type == 'integer')}")
    for column in categorical:
        counts = profiles[column].counts or {}
        usable = {v: c for v, c in counts.items() if ":" not in v and v not in profiles[column].markers}
        if len(usable) >= 2:
            drift.append(f"{column}={min(sorted(usable), key=lambda v: usable[v])}:0.5")
            break
    return drift


def _render(
    *,
    csv_path: Path,
    spec_path: Path,
    name: str,
    profiles: dict[str, ColumnProfile],
    label: str,
    positive: str,
    positive_given: bool,
    id_column: str | None,
    timestamp_column: str | None,
    excluded: dict[str, str],
    numeric: list[str],
    categorical: list[str],
    attributes: list[tuple[str, list[float] | None, list[float]]],
    sizing: Sizing,
    table: pa.Table,
    today: dt.date,
) -> str:
    w = _Writer()
    rows = table.num_rows
    label_counts = profiles[label].counts
    share = label_counts[positive] / sum(label_counts.values())
    w.comment(
        f"Dataset spec inferred by `mlops init` from {csv_path.name} ({_count(rows)} rows, "
        f"{len(profiles)} columns) on {today.isoformat()}.\n"
        "Review it (the comments say how each value was chosen), then run `mlops check-spec` on it\n"
        "and point MLOPS_DATASET_SPEC at it."
    )
    w.line(f"name: {scalar(name)}", "the dataset's name (tables, Feast project, MLflow experiment)")
    w.line(
        f"description: {scalar(f'Predict {label} == {positive} from {csv_path.name}.')}",
        "what the model predicts",
    )
    w.line(f"model_name: {name}_classifier", "the registered model")
    w.blank()

    w.line("source:", "the CSV the demo lands from, read by its header names")
    source = _source_path(csv_path, spec_path)
    where = "absolute: far from this file" if Path(source).is_absolute() else "relative to this file's folder"
    w.line(f"  path: {scalar(source)}", where)
    if id_column:
        w.line(f"  id_column: {scalar(id_column)}", "unique in every row, named like an id: the record id")
    else:
        w.line("  id_column: null", "no unique column named id or *_id: a stable id is generated")
    if timestamp_column:
        w.line(f"  timestamp_column: {scalar(timestamp_column)}", "ISO 8601 in every row: the event time")
    else:
        w.line("  timestamp_column: null", "none parses as ISO 8601: the landing day plus the row's position")
    w.blank()

    w.comment(
        "Types from the file's text: integer and float cells match lib/batches.py's number formats,\n"
        "timestamps are ISO 8601, anything else is categorical; integer columns with at most\n"
        f"{CODE_MAX_DISTINCT} distinct values within +-{CODE_MAX_ABS} are codes (categorical, their "
        "values listed as numbers).\n"
        f"min/max: the observed range widened by {RANGE_MARGIN:.0%} of its spread on each side, integers "
        "rounded outward,\n"
        "a column with no negative value keeps min >= 0. domain: every value seen (none past "
        f"{MAX_DOMAIN} values).\n"
        "nullable: the column has empty cells (the platform reads only an empty cell as missing)."
    )
    w.line("columns:")
    for column, profile in profiles.items():
        _render_column(w, column, profile, excluded)
    w.blank()

    w.line("label:", f"positive: {share:.1%} of the labelled rows")
    w.line(f"  column: {scalar(label)}")
    w.line(
        f"  positive_class: {category(positive, profiles[label].code)}",
        "as given (--positive-class)"
        if positive_given
        else "1 of 0/1, yes of yes/no, ...; else the minority class (--positive-class to choose)",
    )
    w.blank()

    w.line("features:", "every column but the label, the id and the timestamps")
    for column, why in excluded.items():
        if column not in (label, id_column) and why != "a timestamp":
            w.comment(f"{column} is landed, not a feature: {why}", 2)
    w.line(f"  numeric: {flow_list([scalar(c) for c in numeric], 11)}")
    w.line(f"  categorical: {flow_list([scalar(c) for c in categorical], 15)}")
    w.line("  online_ttl_days: 30", "the online store holds the last 30 days of records")
    w.line("  online_write_batch_size: 10000", "rows per online-store write")
    w.blank()

    _render_training(w, sizing)
    w.blank()
    _render_sensitive(w, attributes, sizing)
    w.blank()

    w.line("quality:")
    w.line("  max_quarantine_fraction: 0.05", "a batch with more rows quarantined than this fails the gate")
    w.blank()

    total = sizing.reference_total
    w.line(
        "split:",
        f"held out by a hash of the record id: {_count(sizing.test_rows)} test rows of the reference period",
    )
    w.line(f"  validation: {sizing.holdout}", "0.2 each under 2,000 reference rows, else 0.15")
    w.line(f"  test: {sizing.holdout}")
    w.blank()

    start, why = _start_date(table, timestamp_column, sizing, today)
    w.comment(
        f"The demo lands the file as daily batches: the reference period ({sizing.reference_days} days of "
        f"{_count(sizing.rows_per_day)} rows = {_count(total)},\n"
        f"{REFERENCE_SHARE:.0%} of the file) trains the first model; the rest lands as "
        f"{max(0, sizing.source_days - sizing.reference_days)} more days, later days are resampled.\n"
        f"start_date: {why}."
    )
    w.line("simulation:")
    w.line(f"  start_date: {start.isoformat()}")
    w.line(
        f"  reference_days: {sizing.reference_days}", f"at most {MAX_REFERENCE_DAYS}, about 1,000 rows a day"
    )
    w.line(f"  rows_per_day: {sizing.rows_per_day}")
    w.line("  seed: 0", "the shuffle of the source")
    w.line("  sampling: auto", "slices of the shuffled file while it lasts, then rows drawn with replacement")
    w.line("  jitter: 0.1", "resampled numbers move by this share of the column's spread")
    drift = _demo_drift(profiles, numeric, categorical, table)
    w.line(
        f"  demo_drift: {flow_list([scalar(d) for d in drift], 14)}",
        "`mlops demo` after the first model: 1 std up, a rare category on half the rows",
    )
    w.blank()

    _render_gates(w, sizing, attributes)
    w.blank()
    _render_monitoring(w, sizing)
    w.blank()

    w.line("deployment:", "deploy_model's canary (a run's config can override each)")
    w.line("  canary_steps: [10, 50, 100]", "percent of traffic on the new version, step by step")
    w.line("  dwell_seconds: 30", "each step lasts at least this long...")
    w.line("  max_wait_seconds: 300", "...and fails if too few requests arrive in this much more")
    w.line("  analysis: {}", "lib/canary_analysis.py AnalysisPolicy's defaults")
    w.line("  require_approval: false", "true: each version waits for `mlops approve` before any traffic")
    return w.text()


def _render_column(w: _Writer, column: str, profile: ColumnProfile, excluded: dict[str, str]) -> None:
    fields = [f"type: {profile.type}"]
    notes = []
    if profile.missing:
        fields.append("nullable: true")
        notes.append(f"{_count(profile.missing)} empty")
    if profile.is_numeric and column not in excluded:
        low, high = widened_range(profile)
        integer = profile.type == "integer"
        fields += [f"min: {_number(low, integer)}", f"max: {_number(high, integer)}"]
        notes.append(f"observed {_number(profile.low, integer)}..{_number(profile.high, integer)}")
    domain: list[str] = []
    if profile.type == "categorical" and profile.counts:
        values = sorted(profile.counts, key=(lambda v: float(v)) if profile.code else None)
        domain = [category(v, profile.code) for v in values]
        if profile.code:
            notes.append(f"integer codes, {len(values)} values")
    elif column in excluded and profile.type != "timestamp":
        notes.append(excluded[column])
    elif profile.type == "categorical" and profile.present:
        notes.append(f"{_count(profile.distinct)} distinct values: no domain")
    if profile.markers:
        notes.append(
            ", ".join(repr(m) for m in profile.markers) + " kept as categories: only an empty cell is missing"
        )
    comment = "; ".join(notes)
    head = f"  {scalar(column)}: {{{', '.join(fields)}"
    one_line = head + (f", domain: {flow_list(domain, 0, 10**9)}" if domain else "") + "}"
    if len(one_line) <= 96:
        w.line(one_line, comment)
        return
    w.line(f"  {scalar(column)}:", comment)
    for item in fields:
        w.line(f"    {item}")
    if domain:
        w.line(f"    domain: {flow_list(domain, 13)}")


def _render_training(w: _Writer, sizing: Sizing) -> None:
    trials = sizing.search_trials
    w.line("training:", "how trained_model trains; a run's config may override each value")
    w.line(
        f"  hidden_sizes: [{', '.join(map(str, sizing.hidden_sizes))}]",
        "the MLP's layers: [32, 16] under 5,000 train rows, else [64, 32]",
    )
    w.line("  dropout: 0.1")
    w.line("  optimizer: adamw", "adamw | sgd")
    w.line("  learning_rate: 0.002")
    w.line("  weight_decay: 0.0001")
    w.line("  batch_size: null", "null: chosen from the number of train rows")
    w.line("  epochs: null", "null: chosen from the number of train rows")
    w.line("  patience: null", "null: chosen from the number of train rows")
    w.line("  class_weighting: none", "none: threshold chosen on validation; balanced: weighted loss")
    w.line("  seed: 0")
    w.line("  time_budget_minutes: null", "null: no limit")
    w.line("  search:", "hyperparameter_search: Optuna trials judged on validation only")
    w.line(
        f"    trials: {trials}",
        "20 under 20k rows, 10 under 200k, 5 under 1M, 0 (off) beyond",
    )
    w.line(f"    timeout_minutes: {30 if trials else 'null'}", "no trial starts after this")
    w.line(
        "    parameters: [learning_rate, weight_decay, dropout, hidden_sizes]",
        "what the search varies",
    )


def _render_sensitive(
    w: _Writer, attributes: list[tuple[str, list[float] | None, list[float]]], sizing: Sizing
) -> None:
    if not attributes:
        w.line("sensitive_attributes: []", "none given (--sensitive COLUMN): no fairness report groups")
        return
    w.comment(
        "--sensitive: the fairness report groups by these. equalized_odds_difference (the largest gap in\n"
        "true or false positive rate between groups) is gated at 2 / sqrt(the expected test rows of the\n"
        "smallest group), within [0.2, 0.5]: on two groups of n test rows, a model that treats them\n"
        "alike shows a gap under 1.8 / sqrt(n) in 19 test splits of 20, so a tighter limit would fail\n"
        "it by chance. The other gaps are reported, not gated (base rates may differ for real)."
    )
    w.line("sensitive_attributes:")
    for column, edges, shares in attributes:
        w.line(f"  - column: {scalar(column)}")
        if edges is not None and edges:
            shown_edges = ", ".join(_number(e, False) for e in edges)
            w.line(
                f"    bins: [{shown_edges}]",
                "quartiles, 2 significant digits" if len(edges) > 1 else "median",
            )
        smallest = shares[-1] * sizing.test_rows if len(shares) > 1 else 0.0
        limit = round(_clamp(2.0 / math.sqrt(smallest), 0.2, 0.5), 2) if smallest >= 1 else 0.5
        w.line(
            f"    max_gaps: {{equalized_odds_difference: {limit}}}",
            f"groups {', '.join(f'{s:.0%}' for s in shares[:5])}{'...' if len(shares) > 5 else ''} of rows",
        )


def _render_gates(
    w: _Writer, sizing: Sizing, attributes: list[tuple[str, list[float] | None, list[float]]]
) -> None:
    test = _count(sizing.test_rows)
    w.comment(
        f"Gates judged on the test split (about {test} rows of the reference period). Noise shrinks\n"
        "with its size, so the tolerances follow 1 / sqrt(test rows)."
    )
    w.line("gates:")
    w.line("  min_metrics: {roc_auc: 0.7}", "a sensible floor; raise it once you know what the data allows")
    w.line(
        f"  max_metrics: {{expected_calibration_error: {sizing.max_calibration_error}}}",
        "3.3 / sqrt(test rows), within [0.05, 0.3]",
    )
    w.line("  judge: point", "limits apply to the measured value (interval: its worse 95% end)")
    w.line(
        f"  regression_tolerance: {sizing.regression_tolerance}",
        "a challenger may trail the champion by this: 0.7 / sqrt(test rows), within [0.01, 0.1]",
    )
    w.line("  regression_metrics: [roc_auc, pr_auc]")
    w.line(
        f"  baseline_tolerance: {sizing.baseline_tolerance}",
        "validation ROC AUC may trail the logistic baseline's by this much",
    )
    w.line(
        f"  min_group_size: {sizing.min_group_size}",
        f"test rows a group needs to count in gaps: test rows / 20 within [{MIN_GROUP_FLOOR}, 50], at "
        f"most half the smallest sensitive group's (unless that is under {MIN_GROUP_FLOOR})",
    )
    rare = [
        column
        for column, _, shares in attributes
        if shares and shares[-1] * sizing.test_rows < 2 * sizing.min_group_size
    ]
    if rare:
        w.comment(
            f"{', '.join(rare)}: some groups are too rare for min_group_size test rows: their gaps "
            "cannot be measured, so the gate\nwarns (naming them) instead of failing; it still fails "
            "when no gated gap can be measured.",
            2,
        )
        w.line("  on_unmeasurable: warn")
    else:
        w.line("  on_unmeasurable: fail", "a gated gap that too small groups leave unmeasured fails")
    w.line("  bootstrap_samples: 500")
    w.line("  max_drift_share: 0.3", "drift: more than this share of the features drifted")


def _render_monitoring(w: _Writer, sizing: Sizing) -> None:
    w.comment(
        "drift_sensor compares the newest predictions with a sample of the training rows (about\n"
        f"{_count(sizing.train_rows)} in the reference period): sizes scaled to that, within the spec's "
        "minimums."
    )
    w.line("monitoring:")
    w.line("  sensor_interval_seconds: 60", "how often drift_sensor reads the new predictions")
    w.line(f"  window_rows: {sizing.window_rows}", "reference_rows / 2, within [50, 1000]")
    w.line(f"  min_window_rows: {sizing.min_window_rows}", "30% of the window, within [30, 300]")
    w.line(f"  reference_rows: {sizing.reference_rows}", "the train rows, within [100, 2000]")
    w.line("  retrain_cooldown_minutes: 60", "at most one drift-triggered retrain per hour")
    w.line(
        f"  min_labelled_rows: {sizing.min_labelled_rows}",
        "live_performance: labelled predictions per version (window / 5, within [10, 200])",
    )
    w.line(
        f"  max_live_degradation: {sizing.max_live_degradation}",
        "live roc_auc may trail the registered one by this (0.7 / sqrt(labelled rows))",
    )
    w.line("  live_metrics: [roc_auc]")


def write_spec(
    csv_path: Path,
    label: str,
    output: Path | None = None,
    *,
    force: bool = False,
    positive_class: str | None = None,
    sensitive: Sequence[str] = (),
    name: str | None = None,
    today: dt.date | None = None,
) -> tuple[Path, InferredSpec]:
    """Infer the spec of `csv_path` and write it to `output` (default: `<stem>.yaml` beside the
    CSV); an existing file is kept unless `force`."""
    csv_path = Path(csv_path)
    output = Path(output) if output is not None else default_output(csv_path)
    if output.resolve() == csv_path.resolve():
        raise ValueError(f"-o {output}: that is the data file; write the spec to a .yaml file")
    if output.exists() and not force:
        raise FileExistsError(f"-o {output} exists: pass --force to overwrite it")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"-o {output}: the folder {output.parent} does not exist")
    inferred = infer_spec(
        csv_path,
        label,
        positive_class=positive_class,
        sensitive=sensitive,
        name=name,
        spec_path=output,
        today=today,
    )
    output.write_text(inferred.text, encoding="utf-8")
    return output, inferred
