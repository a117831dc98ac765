"""Requests by record id over real HTTP: `mlops serve` reads the features the real data pipeline
put in the Feast online store (SQLite, and Redis behind a proxy the test can cut), in batches."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import threading
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from mlops_platform.lib import warehouse
from mlops_platform.settings import Settings
from mlops_platform_tests.services import REDIS, require_service
from mlops_platform_tests.serving import ROW, RunningServer, free_port, start_server

MODEL = "adult_income_classifier"


def _home(tmp_path: Path, landed_home: Path, model_registry: Settings, **overrides: object) -> Settings:
    """A server home: the session's registered versions, and the landed slice's online store."""
    home = tmp_path / "home"
    shutil.copytree(landed_home / "feast", home / "feast")
    return Settings(
        home=home,
        dataset_spec_path=model_registry.dataset_spec_path,
        mlflow_tracking_uri=model_registry.tracking_uri,
        **overrides,
    )


def _records(landed_home: Path, features: list[str]) -> pd.DataFrame:
    """Every record the pipeline stored, as a client would send it (missing values null)."""
    frame = warehouse.read_table(landed_home / "warehouse.duckdb", "stg_records")
    return frame[["record_id", *features]].reset_index(drop=True)


def _dicts(frame: pd.DataFrame, features: list[str]) -> list[dict]:
    records = frame[features].astype(object).where(frame[features].notna(), None).to_dict("records")
    return [{k: (int(v) if isinstance(v, np.integer) else v) for k, v in r.items()} for r in records]


async def _post_all(url: str, bodies: list[dict]) -> list[httpx.Response]:
    """Every body at once (so a worker reads their ids together)."""
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(*(client.post(url, json=body) for body in bodies))


def _probabilities(answer: httpx.Response) -> list[float]:
    assert answer.status_code == 200, answer.text
    return [p["probability"] for p in answer.json()["predictions"]]


def _errors_counted(server: RunningServer, status: str) -> float:
    metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
    wanted = f'mlops_server_errors_total{{route="/v1/models/{{model}}:predict",status="{status}"}}'
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(wanted))


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory, landed_home: Path, model_registry: Settings):
    settings = _home(tmp_path_factory.mktemp("online"), landed_home, model_registry)
    running = start_server(settings, 2, "--version", "1", "--reset")
    yield running
    running.stop()


def test_every_stored_record_scores_by_id_as_by_its_features(sqlite_server, landed_home, model_registry):
    """All 2,000 records, by id in concurrent requests of 50, give the probabilities their
    feature values give, the records with a missing category (stored as the marker) included."""
    spec = model_registry.load_spec()
    records = _records(landed_home, spec.features.all)
    assert records[spec.features.categorical].isna().any(axis=1).sum() > 20  # the marker is covered
    url = sqlite_server.predict_url(MODEL)
    chunks = [records.iloc[i : i + 50] for i in range(0, len(records), 50)]
    by_id = asyncio.run(
        _post_all(url, [{"instances": [{"record_id": r} for r in c["record_id"]]} for c in chunks])
    )
    by_features = asyncio.run(_post_all(url, [{"instances": _dicts(c, spec.features.all)} for c in chunks]))
    ids = [p for answer in by_id for p in _probabilities(answer)]
    dicts = [p for answer in by_features for p in _probabilities(answer)]
    assert len(ids) == len(records)
    np.testing.assert_allclose(ids, dicts, rtol=0, atol=1e-6)
    # all in one request, one id twice: read off the event loop, in SQLite statements of 900 ids
    every = [{"record_id": r} for r in records["record_id"]] + [{"record_id": records["record_id"][0]}]
    at_once = _probabilities(httpx.post(url, json={"instances": every}, timeout=60))
    np.testing.assert_allclose(at_once, [*dicts, dicts[0]], rtol=0, atol=1e-6)


def test_known_and_unknown_ids_read_together_each_get_their_own_answer(
    sqlite_server, landed_home, model_registry
):
    spec = model_registry.load_spec()
    records = _records(landed_home, spec.features.all).sample(n=30, random_state=1).reset_index(drop=True)
    url = sqlite_server.predict_url(MODEL)
    expected = _probabilities(
        httpx.post(url, json={"instances": _dicts(records, spec.features.all)}, timeout=60)
    )
    bodies = []
    for i, rid in enumerate(records["record_id"]):
        bodies.append({"instances": [{"record_id": rid}]})
        bodies.append({"instances": [{"record_id": f"nobody-{i}"}]})
    bodies.append({"instances": [{"record_id": records["record_id"][0]}, {"record_id": "nobody-x"}]})
    bodies.append(
        {"instances": [{"record_id": records["record_id"][1]}, {"record_id": records["record_id"][2]}]}
    )
    answers = asyncio.run(_post_all(url, bodies))

    for i in range(len(records)):
        known, unknown = answers[2 * i], answers[2 * i + 1]
        assert _probabilities(known) == pytest.approx([expected[i]], abs=1e-6)
        assert unknown.status_code == 404
        assert unknown.json()["field"] == "instances[0].record_id"
        assert f"'nobody-{i}' is not in the online store" in unknown.json()["error"]
    mixed, pair = answers[-2], answers[-1]
    assert mixed.status_code == 404 and mixed.json()["field"] == "instances[1].record_id"
    assert _probabilities(pair) == pytest.approx(expected[1:3], abs=1e-6)


def test_a_store_not_materialized_yet_is_a_404_until_it_is(tmp_path, landed_home, model_registry):
    """A server started before the first feature_store run: 404 naming the remedy, then the
    records once the store is there, with no restart."""
    settings = _home(tmp_path, landed_home, model_registry)
    stored = tmp_path / "stored"
    shutil.move(settings.feast_dir, stored)
    server = start_server(settings, 1, "--version", "1", "--reset")
    try:
        url = server.predict_url(MODEL)
        rid = _records(landed_home, []).record_id[0]
        early = httpx.post(url, json={"instances": [{"record_id": rid}]}, timeout=60)
        assert early.status_code == 404, early.text
        assert "materialize the feature_store asset" in early.json()["error"]
        assert httpx.post(url, json={"instances": [ROW]}, timeout=60).status_code == 200
        shutil.move(stored, settings.feast_dir)
        later = httpx.post(url, json={"instances": [{"record_id": rid}]}, timeout=60)
        assert later.status_code == 200, later.text
    finally:
        server.stop()


class _Proxy:
    """A TCP proxy to Redis that the test can cut (every connection dropped, the port refused)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: the port again after a cut
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(REDIS)
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        assert self._listener is not None
        with contextlib.suppress(OSError):  # wakes the accepting thread: the port is refused from now
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self._sockets = []


def test_redis_store_served_lost_and_back(tmp_path, landed_home, model_registry):
    """On Redis: records by id score as by their features; with Redis cut off, requests by id
    get a 503 at once (counted as server errors) while requests with features still score;
    when Redis is back, requests by id score again, with no restart."""
    from mlops_platform.feature_repo import online
    from mlops_platform.feature_repo.definitions import build_feature_repo, feature_view_name
    from mlops_platform.feature_repo.store import open_store

    require_service("Redis", REDIS)
    spec = model_registry.load_spec()
    proxy = _Proxy(free_port())
    proxy.start()
    settings = _home(
        tmp_path, landed_home, model_registry, feast_online_store="redis", redis_url=f"127.0.0.1:{proxy.port}"
    )
    lake = landed_home / "lake" / "features"
    days = sorted(lake.glob("*.parquet"))
    assert days
    store = open_store(spec.name, tmp_path / "redis_repo", "redis", f"{REDIS[0]}:{REDIS[1]}")
    store.apply(build_feature_repo(spec, lake))
    view = feature_view_name(spec)
    for day in days:
        online.write_day(store, view, day, batch_rows=500)
    records = _records(landed_home, spec.features.all).sample(n=40, random_state=2).reset_index(drop=True)
    server = start_server(settings, 2, "--version", "1", "--reset")
    try:
        url = server.predict_url(MODEL)
        expected = _probabilities(
            httpx.post(url, json={"instances": _dicts(records, spec.features.all)}, timeout=60)
        )
        by_id = {"instances": [{"record_id": r} for r in records["record_id"]]}
        assert _probabilities(httpx.post(url, json=by_id, timeout=60)) == pytest.approx(expected, abs=1e-6)

        proxy.cut()
        before = _errors_counted(server, "503")
        lost = asyncio.run(_post_all(url, [by_id] * 10))  # the client's timeout: 60 s; answered at once
        assert all(a.status_code == 503 for a in lost), [a.text for a in lost]
        assert "online feature store cannot answer" in lost[0].json()["error"]
        assert _errors_counted(server, "503") >= before + 10
        assert httpx.post(url, json={"instances": [ROW]}, timeout=5).status_code == 200

        proxy.start()
        for _ in range(100):
            back = httpx.post(url, json=by_id, timeout=60)
            if back.status_code == 200:
                break
            asyncio.run(asyncio.sleep(0.2))
        assert _probabilities(back) == pytest.approx(expected, abs=1e-6)
    finally:
        server.stop()
        proxy.cut()
        online.delete_records(store, view, list(_records(landed_home, []).record_id))


def test_concurrent_lookups_share_one_read(tmp_path, landed_home, model_registry):
    """In one worker, requests by id waiting together are read in one query, and each gets its
    own rows; a read while the store is unreachable fails every waiting request alike."""
    from mlops_platform.serving.online_features import OnlineFeatures
    from mlops_platform.serving.validation import InvalidRequest, RequestValidator

    settings = _home(tmp_path, landed_home, model_registry)
    spec = settings.load_spec()
    validator = RequestValidator(spec, max_rows=100)
    ids = list(_records(landed_home, []).record_id[:40])

    async def lookups() -> tuple[list, int]:
        features = OnlineFeatures(settings, spec, validator)
        await features.warm()
        reads = features.reads
        answers = await asyncio.gather(
            *(features.batch([rid]) for rid in ids),
            features.batch([ids[0], "nobody"]),
            return_exceptions=True,
        )
        reads = features.reads - reads
        await features.close()
        return answers, reads

    answers, reads = asyncio.run(lookups())
    assert reads == 1
    single = asyncio.run(_one_batch(settings, validator, ids))
    for i, answer in enumerate(answers[:-1]):
        assert answer.entity_ids == [ids[i]]
        np.testing.assert_array_equal(answer.numeric[0], single.numeric[i])
        assert [column[0] for column in answer.categorical] == [column[i] for column in single.categorical]
    assert isinstance(answers[-1], InvalidRequest) and answers[-1].field == "instances[1].record_id"

    nowhere = _home(
        tmp_path / "nowhere",
        landed_home,
        model_registry,
        feast_online_store="redis",
        redis_url=f"127.0.0.1:{free_port()}",
    )

    async def unreachable() -> tuple[list, list, int]:
        features = OnlineFeatures(nowhere, spec, validator)
        await features.warm()  # logs, does not raise
        assert features._redis is not None
        attempts = 0
        read = features._redis.read

        async def counted(ids: list[str]) -> dict:
            nonlocal attempts
            attempts += 1
            return await read(ids)

        features._redis.read = counted  # type: ignore[method-assign]
        try:
            first = await asyncio.gather(*(features.batch([rid]) for rid in ids[:5]), return_exceptions=True)
            again = await asyncio.gather(*(features.batch([rid]) for rid in ids[5:9]), return_exceptions=True)
            return first, again, attempts
        finally:
            await features.close()

    first, again, attempts = asyncio.run(unreachable())
    for failed in (*first, *again):
        assert type(failed) is LookupError and "cannot answer entity lookups" in str(failed), failed
    assert attempts == 1  # one read for the five waiting together; within a second, none


async def _one_batch(settings: Settings, validator, ids: list[str]):
    from mlops_platform.serving.online_features import OnlineFeatures

    features = OnlineFeatures(settings, settings.load_spec(), validator)
    try:
        return await features.batch(ids)
    finally:
        await features.close()


def test_a_write_lock_stalls_lookups_not_the_event_loop(tmp_path, landed_home, model_registry, monkeypatch):
    """A materialization holding SQLite's write lock: a lookup waits for it on its own thread
    while the event loop keeps running; held past the wait, the lookup is a 503 (LookupError)."""
    import sqlite3
    import time

    from mlops_platform.serving import online_features
    from mlops_platform.serving.online_features import OnlineFeatures
    from mlops_platform.serving.validation import RequestValidator

    monkeypatch.setattr(online_features, "SQLITE_WAIT_S", 1.5)
    settings = _home(tmp_path, landed_home, model_registry)
    spec = settings.load_spec()
    rid = _records(landed_home, []).record_id[0]
    writer = sqlite3.connect(settings.feast_dir / "online_store.db", isolation_level=None)

    async def lookup_while_locked(hold_s: float) -> tuple[object, int]:
        features = OnlineFeatures(settings, spec, RequestValidator(spec, max_rows=10))
        await features.warm()
        writer.execute("BEGIN EXCLUSIVE")
        gaps = [0.0]

        async def tick() -> None:
            end = last = time.monotonic()
            end += hold_s + 0.2
            while last < end:
                await asyncio.sleep(0.01)
                gaps.append(time.monotonic() - last)
                last = time.monotonic()

        async def release() -> None:
            await asyncio.sleep(hold_s)
            writer.execute("COMMIT")

        answer, *_ = await asyncio.gather(features.batch([rid]), tick(), release(), return_exceptions=True)
        await features.close()
        return answer, max(gaps)

    answer, longest_gap = asyncio.run(lookup_while_locked(0.5))
    assert answer.entity_ids == [rid]
    assert longest_gap < 0.25  # the loop ran on while the read waited 0.5 s for the lock
    answer, longest_gap = asyncio.run(lookup_while_locked(2.5))
    assert type(answer) is LookupError and "locked by a writer" in str(answer) and longest_gap < 0.25
    writer.close()
