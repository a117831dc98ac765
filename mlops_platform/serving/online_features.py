"""Entity lookups: requests that send only record ids are scored on the online store's features.

The record ids of the requests waiting in a worker are read in one batch (one SQLite query or
one Redis pipeline, `feature_repo.lookup`), the way `MicroBatcher` shares a model call: while a
read is in flight, new requests queue, and the next read takes them, up to `MAX_IDS_PER_READ`
ids. Each request then gets its own answer: its rows, a 404 naming its first unknown id, or a
503 when the store does not answer (the same for every request of that read). The store is
opened, and one lookup made, when the worker starts (`warm`), so the first requests after a
restart pay no connection cost.

A small SQLite read runs on the event loop (tens of microseconds a record); a large one, or one
that must wait for a materialization's write lock, runs on the store's own thread, so the loop
keeps serving. After a failed read the store is not asked again for `RETRY_AFTER_S`: while it is
down, requests by id get their 503 at once instead of each waiting for a connection timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
from typing import Any

from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.feature_repo.definitions import ENTITY_KEY, feature_view_name
from mlops_platform.feature_repo.lookup import (
    RedisLookup,
    SqliteLookup,
    StoreBusy,
    StoreNotMaterialized,
    StoreUnavailable,
)
from mlops_platform.serving.validation import FeatureBatch, InvalidRequest, RequestValidator
from mlops_platform.settings import Settings

log = logging.getLogger("mlops_platform.serving")

RETRY_AFTER_S = 1.0
SQLITE_WAIT_S = 2.0  # longest wait for a materialization's write lock before a 503
INLINE_IDS = 64  # SQLite reads of more ids run on the store's thread, not the event loop
MAX_IDS_PER_READ = 2_000  # requests beyond this wait for the next read (one request is never split)
_Found = dict[str, list[Any]]


class OnlineFeatures:
    """The online store of one dataset's features, read in batches as validated rows."""

    def __init__(self, settings: Settings, spec: DatasetSpec, validator: RequestValidator) -> None:
        self.validator = validator
        view = feature_view_name(spec)
        self._redis: RedisLookup | None = None
        self._sqlite: SqliteLookup | None = None
        if settings.feast_online_store == "redis":
            self._redis = RedisLookup(settings.redis_url, spec.name, view, validator.names)
        else:
            path = settings.feast_dir / "online_store.db"
            self._sqlite = SqliteLookup(path, spec.name, view, validator.names)
        self._sqlite_thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._waiting: list[tuple[list[str], asyncio.Future[_Found]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self._down_until = 0.0
        self._down_error = ""
        self.reads = 0  # reads that reached the store (for tests and benchmarks)

    async def warm(self) -> None:
        """Open the store and make one lookup; a store that is not there yet is not an error."""
        try:
            await self._read(["warm-up"])
        except LookupError as exc:
            log.info("online store not ready at start (requests by id will retry): %s", exc)
        self._down_until = 0.0

    async def close(self) -> None:
        if self._sqlite_thread is not None:
            self._sqlite_thread.shutdown(wait=True)  # a read waiting for a lock ends within SQLITE_WAIT_S
        if self._redis is not None:
            await self._redis.close()
        if self._sqlite is not None:
            self._sqlite.close()

    async def batch(self, entity_ids: list[str]) -> FeatureBatch:
        """The entities' stored features as a validated batch: InvalidRequest (404) naming the first
        unknown id, LookupError (a 503) when the store does not answer."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Found] = loop.create_future()
        self._waiting.append((entity_ids, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        found = await future
        rows = []
        for i, entity in enumerate(entity_ids):
            row = found.get(entity)
            if row is None:
                raise InvalidRequest(
                    f"instances[{i}].{ENTITY_KEY}", f"{entity!r} is not in the online store", 404
                )
            rows.append(row)
        batch = self.validator.stored_batch(rows, entity_ids)
        batch.entity_ids = entity_ids
        return batch

    async def _drain(self) -> None:
        """Read the waiting requests' ids, a batch at a time, until none wait."""
        while self._waiting:
            waiting, ids = self._next_read()
            try:
                found = await self._read(ids)
            except LookupError as exc:
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(_as_answer(exc))
                continue
            except Exception as exc:  # a bug or a value this server cannot read: a 500 for each request
                log.exception("entity lookup of %d ids failed", len(ids))
                problem = f"entity lookup failed: {type(exc).__name__}: {exc}"
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(RuntimeError(problem))
                continue
            for _, future in waiting:
                if not future.done():  # a client that went away leaves a cancelled future
                    future.set_result(found)

    def _next_read(self) -> tuple[list[tuple[list[str], asyncio.Future[_Found]]], list[str]]:
        """The waiting requests the next read serves (up to MAX_IDS_PER_READ ids), and their ids."""
        taken, ids = 0, 0
        for entity_ids, _ in self._waiting:
            if taken and ids + len(entity_ids) > MAX_IDS_PER_READ:
                break
            taken, ids = taken + 1, ids + len(entity_ids)
        waiting, self._waiting = self._waiting[:taken], self._waiting[taken:]
        return waiting, list(dict.fromkeys(e for entity_ids, _ in waiting for e in entity_ids))

    async def _read(self, ids: list[str]) -> _Found:
        if time.monotonic() < self._down_until:
            raise StoreUnavailable(self._down_error)
        try:
            if self._redis is not None:
                found = await self._redis.read(ids)
            else:
                found = await self._read_sqlite(ids)
        except StoreUnavailable as exc:
            self._down_until, self._down_error = time.monotonic() + RETRY_AFTER_S, str(exc)
            raise
        self.reads += 1
        return found

    async def _read_sqlite(self, ids: list[str]) -> _Found:
        """A small read on the event loop, unless a writer holds the lock; a large one, or the wait
        for the lock (up to SQLITE_WAIT_S), on the store's own thread."""
        assert self._sqlite is not None
        if len(ids) <= INLINE_IDS:
            try:
                return self._sqlite.read(ids)
            except StoreBusy:
                pass
        if self._sqlite_thread is None:
            self._sqlite_thread = concurrent.futures.ThreadPoolExecutor(1, "online-store")
        return await asyncio.get_running_loop().run_in_executor(
            self._sqlite_thread, functools.partial(self._sqlite.read, ids, SQLITE_WAIT_S)
        )


def _as_answer(exc: LookupError) -> Exception:
    """What a request whose read failed is answered with (InvalidRequest 404, or LookupError 503)."""
    if isinstance(exc, StoreNotMaterialized):
        return InvalidRequest(
            f"instances[0].{ENTITY_KEY}",
            "the online store has no features for this model yet (materialize the feature_store "
            "asset), so no entity is found: send feature values instead",
            404,
        )
    return LookupError(
        f"the online feature store cannot answer entity lookups ({exc}): send feature values, "
        "or retry when the store is back"
    )
