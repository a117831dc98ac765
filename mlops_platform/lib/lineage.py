"""What a trained model was made from, recorded with its MLflow run as `lineage.json`.

The training set's data version and, per landed day it holds, the landing file with its sha256,
size, the ingesting Dagster run and the day's raw content version (from `training_set`'s table
record); the dataset spec and its digest; the training parameters as used (automatic values
filled in, seed included); the device, code version, torch version and torch thread count.
`landing_changes` checks the recorded landing files against the files as they are now.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_platform.lib.landing import file_sha256, landing_path

if TYPE_CHECKING:
    from mlflow import MlflowClient

LINEAGE_ARTIFACT = "lineage.json"
FORMAT = 1


@dataclass(frozen=True)
class TrainingLineage:
    """The inputs of one training run. `days` is `{day: {"file", "sha256", "size", "run_id",
    "raw_version"}}`; `sha256` is None for a day ingested before landing hashes were recorded."""

    training_set_version: str
    dataset: str
    spec: dict[str, Any]  # `DatasetSpec.model_dump(mode="json")`
    spec_digest: str  # `lib.ingestion.spec_digest`
    days: dict[str, dict[str, Any]]
    params: dict[str, Any]  # the resolved TrainingParams
    device: str
    code_version: str
    torch_version: str
    torch_threads: int
    format: int = field(default=FORMAT)

    def to_json(self) -> str:
        # keys in their order: the spec's column order is part of it (record ids hash the cells in it)
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainingLineage:
        """Parse `to_json`'s output; a missing field fails naming it, fields a later format
        adds are left out."""
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError(f"{LINEAGE_ARTIFACT}: expected a JSON object, got {type(raw).__name__}")
        fields = dataclasses.fields(cls)
        if missing := [f.name for f in fields if f.default is dataclasses.MISSING and f.name not in raw]:
            raise ValueError(f"{LINEAGE_ARTIFACT}: missing {', '.join(missing)}")
        return cls(**{f.name: raw[f.name] for f in fields if f.name in raw})


def write_lineage(client: MlflowClient, run_id: str, lineage: TrainingLineage) -> None:
    """Log `lineage` to the run as `lineage.json`."""
    client.log_text(run_id, lineage.to_json(), LINEAGE_ARTIFACT)


def read_lineage(client: MlflowClient, run_id: str) -> TrainingLineage:
    """The `lineage.json` of an MLflow run; LookupError when the run has none."""
    import tempfile

    from mlflow.exceptions import MlflowException

    try:
        listed = {artifact.path for artifact in client.list_artifacts(run_id)}
    except MlflowException as exc:
        raise LookupError(f"MLflow run {run_id} cannot be read: {exc.message}") from None
    if LINEAGE_ARTIFACT not in listed:
        raise LookupError(
            f"MLflow run {run_id} has no {LINEAGE_ARTIFACT}: it was trained before lineage was recorded"
        )
    with tempfile.TemporaryDirectory(prefix="lineage-") as folder:
        path = client.download_artifacts(run_id, LINEAGE_ARTIFACT, folder)
        return TrainingLineage.from_json(Path(path).read_text())


def landing_changes(lineage: TrainingLineage, landing_dir: Path) -> list[str]:
    """One line per recorded day whose landing file in `landing_dir` is missing, has no recorded
    hash, or whose sha256 differs from the recorded one (naming the day, the file and both
    hashes); empty when every file is as it was."""
    changes = []
    for day, entry in sorted(lineage.days.items()):
        path = landing_path(landing_dir, day)
        recorded = entry.get("sha256")
        if not path.is_file():
            changes.append(f"{day}: landing file {path} is missing (recorded sha256 {recorded})")
        elif recorded is None:
            changes.append(
                f"{day}: no sha256 was recorded for {entry.get('file')} (ingested before landing "
                "hashes were recorded): it cannot be checked"
            )
        elif (now := file_sha256(path)) != recorded:
            changes.append(f"{day}: landing file {path} changed: sha256 recorded {recorded}, now {now}")
    return changes
