"""`raw_data` and `quarantined_rows`: one step lands a day, validates it and splits it."""

from collections import Counter

import dagster as dg
import pandas as pd

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.defs.ingestion.partitions import daily_partitions
from mlops_platform.lib import warehouse
from mlops_platform.lib.batches import content_hash
from mlops_platform.lib.ingestion import ingest_day, summary_table
from mlops_platform.settings import Settings

GROUP = "ingestion"
IO_MANAGER = "warehouse_io_manager"


def build_ingestion_assets(settings: Settings, spec: DatasetSpec) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name="ingest_landing_batches",
        outs={
            "raw_data": dg.AssetOut(
                group_name=GROUP,
                io_manager_key=IO_MANAGER,
                kinds={"duckdb", "parquet"},
                description=(
                    f"Validated records of dataset {spec.name!r}, one partition per landing day, "
                    "each with a stable record_id and an event_timestamp."
                ),
            ),
            "quarantined_rows": dg.AssetOut(
                group_name=GROUP,
                io_manager_key=IO_MANAGER,
                kinds={"duckdb", "parquet"},
                description="Landed rows that broke a row-level expectation, as landed, with the reason.",
            ),
        },
        partitions_def=daily_partitions(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def ingest_landing_batches(context: dg.AssetExecutionContext):
        """Read each day's landing file, type it, run the spec's expectation suites and split it.

        Runs over a whole partition range in one step (single-run backfills). The days'
        gate verdicts are cleared first: until the gates judge the new rows, downstream
        models leave the days out.
        """
        warehouse.clear_gate_verdicts(settings.warehouse_path, "raw_data", context.partition_keys)
        days = [
            ingest_day(settings.landing_dir, spec, day, settings.validations_dir)
            for day in context.partition_keys
        ]
        valid = pd.concat([d.valid for d in days], ignore_index=True)
        quarantined = pd.concat([d.quarantined for d in days], ignore_index=True)
        landed = sum(d.landed for d in days)
        context.log.info(
            f"landed {landed} rows over {len(days)} day(s): {len(valid)} kept, {len(quarantined)} quarantined"
        )
        counts = {
            "landed_rows": dg.MetadataValue.int(landed),
            "raw_rows": dg.MetadataValue.int(len(valid)),
            "quarantined_rows": dg.MetadataValue.int(len(quarantined)),
            "days": dg.MetadataValue.md(summary_table(days)),
        }
        yield dg.Output(
            valid,
            output_name="raw_data",
            data_version=dg.DataVersion(content_hash(valid)),
            metadata={
                **counts,
                "content_hash": dg.MetadataValue.text(content_hash(valid)),
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(name, str(dtype)) for name, dtype in valid.dtypes.items()]
                ),
                "landing_files": dg.MetadataValue.json(
                    [str(settings.landing_dir / f"{d.day}.csv") for d in days]
                ),
            },
        )
        by_column = sum((Counter(d.validation.quarantined_by_column) for d in days), Counter())
        yield dg.Output(
            quarantined,
            output_name="quarantined_rows",
            data_version=dg.DataVersion(content_hash(quarantined)),
            metadata={
                **counts,
                "quarantined_by_column": dg.MetadataValue.json(dict(by_column.most_common())),
                "preview": dg.MetadataValue.md(
                    quarantined[["record_id", "quarantine_reason"]].head(10).to_markdown(index=False)
                    if len(quarantined)
                    else "nothing quarantined"
                ),
            },
        )

    return ingest_landing_batches
