"""CSV text as the platform reads it: every cell text, the number formats a cell must match to
be typed, ISO 8601 timestamps, header rules. Shared by the dataset tooling (`mlops init`,
`mlops check-spec`) and ingestion (`lib/`), with no import of either."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import pyarrow as pa


class CsvFileError(ValueError):
    """A CSV file that cannot be read as a table; the message names the file and line."""


# What a numeric cell must look like to be typed: ASCII digits only, an optional sign,
# blanks (space, tab) around. An integer has at most 18 significant digits (so it fits
# int64) and may end in `.0`; a float is a decimal with an optional exponent (one that
# overflows to infinity is caught by the range rule). `\Z`: no trailing newline either.
NUMBER_PATTERNS = {
    "integer": r"^[ \t]*[-+]?0*[0-9]{1,18}(?:\.0*)?[ \t]*\Z",
    "float": r"^[ \t]*[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?[ \t]*\Z",
}


def has_number_format(cells: pd.Series, kind: str) -> pd.Series:
    """True where a cell is present and matches the number pattern of `kind`."""
    matched = number_format(arrow_text(cells), kind)
    return pd.Series(matched.to_numpy(zero_copy_only=False), index=cells.index)


def arrow_text(cells: pd.Series) -> pa.Array:
    """The cells as Arrow strings, a missing cell (None, NaN, NA) as null."""
    import pyarrow as pa

    try:  # landed text: every present cell is a str
        return pa.array(cells.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # other values: as their text, like astype(str)
        return pa.array(cells.astype("string"), type=pa.string())


def number_format(text: pa.Array, kind: str) -> pa.Array:
    """`NUMBER_PATTERNS[kind]` matched by Arrow; False for nulls."""
    return matches_pattern(text, NUMBER_PATTERNS[kind])


def matches_pattern(text: pa.Array, pattern: str) -> pa.Array:
    """A Python regular expression matched by Arrow (RE2, where `$` is Python's `\\Z`); False for nulls."""
    import pyarrow.compute as pc

    return pc.fill_null(pc.match_substring_regex(text, pattern.replace("\\Z", "$")), False)


def parse_timestamps(cells: pd.Series) -> pd.Series:
    """ISO 8601 text as UTC timestamps; anything else becomes missing."""
    return pd.to_datetime(cells, format="ISO8601", errors="coerce", utc=True)


def check_header(path: Path, header: list[str]) -> None:
    """Every column of a CSV header has a name, and none is named twice."""
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if not name.strip():
            raise CsvFileError(f"{path}: line 1, field {position}: no column name; line 1 must be the header")
        if name in seen:
            raise CsvFileError(
                f"{path}: line 1, fields {seen[name]} and {position}: column {name!r} is named twice"
            )
        seen[name] = position


def read_csv_text(path: Path, rows: int | None = None, header: list[str] | None = None) -> pd.DataFrame:
    """A CSV as the platform reads it: every cell text, only an empty cell missing; the first
    `rows` rows (None: all), the columns in `header`'s order when given."""
    frame = pd.read_csv(
        path, dtype=str, keep_default_na=False, na_values=[""], nrows=rows, index_col=False, encoding="utf-8"
    )
    return frame if header is None else frame.reindex(columns=header)
