"""The offline feature table as Parquet, one file per ingestion day, kept in step with dbt.

dbt's `features` view holds every gated record. Feast's offline store reads Parquet, so the
view is exported per ingestion day (`<lake>/features/<day>.parquet`). A day is exported again
only when its rows changed: each day's state is its row count and the time of the gate
verdicts its rows were built from (`stg_records._gated_at`), recorded in a manifest beside
the files. Which days are also in the online store is recorded there too.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlops_platform.lib import warehouse
from mlops_platform.lib.files import atomic_target, write_text_atomically


@dataclass
class LakeManifest:
    """What the lake holds: `{day: state}` per exported day, and the days held online."""

    days: dict[str, str] = field(default_factory=dict)
    online: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, path: Path) -> LakeManifest:
        if not path.is_file():
            return cls()
        raw = json.loads(path.read_text())
        return cls(days=dict(raw["days"]), online=set(raw["online"]))

    def write(self, path: Path) -> None:
        write_text_atomically(path, json.dumps({"days": self.days, "online": sorted(self.online)}, indent=1))


def features_dir(lake_dir: Path) -> Path:
    """The folder Feast's file source reads: one Parquet file per ingestion day."""
    return Path(lake_dir) / "features"


def manifest_path(lake_dir: Path) -> Path:
    return Path(lake_dir) / "features.manifest.json"


def day_file(lake_dir: Path, day: str) -> Path:
    return features_dir(lake_dir) / f"{day}.parquet"


def day_states(warehouse_path: Path) -> dict[str, str]:
    """`{day: state}` of every ingestion day in `stg_records` (rows and the verdict time)."""
    rows = warehouse.query(
        warehouse_path,
        "SELECT strftime(ingestion_date, '%Y-%m-%d') AS day, count(*) AS n, max(_gated_at) AS gated_at "
        "FROM stg_records GROUP BY 1 ORDER BY 1",
    )
    return {r.day: f"{r.n} rows gated {r.gated_at.isoformat()}" for r in rows.itertuples()}


def export_day(warehouse_path: Path, lake_dir: Path, day: str, columns: Sequence[str]) -> int:
    """Write the `features` rows of one ingestion day to its Parquet file; returns the rows."""
    target = day_file(lake_dir, day)
    select = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    with warehouse.connect(warehouse_path, read_only=True) as con, atomic_target(target) as tmp:
        path = str(tmp).replace("'", "''")
        con.execute(
            # a range on the column itself, so DuckDB skips the row groups of other days
            f"COPY (SELECT {select} FROM features WHERE ingestion_date >= CAST(? AS DATE) "
            f"AND ingestion_date < CAST(? AS DATE) + INTERVAL 1 DAY ORDER BY record_id) "
            f"TO '{path}' (FORMAT parquet)",
            [day, day],
        )
        (rows,) = con.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()
    return int(rows)


def online_days(days: Sequence[str], ttl_days: int | None) -> set[str]:
    """The days whose records belong online: the `ttl_days` days up to the newest one."""
    if not days:
        return set()
    if ttl_days is None:
        return set(days)
    newest = max(dt.date.fromisoformat(d) for d in days)
    cutoff = newest - dt.timedelta(days=ttl_days - 1)
    return {d for d in days if dt.date.fromisoformat(d) >= cutoff}
