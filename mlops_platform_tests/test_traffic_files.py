"""The traffic state and the workers' confirmations under concurrent writers: threads of one
worker (the state watcher and the admin API apply at once) and several processes."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from pathlib import Path

from mlops_platform.serving.traffic import TrafficState, TrafficStore

ROUNDS = 300


def _hammer(directory: str, pid: int, rounds: int) -> None:
    store = TrafficStore(Path(directory))
    for generation in range(rounds):
        store.report_applied(pid, generation)
        store.report_applied(os.getpid(), generation)
        with store.locked():
            state = store.read() or TrafficState(model_name="m")
            store.write(state.with_revision(str(generation % 3 + 1), 50))


def test_concurrent_confirmations_and_writes_never_collide(tmp_path: Path):
    shared_pid = os.getpid()  # every writer confirms for the same worker, as two threads of one do
    errors: list[BaseException] = []

    def thread_body() -> None:
        try:
            _hammer(str(tmp_path), shared_pid, ROUNDS)
        except BaseException as exc:
            errors.append(exc)

    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_hammer, args=(str(tmp_path), shared_pid, ROUNDS)) for _ in range(3)]
    threads = [threading.Thread(target=thread_body) for _ in range(4)]
    for worker in [*processes, *threads]:
        worker.start()
    for thread in threads:
        thread.join()
    for process in processes:
        process.join(timeout=120)
    assert not errors, errors[:3]
    assert [p.exitcode for p in processes] == [0, 0, 0]

    store = TrafficStore(tmp_path)
    state = store.read()
    assert state is not None and state.generation == 7 * ROUNDS  # every locked write counted once
    confirmations = sorted(store.workers_dir.glob("*.json"))
    assert {p.name for p in confirmations} >= {f"{shared_pid}.json", *(f"{p.pid}.json" for p in processes)}
    assert all(json.loads(p.read_text())["generation"] == ROUNDS - 1 for p in confirmations)
    leftovers = [p.name for p in tmp_path.rglob(".*.tmp")]
    assert not leftovers, leftovers
