"""Model revisions: registry versions fetched from MLflow and loaded for scoring.

A revision is one registered version, loaded from its TorchScript file (network,
preprocessing, vocabularies and threshold inside). Files are fetched once into a cache
under the data directory and shared by every server worker; loading needs only torch.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mlops_platform.lib.model_artifact import ScoringModel, load_artifact
from mlops_platform.lib.model_registry import mlflow_client
from mlops_platform.lib.preprocessing import MISSING_CATEGORY, UNKNOWN_INDEX
from mlops_platform.lib.pyfunc_model import ARTIFACT_KEY
from mlops_platform.lib.tracking_store import RegistryUnavailable, check_reachable, limit_client_retries
from mlops_platform.lib.uris import redact_uri
from mlops_platform.serving.validation import FeatureBatch

log = logging.getLogger("mlops_platform.serving")


class RevisionError(RuntimeError):
    """A version that cannot be served (missing from the registry, or not our artifact)."""


PROBE_TIMEOUT_SECONDS = 3.0
_NOT_FOUND = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"})


def configure_mlflow_client() -> None:
    """Answer an admin call within seconds when the registry is down: MLflow's HTTP client gets
    1 retry and a 5 s timeout in this process (unless the environment sets them)."""
    limit_client_retries(max_retries=1, timeout_seconds=5)


def resolve_version(
    tracking_uri: str, name: str, *, version: str | None = None, alias: str | None = None
) -> str:
    """The registry version for `version` or `alias`; raises RevisionError naming what is missing,
    RegistryUnavailable when the registry does not answer."""
    from mlflow.exceptions import MlflowException

    check_reachable(tracking_uri, attempts=1, timeout_seconds=PROBE_TIMEOUT_SECONDS)
    wanted = f"alias {alias!r}" if alias is not None else f"version {version}"
    try:
        client = mlflow_client(tracking_uri)
        if alias is not None:
            return str(client.get_model_version_by_alias(name, alias).version)
        return str(client.get_model_version(name, str(version)).version)
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            raise RevisionError(f"registered model {name!r} has no {wanted}: {exc.message}") from None
        raise RegistryUnavailable(
            f"the MLflow registry {redact_uri(tracking_uri)} failed to look up {wanted}: "
            f"{redact_uri(str(exc.message))[:300]}"
        ) from None
    except Exception as exc:  # a driver's connection error (SQLAlchemy, requests): same meaning
        raise RegistryUnavailable(
            f"the MLflow registry {redact_uri(tracking_uri)} failed to look up {wanted}: "
            f"{type(exc).__name__}: {redact_uri(str(exc))[:300]}"
        ) from None


def fetch_artifact(tracking_uri: str, name: str, version: str, cache_dir: Path) -> Path:
    """The TorchScript file of `name` version `version`, downloaded once into `cache_dir`."""
    target = cache_dir / name / str(version) / "model.pt"
    if target.exists():
        return target
    import mlflow

    resolve_version(tracking_uri, name, version=version)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", dst_path=tmp, tracking_uri=tracking_uri
            )
        )
        flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"].get("python_function", {})
        relative = flavor.get("artifacts", {}).get(ARTIFACT_KEY, {}).get("path")
        if relative is None:
            raise RevisionError(
                f"{name} v{version} has no {ARTIFACT_KEY!r} artifact: it was not logged by trained_model"
            )
        staged = Path(tmp) / "model.pt"
        shutil.copyfile(local / relative, staged)
        staged.replace(target)  # atomic: another worker either sees the whole file or none
    return target


@dataclass
class Revision:
    """One loaded version: encodes validated rows and scores them."""

    model_name: str
    version: str
    model: ScoringModel
    lookups: list[dict[str | None, int]] = field(init=False)
    instruments: Any = None  # the server's metric children for this version

    def __post_init__(self) -> None:
        self.lookups = []
        for vocabulary in self.model.encoder.vocabularies:
            lookup: dict[str | None, int] = {value: i + 1 for i, value in enumerate(vocabulary)}
            lookup[None] = lookup.get(MISSING_CATEGORY, UNKNOWN_INDEX)  # as the training data wrote it
            self.lookups.append(lookup)

    @property
    def threshold(self) -> float:
        return self.model.threshold

    def check_features(self, numeric: list[str], categorical: list[str]) -> None:
        encoder = self.model.encoder
        if encoder.numeric != numeric or encoder.categorical != categorical:
            raise RevisionError(
                f"{self.model_name} v{self.version} was trained on features "
                f"{encoder.numeric + encoder.categorical}, but the dataset spec lists {numeric + categorical}"
            )

    def predict_proba(self, batch: FeatureBatch) -> np.ndarray:
        import torch

        indices = np.empty((batch.rows, len(self.lookups)), dtype=np.int64)
        for j, (lookup, values) in enumerate(zip(self.lookups, batch.categorical, strict=True)):
            indices[:, j] = [lookup.get(v, UNKNOWN_INDEX) for v in values]  # type: ignore[arg-type]
        with torch.inference_mode():
            return self.model.module.predict_proba(
                torch.from_numpy(batch.numeric), torch.from_numpy(indices)
            ).numpy()

    def warm_up(self) -> None:
        """Score a few made-up batches: TorchScript profiles and optimizes a module on its first
        calls (tens of milliseconds each), which must not be a served request's wait."""
        numeric, categorical = len(self.model.encoder.numeric), len(self.lookups)
        for rows in (1, 8, 1, 32, 1, 8):
            batch = FeatureBatch(
                numeric=np.zeros((rows, numeric), dtype=np.float32),
                categorical=[[None] * rows for _ in range(categorical)],
                rows=rows,
            )
            self.predict_proba(batch)


def load_revision(model_name: str, version: str, artifact: Path) -> Revision:
    return Revision(model_name=model_name, version=str(version), model=load_artifact(artifact))


@dataclass(frozen=True)
class RevisionLoader:
    """Loads the versions of one served model: fetched into the shared cache, checked against
    the dataset spec's features, with the version's metric children attached."""

    tracking_uri: str
    model_name: str
    cache_dir: Path
    numeric: list[str]
    categorical: list[str]
    instruments: Callable[[str, str], Any]  # (model name, version) -> the version's metric children

    def __call__(self, version: str) -> Revision:
        artifact = fetch_artifact(self.tracking_uri, self.model_name, version, self.cache_dir)
        revision = load_revision(self.model_name, version, artifact)
        revision.check_features(self.numeric, self.categorical)
        try:
            revision.warm_up()
        except Exception as exc:  # served all the same: its failures are the canary analysis's to count
            log.warning("%s v%s fails on made-up rows: %s", self.model_name, version, str(exc)[:300])
        revision.instruments = self.instruments(self.model_name, version)
        return revision
