"""Ingest landed days: read, type, validate and split them (what `raw_data` runs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.lib.batches import prepare_batch
from mlops_platform.lib.expectations import BatchValidation, validate_batch
from mlops_platform.lib.landing import landing_path, read_landing_file
from mlops_platform.lib.quarantine import split_batch


@dataclass(frozen=True)
class IngestedDay:
    day: str
    landed: int
    valid: pd.DataFrame
    quarantined: pd.DataFrame
    validation: BatchValidation


def ingest_day(landing_dir: Path, spec: DatasetSpec, day: str) -> IngestedDay:
    """Read one landing file and run the spec's suites on it."""
    text = read_landing_file(landing_path(landing_dir, day))
    records = prepare_batch(text, spec, day)
    validation = validate_batch(text, records, spec)
    valid, quarantined = split_batch(text, records, validation)
    return IngestedDay(day=day, landed=len(text), valid=valid, quarantined=quarantined, validation=validation)


def summary_table(days: list[IngestedDay]) -> str:
    """Markdown: rows landed, kept and quarantined per day, and whether the suites passed."""
    lines = ["| day | landed | raw_data | quarantined | suites passed |", "|---|---:|---:|---:|---|"]
    for d in days:
        lines.append(
            f"| {d.day} | {d.landed} | {len(d.valid)} | {len(d.quarantined)} | "
            f"{'yes' if d.validation.success else '**no**'} |"
        )
    return "\n".join(lines)
