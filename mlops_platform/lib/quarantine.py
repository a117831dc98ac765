"""Split a validated batch into the records that continue and the ones quarantined."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from mlops_platform.lib.expectations import BatchValidation, rows_where
from mlops_platform.lib.landing import LandedFile

QUARANTINE_COLUMNS = ["record_id", "event_timestamp", "ingestion_date", "quarantine_reason", "raw_record"]


def split_batch(
    landed: LandedFile, records: pd.DataFrame, validation: BatchValidation
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(valid records, quarantined rows). A quarantined row keeps its text exactly as it
    landed in `raw_record` (its cells as JSON; a ragged line as the line itself) and says
    why in `quarantine_reason`, so nothing is lost."""
    valid_mask = validation.valid_mask.to_numpy(dtype=bool)
    bad = np.flatnonzero(~valid_mask)
    raw = [
        line
        if not pd.isna(line)
        else json.dumps({k: (None if pd.isna(v) else v) for k, v in row.items()}, sort_keys=True)
        for line, row in zip(
            landed.ragged.iloc[bad], landed.text.iloc[bad].to_dict(orient="records"), strict=True
        )
    ]
    held = records.iloc[bad].reset_index(drop=True)
    quarantined = pd.DataFrame(
        {
            "record_id": held["record_id"].astype("string"),
            "event_timestamp": held["event_timestamp"],
            "ingestion_date": held["ingestion_date"],
            "quarantine_reason": validation.row_reasons.iloc[bad].reset_index(drop=True).astype("string"),
            "raw_record": pd.Series(raw, dtype="string"),
        },
        columns=QUARANTINE_COLUMNS,
    )
    return rows_where(records, valid_mask), quarantined
