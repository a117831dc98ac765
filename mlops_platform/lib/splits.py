"""Held-out splits that never move: a record's split is a hash of its id.

The first 8 bytes of the SHA-256 of the id, read as a big-endian integer over 2**64, give a
uniform number in [0, 1): below `test` the record is in `test`, below `test + validation` in
`validation`, else in `train`. Computed in DuckDB, so a split is assigned without Python.
"""

from __future__ import annotations

from mlops_platform.datasets.spec import SplitSpec

SPLITS = ("train", "validation", "test")


def split_sql(id_expression: str, split: SplitSpec) -> str:
    """A DuckDB expression naming the split of the record whose id is `id_expression`."""
    leading_bytes = f"('0x' || substr(sha256(CAST({id_expression} AS VARCHAR)), 1, 16))::UBIGINT"
    unit = f"({leading_bytes} / 18446744073709551616.0)"
    return (
        f"CASE WHEN {unit} < {float(split.test)!r} THEN 'test' "
        f"WHEN {unit} < {float(split.test) + float(split.validation)!r} THEN 'validation' "
        "ELSE 'train' END"
    )
