"""`raw_data` and `quarantined_rows`: one step lands each day, validates it, splits it and stores it."""

import hashlib
from collections import Counter

import dagster as dg
import pandas as pd

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.defs.ingestion.partitions import daily_partitions
from mlops_platform.lib import warehouse
from mlops_platform.lib.ingestion import (
    PREVIEW_ROWS,
    QUARANTINED_ROWS,
    RAW_DATA,
    ingest_day,
    store_day,
    summary_table,
)
from mlops_platform.settings import Settings

GROUP = "ingestion"


def build_ingestion_assets(settings: Settings, spec: DatasetSpec) -> dg.AssetsDefinition:
    def stored_in(table: str, rows: int) -> dict[str, dg.MetadataValue]:
        return {
            "warehouse_table": dg.MetadataValue.text(f"{settings.warehouse_path}::{table}"),
            "parquet": dg.MetadataValue.path(str(settings.lake_dir / table)),
            "dagster/row_count": dg.MetadataValue.int(rows),
        }

    @dg.multi_asset(
        name="ingest_landing_batches",
        specs=[
            dg.AssetSpec(
                RAW_DATA,
                group_name=GROUP,
                kinds={"duckdb", "parquet"},
                description=(
                    f"Validated records of dataset {spec.name!r}, one partition per landing day, "
                    "each with a stable record_id and an event_timestamp."
                ),
            ),
            dg.AssetSpec(
                QUARANTINED_ROWS,
                group_name=GROUP,
                kinds={"duckdb", "parquet"},
                description="Landed rows that broke a row-level expectation, as landed, with the reason.",
            ),
        ],
        partitions_def=daily_partitions(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def ingest_landing_batches(context: dg.AssetExecutionContext):
        """Read each day's landing file, type it, run the spec's expectation suites, split it
        and write it to the warehouse and the lake, one day after the other.

        Runs over a whole partition range in one step (single-run backfills), holding one day
        at a time. The days' gate verdicts are cleared first: until the gates judge the new
        rows, downstream models leave the days out.
        """
        warehouse.clear_gate_verdicts(settings.warehouse_path, RAW_DATA, context.partition_keys)
        days = []
        for day in context.partition_keys:
            stored = store_day(
                settings.warehouse_path,
                settings.lake_dir,
                spec,
                ingest_day(settings.landing_dir, spec, day),
                context.run.run_id,
            )
            context.log.info(
                f"{day}: landed {stored.landed} rows, {stored.raw} kept, {stored.quarantined} quarantined"
            )
            days.append(stored)
        landed = sum(d.landed for d in days)
        raw = sum(d.raw for d in days)
        held = sum(d.quarantined for d in days)
        context.log.info(f"landed {landed} rows over {len(days)} day(s): {raw} kept, {held} quarantined")
        counts = {
            "landed_rows": dg.MetadataValue.int(landed),
            "raw_rows": dg.MetadataValue.int(raw),
            "quarantined_rows": dg.MetadataValue.int(held),
            "days": dg.MetadataValue.md(summary_table(days)),
        }
        raw_version = _run_version([d.raw_version for d in days])
        yield dg.MaterializeResult(
            asset_key=RAW_DATA,
            data_version=dg.DataVersion(raw_version),
            metadata={
                **counts,
                **stored_in(RAW_DATA, raw),
                "content_hash": dg.MetadataValue.text(raw_version),
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(name, dtype) for name, dtype in days[-1].raw_columns.items()]
                ),
                "landing_files": dg.MetadataValue.json(
                    [str(settings.landing_dir / f"{d.day}.csv") for d in days]
                ),
                "landing_sha256": dg.MetadataValue.json({d.day: d.landing_sha256 for d in days}),
            },
        )
        by_column = sum((Counter(d.quarantined_by_column) for d in days), Counter())
        preview = pd.concat([d.preview for d in days], ignore_index=True).head(PREVIEW_ROWS)
        yield dg.MaterializeResult(
            asset_key=QUARANTINED_ROWS,
            data_version=dg.DataVersion(_run_version([d.quarantined_version for d in days])),
            metadata={
                **counts,
                **stored_in(QUARANTINED_ROWS, held),
                "quarantined_by_column": dg.MetadataValue.json(dict(by_column.most_common())),
                "preview": dg.MetadataValue.md(
                    preview.to_markdown(index=False) if len(preview) else "nothing quarantined"
                ),
            },
        )

    return ingest_landing_batches


def _run_version(day_versions: list[str]) -> str:
    """The content version of a run's days: a digest of each day's version, in day order."""
    return hashlib.sha256("|".join(day_versions).encode()).hexdigest()[:16]
