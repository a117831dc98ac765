"""Split a validated batch into the records that continue and the ones quarantined."""

from __future__ import annotations

import json

import pandas as pd

from mlops_platform.lib.expectations import BatchValidation
from mlops_platform.lib.landing import LandedFile

QUARANTINE_COLUMNS = ["record_id", "event_timestamp", "ingestion_date", "quarantine_reason", "raw_record"]


def split_batch(
    landed: LandedFile, records: pd.DataFrame, validation: BatchValidation
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(valid records, quarantined rows). A quarantined row keeps its text exactly as it
    landed in `raw_record` (its cells as JSON; a ragged line as the line itself) and says
    why in `quarantine_reason`, so nothing is lost."""
    text = landed.text.reset_index(drop=True)
    records = records.reset_index(drop=True)
    valid_mask = validation.valid_mask.to_numpy(dtype=bool)
    bad = ~valid_mask
    raw = [
        line
        if not pd.isna(line)
        else json.dumps({k: (None if pd.isna(v) else v) for k, v in row.items()}, sort_keys=True)
        for line, row in zip(
            landed.ragged.reset_index(drop=True)[bad], text.loc[bad].to_dict(orient="records"), strict=True
        )
    ]
    quarantined = pd.DataFrame(
        {
            "record_id": records.loc[bad, "record_id"].astype("string"),
            "event_timestamp": records.loc[bad, "event_timestamp"],
            "ingestion_date": records.loc[bad, "ingestion_date"],
            "quarantine_reason": validation.row_reasons[bad].astype("string"),
            "raw_record": pd.Series(raw, index=records.index[bad], dtype="string"),
        },
        columns=QUARANTINE_COLUMNS,
    )
    return records.loc[valid_mask].reset_index(drop=True), quarantined.reset_index(drop=True)
