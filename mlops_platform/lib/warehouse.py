"""The DuckDB warehouse and its Parquet lake: idempotent writes, reads by partition.

Every table is written twice: into the DuckDB file (what dbt transforms) and as Parquet
under the lake folder (one file per day for partitioned tables). Writing a day again
replaces that day in both, inside one transaction, so re-ingestion never duplicates.

The verdicts of the gates on a partitioned table live beside it in `<table>_gates` (one
row per day and gate; DuckDB only): readers keep only the days every gate passed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mlops_platform.lib.files import atomic_target

if TYPE_CHECKING:
    import duckdb

LOCK_WAIT_SECONDS = 120.0
# DuckDB's memory cap for every warehouse connection (dbt's profile reads the same variable);
# beyond it, DuckDB spills to `<warehouse>.tmp`. Without a cap it takes up to 80 % of RAM.
MEMORY_LIMIT_VARIABLE = "MLOPS_DUCKDB_MEMORY_LIMIT"
DEFAULT_MEMORY_LIMIT = "1GB"


@contextlib.contextmanager
def connect(path: Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse, waiting while another process (dbt, a parallel step) holds it."""
    import duckdb

    path = Path(path)
    if read_only and not path.exists():
        raise FileNotFoundError(f"warehouse {path} does not exist yet: materialize raw_data first")
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET memory_limit = ?", [os.environ.get(MEMORY_LIMIT_VARIABLE) or DEFAULT_MEMORY_LIMIT])
        yield con
    finally:
        con.close()


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _in_partitions(partition_column: str, partitions: Sequence[str]) -> str:
    """A SQL condition (with one `?` per day) selecting the rows of the given days."""
    return f"strftime({_quote(partition_column)}, '%Y-%m-%d') IN ({', '.join('?' for _ in partitions)})"


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?",
        [table],
    ).fetchone()
    return bool(found and found[0])


def replace_partitions(
    path: Path, table: str, frame: pd.DataFrame, partition_column: str, partitions: Sequence[str]
) -> None:
    """Replace the rows of `partitions` (values of `partition_column`) with those in `frame`."""
    with connect(path) as con:
        con.execute("BEGIN TRANSACTION")
        write_partitions(con, table, frame, partition_column, partitions)
        con.execute("COMMIT")


def gates_table(table: str) -> str:
    """The table of per-day gate verdicts on a partitioned table."""
    return f"{table}_gates"


def _create_gates_table(con: duckdb.DuckDBPyConnection, table: str) -> None:
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {_quote(gates_table(table))} (ingestion_date DATE NOT NULL, "
        "check_name VARCHAR NOT NULL, passed BOOLEAN NOT NULL, checked_at TIMESTAMPTZ NOT NULL, "
        "run_id VARCHAR, description VARCHAR)"
    )


def clear_gate_verdicts(path: Path, table: str, days: Sequence[str]) -> None:
    """Forget every gate verdict on these days of `table`. Called before the days are
    rewritten, so a day counts as ungated until its gates judge the new rows."""
    with connect(path) as con:
        _create_gates_table(con, table)
        for day in days:
            con.execute(
                f"DELETE FROM {_quote(gates_table(table))} WHERE ingestion_date = CAST(? AS DATE)", [day]
            )


def record_gate_verdicts(
    path: Path, table: str, check_name: str, verdicts: dict[str, tuple[bool, str]], run_id: str
) -> None:
    """Record one gate's verdict per day (`{day: (passed, description)}`), replacing its
    earlier verdict on those days."""
    rows = pd.DataFrame(
        [(day, passed, description) for day, (passed, description) in verdicts.items()],
        columns=["ingestion_date", "passed", "description"],
    )
    with connect(path) as con:
        _create_gates_table(con, table)
        con.register("verdicts", rows)
        con.execute("BEGIN TRANSACTION")
        con.execute(
            f"DELETE FROM {_quote(gates_table(table))} WHERE check_name = ? "
            "AND ingestion_date IN (SELECT CAST(ingestion_date AS DATE) FROM verdicts)",
            [check_name],
        )
        con.execute(
            f"INSERT INTO {_quote(gates_table(table))} SELECT CAST(ingestion_date AS DATE), ?, passed, "
            "now(), ?, description FROM verdicts",
            [check_name, run_id],
        )
        con.execute("COMMIT")


def passed_days_sql(table: str, gates: Sequence[str]) -> tuple[str, list[object]]:
    """A query of the days (DATE) on which every one of `gates` recorded a pass on `table`,
    with its parameters; the same rule `stg_records` applies in dbt."""
    if not gates:
        raise ValueError(f"name at least one gate of {table}")
    sql = (
        f"SELECT ingestion_date FROM {_quote(gates_table(table))} "
        f"WHERE check_name IN ({', '.join('?' for _ in gates)}) GROUP BY ingestion_date "
        "HAVING count(DISTINCT check_name) = ? AND bool_and(passed)"
    )
    return sql, [*gates, len(gates)]


def set_table_version(
    con: duckdb.DuckDBPyConnection,
    table: str,
    version: str,
    inputs: str = "",
    details: dict[str, object] | None = None,
) -> None:
    """Record with `table` (as its comment, inside the caller's transaction) the version of its
    content, a fingerprint of the inputs it was built from, and any other JSON `details`."""
    escaped = json.dumps({**(details or {}), "version": version, "inputs": inputs}).replace("'", "''")
    con.execute(f"COMMENT ON TABLE {_quote(table)} IS '{escaped}'")


def table_record(path: Path, table: str) -> dict[str, object]:
    """What `set_table_version` recorded with `table` (empty: nothing, or no warehouse yet)."""
    if not Path(path).exists():
        return {}
    with connect(path, read_only=True) as con:
        found = con.execute(
            "SELECT comment FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = ?", [table]
        ).fetchone()
    try:
        record = json.loads(found[0]) if found and found[0] else {}
    except json.JSONDecodeError:
        return {}
    return record if isinstance(record, dict) else {}


def table_version(path: Path, table: str) -> str | None:
    """The content version recorded with `table` by `set_table_version` (None: none recorded)."""
    version = table_record(path, table).get("version")
    return str(version) if version else None


def replace_table(path: Path, table: str, frame: pd.DataFrame) -> None:
    with connect(path) as con:
        con.register("incoming", frame)
        con.execute(f"CREATE OR REPLACE TABLE {_quote(table)} AS SELECT * FROM incoming")


def read_table(
    path: Path, table: str, partition_column: str | None = None, partitions: Sequence[str] | None = None
) -> pd.DataFrame:
    """A table, or only the given partitions of it."""
    with connect(path, read_only=True) as con:
        if not table_exists(con, table):
            raise LookupError(f"table {table} is not in the warehouse {path}: materialize it first")
        query = f"SELECT * FROM {_quote(table)}"
        params: list[str] = []
        if partitions is not None and partition_column is not None:
            query += f" WHERE {_in_partitions(partition_column, partitions)}"
            params = list(partitions)
        return con.execute(query, params).df()


def query(path: Path, sql: str, params: Sequence[object] = ()) -> pd.DataFrame:
    """Run a read-only query against the warehouse."""
    with connect(path, read_only=True) as con:
        return con.execute(sql, list(params)).df()


def write_parquet(frame: pd.DataFrame, target: Path) -> Path:
    """Write a Parquet file atomically (an empty frame still records the schema)."""
    with atomic_target(target) as tmp:
        frame.to_parquet(tmp, index=False)
    return target


def write_lake_partitions(
    lake_dir: Path, table: str, frame: pd.DataFrame, partition_column: str, partitions: Sequence[str]
) -> list[Path]:
    """One Parquet file per partition: `<lake>/<table>/<column>=<day>/part-0.parquet`."""
    codes, days = _partition_codes(frame[partition_column])
    files = []
    for day in partitions:
        rows = np.isin(codes, [code for code, name in enumerate(days) if name == day])
        part = frame if rows.all() else frame[rows]
        files.append(
            write_parquet(part, Path(lake_dir) / table / f"{partition_column}={day}" / "part-0.parquet")
        )
    return files


def write_partitions(
    con: duckdb.DuckDBPyConnection,
    table: str,
    frame: pd.DataFrame,
    partition_column: str,
    partitions: Sequence[str],
) -> None:
    """`replace_partitions` inside the caller's transaction (the table is created from the
    frame's columns when missing)."""
    codes, days = _partition_codes(frame[partition_column])
    outside = np.isin(codes, [code for code, day in enumerate(days) if day not in partitions])
    if outside.any():
        raise ValueError(f"{int(outside.sum())} rows of {table} fall outside partitions {list(partitions)}")
    con.register("incoming", frame)
    if not table_exists(con, table):
        # a table declared column by column: DuckDB 2.0.0 hides rows inserted in the transaction
        # that created a table with `CREATE TABLE ... AS SELECT ... LIMIT 0` from later aggregates
        # on the connection (beyond one row group)
        columns = con.execute("DESCRIBE SELECT * FROM incoming").fetchall()
        declared = ", ".join(f"{_quote(name)} {kind}" for name, kind, *_ in columns)
        con.execute(f"CREATE TABLE {_quote(table)} ({declared})")
    con.execute(
        f"DELETE FROM {_quote(table)} WHERE {_in_partitions(partition_column, partitions)}", list(partitions)
    )
    con.execute(f"INSERT INTO {_quote(table)} BY NAME SELECT * FROM incoming")
    con.unregister("incoming")


def _partition_codes(values: pd.Series) -> tuple[np.ndarray, list[str | None]]:
    """Each row's position in the list of distinct days (`YYYY-MM-DD`), formatting each
    distinct timestamp once; a missing timestamp has code -1, the list's last entry (None)."""
    codes, distinct = pd.factorize(values)
    return codes, [*pd.Series(distinct).dt.strftime("%Y-%m-%d"), None]


def partition_version(
    con: duckdb.DuckDBPyConnection, table: str, partition_column: str, partition: str
) -> str:
    """A content version of one partition of `table`: a digest of the table's columns (names
    and types), the partition's row count and the sum of its rows' hashes (the rows in any
    order), read inside the caller's transaction."""
    columns = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    found = con.execute(
        f"SELECT count(*), coalesce(sum(hash(t)), 0) FROM {_quote(table)} AS t "
        f"WHERE {_in_partitions(partition_column, [partition])}",
        [partition],
    ).fetchone()
    return hashlib.sha256(f"{columns}|{found}".encode()).hexdigest()[:16]
