"""The Feast feature store as a resource: embedded SQLite online store, or Redis to scale out."""

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import dagster as dg

from mlops_platform.feature_repo.store import open_store

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

    def store(self) -> "FeatureStore":
        return open_store(self.project, Path(self.repo_dir), self.online_store, self.redis_url)
