"""Ingest landed days: read, type, validate and split them (what `raw_data` runs)."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.lib import expectations
from mlops_platform.lib.batches import prepare_batch
from mlops_platform.lib.expectations import BatchValidation, validate_batch
from mlops_platform.lib.files import atomic_target
from mlops_platform.lib.landing import landing_path, read_landing_file
from mlops_platform.lib.quarantine import split_batch


@dataclass(frozen=True)
class IngestedDay:
    day: str
    landed: int
    valid: pd.DataFrame
    quarantined: pd.DataFrame
    validation: BatchValidation


def ingest_day(landing_dir: Path, spec: DatasetSpec, day: str, validations_dir: Path) -> IngestedDay:
    """Read one landing file and run the spec's suites on it.

    The suites' outcome is kept in `validations_dir` under a key of the file's bytes,
    the spec and the suites' code, and reused while all three are unchanged: the
    `great_expectations_suite` gate then re-checks the very file it is given without running
    Great Expectations twice on it (about 1.3 s a day).
    """
    path = landing_path(landing_dir, day)
    text = read_landing_file(path)
    records = prepare_batch(text, spec, day)
    validation = _remembered_validation(
        path, validations_dir, spec, lambda: validate_batch(text, records, spec)
    )
    valid, quarantined = split_batch(text, records, validation)
    return IngestedDay(day=day, landed=len(text), valid=valid, quarantined=quarantined, validation=validation)


def _remembered_validation(
    path: Path, folder: Path, spec: DatasetSpec, validate: Callable[[], BatchValidation]
) -> BatchValidation:
    key = hashlib.sha256()
    for part in (
        path.read_bytes(),
        spec.model_dump_json().encode(),
        Path(expectations.__file__).read_bytes(),
    ):
        key.update(hashlib.sha256(part).digest())
    remembered = folder / f"{path.stem}-{key.hexdigest()[:24]}.pickle"
    if remembered.exists():
        return pickle.loads(remembered.read_bytes())
    validation = validate()
    for older in folder.glob(f"{path.stem}-*.pickle"):  # outcomes of earlier versions of the file
        older.unlink(missing_ok=True)
    with atomic_target(remembered) as tmp:
        tmp.write_bytes(pickle.dumps(validation))
    return validation


def summary_table(days: list[IngestedDay]) -> str:
    """Markdown: rows landed, kept and quarantined per day, and whether the suites passed."""
    lines = ["| day | landed | raw_data | quarantined | suites passed |", "|---|---:|---:|---:|---|"]
    for d in days:
        lines.append(
            f"| {d.day} | {d.landed} | {len(d.valid)} | {len(d.quarantined)} | "
            f"{'yes' if d.validation.success else '**no**'} |"
        )
    return "\n".join(lines)
