"""How the training steps read the `training_set` table: by split, in SQL, in bounded chunks.

None of them loads the table into pandas: training exports or reads a split through
`lib.training`, scoring reads Arrow chunks of a split and keeps only scores, labels and the
sensitive attributes.
"""

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.feature_repo.definitions import ENTITY_KEY
from mlops_platform.lib import warehouse
from mlops_platform.lib.preprocessing import quote

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from mlops_platform.lib.training import TrainingData
    from mlops_platform.lib.training_params import TrainingParams

TABLE = "training_set"
ATTRIBUTES = "stg_records"  # where the sensitive attributes of a record are read from


def split_query(split: str) -> str:
    """The rows of one split of `training_set` (every column), as SQL."""
    return f"SELECT * FROM {TABLE} WHERE split = '{split}'"


def attribute_column(attribute: str) -> str:
    """The name a sensitive attribute read from `stg_records` has beside the features."""
    return f"{ATTRIBUTES}.{attribute}"


def load_splits(
    con: "duckdb.DuckDBPyConnection", spec: DatasetSpec, params: "TrainingParams", folder: Path
) -> "TrainingData":
    """The train and validation splits as batch sources for `params` (large ones streamed from
    Parquet under `folder`, which must outlive the training); never the test split."""
    from mlops_platform.lib.training import load_training_data

    return load_training_data(
        con,
        split_query("train"),
        split_query("validation"),
        ENTITY_KEY,
        spec.features.numeric,
        spec.features.categorical,
        params,
        folder,
    )


def training_set_version(path: Path) -> str:
    """The content version recorded with the table, or one computed in SQL when none is (the
    same rule: a hash over the row count and the XOR of the rows' hashes)."""
    recorded = warehouse.table_version(path, TABLE)
    if recorded:
        return recorded
    with warehouse.connect(path, read_only=True) as con:
        if not warehouse.table_exists(con, TABLE):
            raise LookupError(f"table {TABLE} is not in the warehouse {path}: materialize it first")
        columns = con.sql(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' "
            f"AND table_name = '{TABLE}' ORDER BY ordinal_position"
        ).fetchall()
        digest = ", ".join(quote(name) for (name,) in columns)
        rows, content = con.sql(
            f"SELECT count(*), coalesce(bit_xor(hash({digest})), 0) FROM {TABLE}"
        ).fetchall()[0]
    return hashlib.sha256(f"{rows}:{content}".encode()).hexdigest()[:16]


def split_record_batches(
    path: Path, spec: DatasetSpec, split: str, rows: int, attributes: Sequence[str] = ()
) -> Iterator["pa.RecordBatch"]:
    """One split's features (as the encoder reads them), `label` and the named sensitive
    attributes (`attribute_column`), in record order, `rows` at a time.

    Fails when a row of the split has no record in `stg_records`, or more than one.
    """
    from mlops_platform.lib.training_batches import select_sql

    query = split_query(split)
    if attributes:
        picked = ", ".join(f"a.{quote(name)} AS {quote(attribute_column(name))}" for name in attributes)
        query = (
            f"SELECT t.*, {picked} FROM ({query}) AS t "
            f"JOIN {ATTRIBUTES} AS a ON a.{ENTITY_KEY} = t.{ENTITY_KEY}"
        )
    sql = select_sql(
        query,
        spec.features.numeric,
        spec.features.categorical,
        extra=[attribute_column(a) for a in attributes],
    )
    with warehouse.connect(path, read_only=True) as con:
        if attributes:
            expected = con.sql(f"SELECT count(*) FROM ({split_query(split)})").fetchall()[0][0]
            joined, records = con.sql(
                f"SELECT count(*), count(DISTINCT {ENTITY_KEY}) FROM ({query})"
            ).fetchall()[0]
            if joined != expected or records != expected:
                raise ValueError(
                    f"the {expected} {split} rows of {TABLE} match {joined} rows of {ATTRIBUTES} "
                    f"({records} records): every record needs exactly one; rerun the data pipeline"
                )
        yield from con.sql(f"{sql} ORDER BY {ENTITY_KEY}").to_arrow_reader(rows)
