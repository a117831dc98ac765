"""Entity lookups: requests that send only entity ids are scored on the Feast online store's features.

Feast is imported and the store opened on the first such request, so a server that never sees
one never loads Feast.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.serving.validation import FeatureBatch, InvalidRequest, RequestValidator
from mlops_platform.settings import Settings


class OnlineFeatures:
    """The online store of one dataset's features, read as validated rows."""

    def __init__(self, settings: Settings, spec: DatasetSpec, validator: RequestValidator) -> None:
        self.settings = settings
        self.spec = spec
        self.validator = validator
        self._store: Any = None
        self._lock = asyncio.Lock()

    async def batch(self, entity_ids: list[str]) -> FeatureBatch:
        """Read the entities' features from the Feast online store, then validate them like a
        request; InvalidRequest (404) for an unknown entity, LookupError when the store does not answer."""
        from mlops_platform.feature_repo.definitions import ENTITY_KEY, feature_references

        try:
            store = await self._open()
            found = await asyncio.to_thread(
                lambda: store.get_online_features(
                    features=feature_references(self.spec),
                    entity_rows=[{ENTITY_KEY: e} for e in entity_ids],
                ).to_dict()
            )
        except Exception as exc:
            if type(exc).__name__ in ("FeatureViewNotFoundException", "ProjectNotFoundException"):
                raise InvalidRequest(
                    f"instances[0].{ENTITY_KEY}",
                    "the online store has no features for this model yet (materialize the "
                    "feature_store asset), so no entity is found: send feature values instead",
                    404,
                ) from None
            # the store (Redis, SQLite) does not answer
            raise LookupError(
                f"the online feature store cannot answer entity lookups ({type(exc).__name__}: "
                f"{str(exc)[:200]}): materialize the feature_store asset, or send feature values"
            ) from None
        instances = []
        for i, entity in enumerate(entity_ids):
            row = {name: found[name][i] for name in self.validator.names}
            if all(value is None for value in row.values()):
                raise InvalidRequest(
                    f"instances[{i}].{ENTITY_KEY}", f"{entity!r} is not in the online store", 404
                )
            instances.append(row)
        batch = self.validator.v1_batch(instances)
        batch.entity_ids = entity_ids
        return batch

    async def _open(self) -> Any:
        async with self._lock:
            if self._store is None:
                from mlops_platform.feature_repo.store import open_store

                self._store = await asyncio.to_thread(
                    open_store,
                    self.spec.name,
                    self.settings.feast_dir,
                    self.settings.feast_online_store,
                    self.settings.redis_url,
                )
        return self._store
