"""Ingest landed days one at a time: read, type, validate, split and store each (what
`raw_data` runs).

Each day is read, validated once, written to the warehouse and the lake, and dropped
before the next, so memory follows the largest day, not the run. In the transaction that
writes the day's rows, `raw_data_validations` records what ingestion found: the landing file
it read (path, size, modification time, sha256 of its bytes), a digest of the dataset spec it
judged by, how many records landed with a digest of their ids, the content version of the rows
it kept, and the suites' outcomes. The gates on `raw_data` judge a day from that record and SQL
over the tables, never by reading the landing file again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.lib import warehouse
from mlops_platform.lib.batches import prepare_batch
from mlops_platform.lib.expectations import (
    BatchValidation,
    ExpectationOutcome,
    outcomes_from_json,
    outcomes_to_json,
    rows_where,
    run_suites,
    validate_batch,
)
from mlops_platform.lib.landing import (
    CsvFileError,
    LandedFile,
    LandingFingerprint,
    landing_path,
    parse_landing_file,
)
from mlops_platform.lib.quarantine import split_batch

if TYPE_CHECKING:
    import duckdb

RAW_DATA = "raw_data"
QUARANTINED_ROWS = "quarantined_rows"
VALIDATIONS = "raw_data_validations"
PARTITION_COLUMN = "ingestion_date"
PREVIEW_ROWS = 10
# An order-free digest of a set of record ids: the sum of the low 64 bits of their MD5s.
_IDS_DIGEST = "coalesce(sum(md5_number_lower(record_id)), 0)"


@dataclass(frozen=True)
class IngestedDay:
    """One landed day, validated and split; `landed_ids` are the ids of every landed record."""

    day: str
    landing_file: Path
    fingerprint: LandingFingerprint
    landing_sha256: str
    landed_ids: pd.Series
    valid: pd.DataFrame
    quarantined: pd.DataFrame
    validation: BatchValidation

    @property
    def landed(self) -> int:
        return len(self.landed_ids)


@dataclass(frozen=True)
class StoredDay:
    """What a run keeps of a day once it is stored: counts, versions and a preview, no rows."""

    day: str
    landed: int
    raw: int
    quarantined: int
    suites_passed: bool
    quarantined_by_column: dict[str, int]
    preview: pd.DataFrame  # the first quarantined rows: record_id, quarantine_reason
    raw_columns: dict[str, str]  # raw_data's columns and their pandas types
    raw_version: str
    quarantined_version: str
    landing_sha256: str


@dataclass(frozen=True)
class RecordedValidation:
    """The validation ingestion recorded with a day's rows."""

    day: str
    landing_file: Path
    fingerprint: LandingFingerprint
    spec_digest: str
    raw_version: str  # of the day's rows in raw_data when they were validated
    raw_version_now: str  # of the day's rows in raw_data now
    outcomes: list[ExpectationOutcome]

    def stale(self, landing_dir: Path, spec: DatasetSpec) -> str | None:
        """Why this record does not stand for the day's rows and landing file as they are now,
        judged by `spec` (None: it does)."""
        path = landing_path(landing_dir, self.day)
        again = f"materialize raw_data for {self.day} again"
        if self.raw_version_now != self.raw_version:
            return f"the rows of raw_data for {self.day} changed after they were validated: {again}"
        if not path.is_file():
            return f"{path} is gone since raw_data was validated from it: land it and {again}"
        now = LandingFingerprint.of(path)
        if path != self.landing_file or now != self.fingerprint:
            return (
                f"{path} is not the file raw_data was validated from ({self.landing_file}, "
                f"{self.fingerprint.size} bytes, modified at {self.fingerprint.mtime_ns} ns; now "
                f"{now.size} bytes, modified at {now.mtime_ns} ns): {again}"
            )
        if self.spec_digest != spec_digest(spec):
            return f"raw_data was validated under another version of dataset spec {spec.name!r}: {again}"
        return None


def read_day(landing_dir: Path, spec: DatasetSpec, day: str) -> tuple[LandedFile, pd.DataFrame]:
    """A day's landing file and its typed records (every record, in file order)."""
    landed = parse_landing_file(landing_path(landing_dir, day))
    if not set(landed.text.columns) & set(spec.columns):
        raise CsvFileError(
            f"{landed.path}: line 1 is not a header: it names none of the columns of dataset "
            f"{spec.name!r} ({', '.join(spec.columns)})"
        )
    return landed, prepare_batch(landed.text, spec, day, landed.ragged)


def ingest_day(landing_dir: Path, spec: DatasetSpec, day: str) -> IngestedDay:
    """Read one landing file, run the spec's suites and row rules on it, and split it."""
    landed, records = read_day(landing_dir, spec, day)
    well = landed.well_formed
    outcomes = run_suites(rows_where(landed.text, well), rows_where(records, well), spec)
    validation = validate_batch(landed, records, spec, outcomes)
    valid, quarantined = split_batch(landed, records, validation)
    return IngestedDay(
        day=day,
        landing_file=landed.path,
        fingerprint=landed.fingerprint,
        landing_sha256=landed.sha256,
        landed_ids=records["record_id"],
        valid=valid,
        quarantined=quarantined,
        validation=validation,
    )


def store_day(
    warehouse_path: Path, lake_dir: Path, spec: DatasetSpec, ingested: IngestedDay, run_id: str
) -> StoredDay:
    """Replace the day in `raw_data`, `quarantined_rows` and `raw_data_validations` in one
    transaction, then in the lake."""
    day = ingested.day
    with warehouse.connect(warehouse_path) as con:
        con.execute("BEGIN TRANSACTION")
        warehouse.write_partitions(con, RAW_DATA, ingested.valid, PARTITION_COLUMN, [day])
        warehouse.write_partitions(con, QUARANTINED_ROWS, ingested.quarantined, PARTITION_COLUMN, [day])
        raw_version, quarantined_version = (
            warehouse.partition_version(con, table, PARTITION_COLUMN, day)
            for table in (RAW_DATA, QUARANTINED_ROWS)
        )
        _record_validation(con, spec, ingested, raw_version, run_id)
        con.execute("COMMIT")
    for table, frame in ((RAW_DATA, ingested.valid), (QUARANTINED_ROWS, ingested.quarantined)):
        warehouse.write_lake_partitions(lake_dir, table, frame, PARTITION_COLUMN, [day])
    return StoredDay(
        day=day,
        landed=ingested.landed,
        raw=len(ingested.valid),
        quarantined=len(ingested.quarantined),
        suites_passed=ingested.validation.success,
        quarantined_by_column=ingested.validation.quarantined_by_column,
        preview=ingested.quarantined[["record_id", "quarantine_reason"]].head(PREVIEW_ROWS),
        raw_columns={name: str(dtype) for name, dtype in ingested.valid.dtypes.items()},
        raw_version=raw_version,
        quarantined_version=quarantined_version,
        landing_sha256=ingested.landing_sha256,
    )


def spec_digest(spec: DatasetSpec) -> str:
    """A digest of everything the dataset spec says."""
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]


def _record_validation(
    con: duckdb.DuckDBPyConnection, spec: DatasetSpec, ingested: IngestedDay, raw_version: str, run_id: str
) -> None:
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {VALIDATIONS} (ingestion_date DATE NOT NULL, "
        "landing_file VARCHAR NOT NULL, landing_size BIGINT NOT NULL, landing_mtime_ns BIGINT NOT NULL, "
        "spec_digest VARCHAR NOT NULL, landed_rows BIGINT NOT NULL, landed_ids_digest HUGEINT NOT NULL, "
        "raw_version VARCHAR NOT NULL, outcomes VARCHAR NOT NULL, run_id VARCHAR NOT NULL, "
        "validated_at TIMESTAMPTZ NOT NULL)"
    )
    # warehouses written before landing hashes were recorded lack the column (NULL in their rows)
    con.execute(f"ALTER TABLE {VALIDATIONS} ADD COLUMN IF NOT EXISTS landing_sha256 VARCHAR")
    con.execute(f"DELETE FROM {VALIDATIONS} WHERE ingestion_date = CAST(? AS DATE)", [ingested.day])
    con.register("landed_ids", pd.DataFrame({"record_id": ingested.landed_ids}))
    con.execute(
        f"INSERT INTO {VALIDATIONS} (ingestion_date, landing_file, landing_size, landing_mtime_ns, "
        "landing_sha256, spec_digest, landed_rows, landed_ids_digest, raw_version, outcomes, run_id, "
        f"validated_at) SELECT CAST(? AS DATE), ?, ?, ?, ?, ?, count(*), {_IDS_DIGEST}, ?, ?, ?, now() "
        "FROM landed_ids",
        [
            ingested.day,
            str(ingested.landing_file),
            ingested.fingerprint.size,
            ingested.fingerprint.mtime_ns,
            ingested.landing_sha256,
            spec_digest(spec),
            raw_version,
            outcomes_to_json(ingested.validation.outcomes),
            run_id,
        ],
    )
    con.unregister("landed_ids")


def recorded_validations(warehouse_path: Path, days: Sequence[str]) -> dict[str, RecordedValidation]:
    """The validation recorded with each of `days` (a day without one is left out), with the
    content version of the day's rows in raw_data now."""
    with warehouse.connect(warehouse_path, read_only=True) as con:
        if not warehouse.table_exists(con, VALIDATIONS):
            return {}
        rows = con.execute(
            "SELECT strftime(ingestion_date, '%Y-%m-%d'), landing_file, landing_size, landing_mtime_ns, "
            f"spec_digest, raw_version, outcomes FROM {VALIDATIONS} WHERE ingestion_date IN "
            "(SELECT CAST(unnest(?::VARCHAR[]) AS DATE))",
            [list(days)],
        ).fetchall()
        return {
            day: RecordedValidation(
                day=day,
                landing_file=Path(path),
                fingerprint=LandingFingerprint(size=size, mtime_ns=mtime_ns),
                spec_digest=digest,
                raw_version=raw_version,
                raw_version_now=warehouse.partition_version(con, RAW_DATA, PARTITION_COLUMN, day),
                outcomes=outcomes_from_json(outcomes),
            )
            for day, path, size, mtime_ns, digest, raw_version, outcomes in rows
        }


def landing_records(con: duckdb.DuckDBPyConnection, days: Sequence[str]) -> dict[str, dict[str, object]]:
    """What ingestion recorded of each of `days` that it ingested: `{day: {"file", "sha256",
    "size", "run_id", "raw_version"}}` (sha256 None: ingested before hashes were recorded).
    Reads through the caller's connection, so it can share the caller's transaction."""
    if not days or not warehouse.table_exists(con, VALIDATIONS):
        return {}
    hashed = con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE schema_name = 'main' AND table_name = ? "
        "AND column_name = 'landing_sha256'",
        [VALIDATIONS],
    ).fetchone()[0]
    rows = con.execute(
        "SELECT strftime(ingestion_date, '%Y-%m-%d'), landing_file, "
        f"{'landing_sha256' if hashed else 'NULL'}, landing_size, run_id, "
        f"raw_version FROM {VALIDATIONS} WHERE ingestion_date IN (SELECT CAST(unnest(?::VARCHAR[]) AS DATE)) "
        "ORDER BY ingestion_date",
        [list(days)],
    ).fetchall()
    return {
        day: {"file": file, "sha256": sha256, "size": size, "run_id": run_id, "raw_version": raw_version}
        for day, file, sha256, size, run_id, raw_version in rows
    }


@dataclass(frozen=True)
class DayAccount:
    """Where a day's landed records are, by SQL over the tables."""

    day: str
    landed: int | None  # as recorded at ingestion; None: no record
    raw: int
    quarantined: int
    both: int  # ids both kept and quarantined
    ids_add_up: bool  # the ids kept and quarantined are, together, those landed (by digest)

    @property
    def quarantined_fraction(self) -> float:
        return self.quarantined / self.landed if self.landed else 0.0


def day_accounting(warehouse_path: Path, days: Sequence[str]) -> list[DayAccount]:
    """Each day's account, computed in DuckDB."""
    sql = f"""
        WITH days AS (SELECT CAST(unnest(?::VARCHAR[]) AS DATE) AS day),
        kept AS (
            SELECT CAST({PARTITION_COLUMN} AS DATE) AS day, record_id FROM {RAW_DATA}
            WHERE CAST({PARTITION_COLUMN} AS DATE) IN (SELECT day FROM days)),
        held AS (
            SELECT CAST({PARTITION_COLUMN} AS DATE) AS day, record_id FROM {QUARANTINED_ROWS}
            WHERE CAST({PARTITION_COLUMN} AS DATE) IN (SELECT day FROM days)),
        kept_by_day AS (SELECT day, count(*) AS n, {_IDS_DIGEST} AS digest FROM kept GROUP BY day),
        held_by_day AS (SELECT day, count(*) AS n, {_IDS_DIGEST} AS digest FROM held GROUP BY day),
        both_by_day AS (
            SELECT kept.day, count(DISTINCT kept.record_id) AS n
            FROM kept JOIN held ON kept.day = held.day AND kept.record_id = held.record_id
            GROUP BY kept.day)
        SELECT strftime(days.day, '%Y-%m-%d'), v.landed_rows, coalesce(k.n, 0), coalesce(h.n, 0),
            coalesce(b.n, 0),
            coalesce(coalesce(k.digest, 0) + coalesce(h.digest, 0) = v.landed_ids_digest, false)
        FROM days
        LEFT JOIN {VALIDATIONS} AS v ON v.ingestion_date = days.day
        LEFT JOIN kept_by_day AS k ON k.day = days.day
        LEFT JOIN held_by_day AS h ON h.day = days.day
        LEFT JOIN both_by_day AS b ON b.day = days.day
        ORDER BY days.day
    """
    with warehouse.connect(warehouse_path, read_only=True) as con:
        for table in (RAW_DATA, QUARANTINED_ROWS, VALIDATIONS):
            if not warehouse.table_exists(con, table):
                raise LookupError(
                    f"table {table} is not in the warehouse {warehouse_path}: materialize raw_data"
                )
        return [DayAccount(*row) for row in con.execute(sql, [list(days)]).fetchall()]


def summary_table(days: list[StoredDay]) -> str:
    """Markdown: rows landed, kept and quarantined per day, and whether the suites passed."""
    lines = ["| day | landed | raw_data | quarantined | suites passed |", "|---|---:|---:|---:|---|"]
    for d in days:
        lines.append(
            f"| {d.day} | {d.landed} | {d.raw} | {d.quarantined} | {'yes' if d.suites_passed else '**no**'} |"
        )
    return "\n".join(lines)
