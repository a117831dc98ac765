"""Open the dataset's Feast store from settings: no `feature_store.yaml` to edit.

Used by the Dagster resource and by the model server (which reads online features for
requests that carry only an entity id), so both see the same store.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mlops_platform.feature_repo.keys import KEY_SERIALIZATION_VERSION

if TYPE_CHECKING:
    from feast import FeatureStore


def online_store_config(
    repo_dir: Path, online_store: Literal["sqlite", "redis"], redis_url: str
) -> dict[str, str]:
    if online_store == "redis":
        return {"type": "redis", "connection_string": redis_url}
    return {"type": "sqlite", "path": str(repo_dir / "online_store.db")}


def open_store(
    project: str, repo_dir: Path, online_store: Literal["sqlite", "redis"] = "sqlite", redis_url: str = ""
) -> FeatureStore:
    """Registry and offline store are files under `repo_dir`; the online store is SQLite
    there, or Redis at `redis_url`."""
    from feast import FeatureStore, RepoConfig

    repo_dir.mkdir(parents=True, exist_ok=True)
    config = RepoConfig(
        project=project,
        provider="local",
        registry=str(repo_dir / "registry.db"),
        online_store=online_store_config(repo_dir, online_store, redis_url),
        offline_store={"type": "file"},
        repo_path=repo_dir,
        entity_key_serialization_version=KEY_SERIALIZATION_VERSION,
    )
    return FeatureStore(config=config)
