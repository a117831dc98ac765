"""Ingest landed days: read, type, validate and split them (what `raw_data` runs)."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.lib import batches, expectations, landing
from mlops_platform.lib.batches import prepare_batch
from mlops_platform.lib.expectations import BatchValidation, ExpectationOutcome, run_suites, validate_batch
from mlops_platform.lib.files import atomic_target
from mlops_platform.lib.landing import LandedFile, LandingFileError, landing_path, parse_landing_file
from mlops_platform.lib.quarantine import split_batch


@dataclass(frozen=True)
class IngestedDay:
    day: str
    landed: int
    valid: pd.DataFrame
    quarantined: pd.DataFrame
    validation: BatchValidation


def read_day(landing_dir: Path, spec: DatasetSpec, day: str) -> tuple[LandedFile, pd.DataFrame]:
    """A day's landing file and its typed records (every record, in file order)."""
    landed = parse_landing_file(landing_path(landing_dir, day))
    if not set(landed.text.columns) & set(spec.columns):
        raise LandingFileError(
            f"{landed.path}: line 1 is not a header: it names none of the columns of dataset "
            f"{spec.name!r} ({', '.join(spec.columns)})"
        )
    return landed, prepare_batch(landed.text, spec, day, landed.ragged)


def ingest_day(landing_dir: Path, spec: DatasetSpec, day: str, validations_dir: Path) -> IngestedDay:
    """Read one landing file, run the spec's suites and row rules on it, and split it.

    The suites' outcomes are kept in `validations_dir` under a key of the file's bytes,
    the spec and the code that reads and judges it, and reused while all are unchanged:
    the `great_expectations_suite` gate then re-checks the very file it is given without
    running Great Expectations twice on it. The row rules run every time (they are fast).
    """
    landed, records = read_day(landing_dir, spec, day)
    well = landed.well_formed
    outcomes = _remembered_outcomes(
        landed.path, validations_dir, spec, lambda: run_suites(landed.text[well], records[well], spec)
    )
    validation = validate_batch(landed, records, spec, outcomes)
    valid, quarantined = split_batch(landed, records, validation)
    return IngestedDay(
        day=day, landed=len(records), valid=valid, quarantined=quarantined, validation=validation
    )


def _remembered_outcomes(
    path: Path, folder: Path, spec: DatasetSpec, validate: Callable[[], list[ExpectationOutcome]]
) -> list[ExpectationOutcome]:
    key = hashlib.sha256()
    for part in (
        path.read_bytes(),
        spec.model_dump_json().encode(),
        *(Path(module.__file__).read_bytes() for module in (landing, batches, expectations)),
    ):
        key.update(hashlib.sha256(part).digest())
    remembered = folder / f"{path.stem}-{key.hexdigest()[:24]}.pickle"
    if remembered.exists():
        return pickle.loads(remembered.read_bytes())
    outcomes = validate()
    for older in folder.glob(f"{path.stem}-*.pickle"):  # outcomes of earlier versions of the file
        older.unlink(missing_ok=True)
    with atomic_target(remembered) as tmp:
        tmp.write_bytes(pickle.dumps(outcomes))
    return outcomes


def summary_table(days: list[IngestedDay]) -> str:
    """Markdown: rows landed, kept and quarantined per day, and whether the suites passed."""
    lines = ["| day | landed | raw_data | quarantined | suites passed |", "|---|---:|---:|---:|---|"]
    for d in days:
        lines.append(
            f"| {d.day} | {d.landed} | {len(d.valid)} | {len(d.quarantined)} | "
            f"{'yes' if d.validation.success else '**no**'} |"
        )
    return "\n".join(lines)
