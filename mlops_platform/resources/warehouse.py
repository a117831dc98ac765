"""The warehouse IO manager: DataFrames in and out of DuckDB, with a Parquet copy in the lake."""

from pathlib import Path

import dagster as dg
import pandas as pd

from mlops_platform.lib import warehouse

PARTITION_COLUMN = "ingestion_date"


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Stores each asset as a DuckDB table named after its key, plus Parquet under `lake_dir`.

    Daily-partitioned assets keep one Parquet file per day and replace the day's rows in
    the table (column `ingestion_date`), so re-materializing a partition never duplicates.
    Unpartitioned assets replace the whole table.
    """

    warehouse_path: str
    lake_dir: str

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        table = context.asset_key.path[-1]
        if context.has_asset_partitions:
            days = list(context.asset_partition_keys)
            warehouse.replace_partitions(Path(self.warehouse_path), table, obj, PARTITION_COLUMN, days)
            files = warehouse.write_lake_partitions(Path(self.lake_dir), table, obj, PARTITION_COLUMN, days)
            location = files[0].parent.parent
        else:
            warehouse.replace_table(Path(self.warehouse_path), table, obj)
            location = warehouse.write_parquet(obj, Path(self.lake_dir) / f"{table}.parquet")
        context.add_output_metadata(
            {
                "warehouse_table": dg.MetadataValue.text(f"{self.warehouse_path}::{table}"),
                "parquet": dg.MetadataValue.path(str(location)),
                "dagster/row_count": dg.MetadataValue.int(len(obj)),
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        table = context.asset_key.path[-1]
        if context.has_asset_partitions:
            return warehouse.read_table(
                Path(self.warehouse_path), table, PARTITION_COLUMN, list(context.asset_partition_keys)
            )
        return warehouse.read_table(Path(self.warehouse_path), table)
