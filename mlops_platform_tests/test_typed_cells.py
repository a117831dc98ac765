"""Landed cells are typed by Arrow and hashed into record ids by DuckDB; on seeded hostile
cells both equal a plain-Python reading of the same rules (the oracle below)."""

import hashlib
import re

import numpy as np
import pandas as pd
import pytest

from mlops_platform.datasets.csv_text import NUMBER_PATTERNS, has_number_format
from mlops_platform.datasets.spec import load_spec, shipped_spec_path
from mlops_platform.lib.batches import record_ids, typed_columns

CELLS = [
    "0", "7", "-0", "+007", "42.0", "42.00", "42.5", " 12 ", "\t3\t", "12 \n", "1e3", "1E-2", ".5", "5.",
    "+.5", "-1.5e+10", "1e999", "999999999999999999", "0000000000000000000012", "1234567890123456789",
    "", " ", "-", "+", ".", "e5", "1,5", "١٢", "１２", "nan", "inf", "NaN", "0x10", "12abc", "naïve",
    "日本", "x\x00y", "\x00", "a\x1fb", "ragged|x", None, np.nan,
]  # fmt: skip


def _text(rows: int, columns: list[str], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cells = np.array(CELLS, dtype=object)
    return pd.DataFrame({c: cells[rng.integers(0, len(cells), rows)] for c in columns}, dtype=object)


def _oracle_ids(text: pd.DataFrame, spec, day: str, ragged: pd.Series | None) -> pd.Series:
    columns = [c for c in spec.columns if c in text.columns]
    rows = ["\x1f".join(r) for r in text[columns].astype("string").fillna("\x00").itertuples(False, None)]
    if ragged is not None:
        rows = [c if pd.isna(r) else f"ragged|{r}" for c, r in zip(rows, ragged, strict=True)]
    return pd.Series(
        [
            hashlib.sha256(f"{spec.name}|{day}|{i}|{row}".encode()).hexdigest()[:24]
            for i, row in enumerate(rows)
        ],
        index=text.index,
        dtype="string",
    )


@pytest.mark.parametrize("seed", range(3))
def test_number_formats_and_integers_equal_python(seed):
    text = _text(3_000, ["a"], seed)["a"]
    for kind, pattern in NUMBER_PATTERNS.items():
        expected = [isinstance(c, str) and re.search(pattern, c) is not None for c in text]
        assert has_number_format(text, kind).tolist() == expected

    # cells that are not text are judged by their text, as `astype(str)` writes it
    assert has_number_format(pd.Series([5, 2.5, "3", None, np.nan], dtype=object), "integer").tolist() == [
        True,
        False,
        True,
        False,
        False,
    ]

    spec = load_spec(shipped_spec_path())
    integer = next(n for n, c in spec.columns.items() if c.type == "integer")
    typed = typed_columns(pd.DataFrame({integer: text}), spec)[integer]
    expected = [
        int(c.strip().split(".")[0])
        if isinstance(c, str) and re.search(NUMBER_PATTERNS["integer"], c)
        else None
        for c in text
    ]
    assert str(typed.dtype) == "Int64"
    assert [None if pd.isna(v) else int(v) for v in typed] == expected


@pytest.mark.parametrize("seed", range(3))
def test_record_ids_equal_python(seed):
    spec = load_spec(shipped_spec_path())
    columns = list(spec.columns)
    text = _text(2_000, columns[: 5 + seed * 3], seed)
    text.index = pd.RangeIndex(7, 7 + len(text))  # ids follow the row's position, not its label
    ragged = pd.Series(
        np.where(np.arange(len(text)) % 7 == 0, "a,b,\x00c", None), index=text.index, dtype="string"
    )
    for lines in (None, ragged):
        pd.testing.assert_series_equal(
            record_ids(text, spec, "2026-02-03", lines), _oracle_ids(text, spec, "2026-02-03", lines)
        )
