"""The daily partitions of everything that lands."""

import dagster as dg

from mlops_platform.datasets.spec import DatasetSpec


def daily_partitions(spec: DatasetSpec) -> dg.DailyPartitionsDefinition:
    """One partition per landing day, from the dataset's first day, in UTC."""
    return dg.DailyPartitionsDefinition(start_date=spec.simulation.start_date.isoformat(), timezone="UTC")
