"""The inference log: every prediction appended as one JSON line, off the request path.

Requests only append an already-serialized line to an in-memory buffer; a writer thread
flushes the buffer in batches (every `flush_seconds` or `batch_lines`), with an fsync, to
`<dir>/date=YYYY-MM-DD/part-<pid>-<start>.jsonl` (the day of each record's timestamp).
Memory is bounded: when `max_pending` lines of a day wait, the request that adds one more
writes the buffer itself (back-pressure instead of loss). `close()` flushes everything, so a clean
stop loses nothing.

Each line is one `InferenceRecord` (`mlops_platform.lib.inference_records`, which reads them
back): `PredictionLog` turns a scored request into one record per row.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import orjson

from mlops_platform.lib.inference_records import InferenceRecord
from mlops_platform.serving.revisions import Revision
from mlops_platform.serving.validation import FeatureBatch


class InferenceLogWriter:
    """Appends serialized lines to per-day files from a background thread."""

    def __init__(
        self,
        directory: Path,
        *,
        flush_seconds: float = 0.5,
        batch_lines: int = 2000,
        max_pending: int = 100_000,
    ) -> None:
        self.directory = directory
        self.flush_seconds = flush_seconds
        self.batch_lines = batch_lines
        self.max_pending = max_pending
        self._pending: dict[str, deque[bytes]] = {}  # per day, appended by requests
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._files: dict[str, object] = {}
        self._part = f"part-{os.getpid()}-{time.time_ns()}.jsonl"
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="inference-log-writer", daemon=True)
        self._thread.start()

    def append(self, day: str, line: bytes) -> None:
        """Queue one serialized record (`line` ends without a newline)."""
        queue = self._pending.get(day)
        if queue is None:
            queue = self._pending.setdefault(day, deque())
        queue.append(line)
        pending = len(queue)
        if pending >= self.max_pending:
            self.flush()
        elif pending >= self.batch_lines:
            self._wake.set()

    def flush(self) -> None:
        with self._write_lock:
            for day, queue in sorted(self._pending.items()):
                pop = queue.popleft
                lines = [pop() for _ in range(len(queue))]  # appends after len() wait for the next flush
                if not lines:
                    continue
                handle = self._files.get(day) or self._open(day)
                handle.write(b"\n".join(lines) + b"\n")  # type: ignore[attr-defined]
                handle.flush()  # type: ignore[attr-defined]
                os.fsync(handle.fileno())  # type: ignore[attr-defined]
                self.written += len(lines)

    def _open(self, day: str) -> object:
        for older in [d for d in self._files if d < day]:  # a new day: yesterday's file is done
            self._files.pop(older).close()  # type: ignore[attr-defined]
        folder = self.directory / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / self._part, "ab")  # noqa: SIM115 (kept open until close)
        self._files[day] = handle
        return handle

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        """Stop the writer thread and flush what is left; nothing queued is lost."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()
        with self._write_lock:
            for handle in self._files.values():
                handle.close()  # type: ignore[attr-defined]
            self._files.clear()


class PredictionLog:
    """Records every scored row of one model's requests, through an `InferenceLogWriter`."""

    def __init__(
        self, writer: InferenceLogWriter, model_name: str, numeric: list[str], categorical: list[str]
    ) -> None:
        self.writer = writer
        self.model_name = model_name
        self.numeric = numeric
        self.categorical = categorical

    def record(
        self,
        batch: FeatureBatch,
        revision: Revision,
        role: str,
        protocol: str,
        request_id: str,
        probabilities: np.ndarray,
    ) -> None:
        """Queue one record per row of `batch`, all with the same timestamp."""
        timestamp = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        day = timestamp[:10]
        threshold = revision.threshold
        for row in range(batch.rows):
            probability = float(probabilities[row])
            record: InferenceRecord = {
                "request_id": request_id,
                "timestamp": timestamp,
                "model_name": self.model_name,
                "model_version": revision.version,
                "role": role,
                "protocol": protocol,
                "row": row,
                "entity_id": batch.entity_ids[row] if batch.entity_ids else None,
                "inputs": batch.inputs(self.numeric, self.categorical, row),
                "probability": probability,
                "prediction": int(probability >= threshold),
            }
            self.writer.append(day, orjson.dumps(record))
