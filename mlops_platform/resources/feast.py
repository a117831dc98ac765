"""The Feast feature store as a resource: embedded SQLite online store, or Redis to scale out."""

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import dagster as dg

if TYPE_CHECKING:
    from feast import FeatureStore


class FeastResource(dg.ConfigurableResource):
    """Builds a `feast.FeatureStore` from configuration (no `feature_store.yaml` to edit).

    The registry and the offline store are files under `repo_dir`; the online store is
    SQLite there by default, or Redis at `redis_url` when `online_store="redis"`.
    """

    project: str
    repo_dir: str
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_url: str = "127.0.0.1:6379"

    def online_store_config(self) -> dict[str, str]:
        if self.online_store == "redis":
            return {"type": "redis", "connection_string": self.redis_url}
        return {"type": "sqlite", "path": str(Path(self.repo_dir) / "online_store.db")}

    def store(self) -> "FeatureStore":
        from feast import FeatureStore, RepoConfig

        repo = Path(self.repo_dir)
        repo.mkdir(parents=True, exist_ok=True)
        config = RepoConfig(
            project=self.project,
            provider="local",
            registry=str(repo / "registry.db"),
            online_store=self.online_store_config(),
            offline_store={"type": "file"},
            repo_path=repo,
            entity_key_serialization_version=3,
        )
        return FeatureStore(config=config)
