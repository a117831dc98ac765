"""Batches of encoded rows for training: from arrays in memory, or streamed from Parquet.

Both sources emit consecutive `batch_size` slices of an epoch's row order, so for the same
order they produce the same batches. Arrays in memory shuffle with one seeded permutation of
all rows. The Parquet stream keeps a fixed number of batches of rows: each epoch it permutes the
file's row groups (seeded), reads them a window of about `shuffle_batches` batches at a time
(the next window while the current one trains), and permutes the rows inside each window.

The rows of a warehouse query reach a source through `query_batches`: in memory when they fit
one shuffle window, else exported with DuckDB `COPY ... TO` Parquet and streamed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np
import pyarrow.parquet as pq

from mlops_platform.lib.preprocessing import FeatureEncoder, quote

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

SHUFFLE_BATCHES = 64  # rows a Parquet stream shuffles together, in batches
LABEL = "label"


class Batch(NamedTuple):
    """Encoded rows: what `TabularNet` reads, and the labels (0.0 / 1.0)."""

    numeric: np.ndarray  # float32, rows x numeric features (NaN = missing)
    categorical: np.ndarray  # int64, rows x categorical features (vocabulary indices)
    labels: np.ndarray  # float32

    @property
    def rows(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray) -> Batch:
        """The rows at these indices, copied (`np.take`: several times faster than `array[rows]`)."""
        return Batch(*(np.take(array, rows, axis=0) for array in self))

    def concat(self, other: Batch) -> Batch:
        return Batch(*(np.concatenate(pair) for pair in zip(self, other, strict=True)))

    def slices(self, size: int) -> Iterator[Batch]:
        """Consecutive slices of `size` rows (the last one shorter)."""
        for start in range(0, self.rows, size):
            yield Batch(*(array[start : start + size] for array in self))


class BatchSource(Protocol):
    """Rows to train on or to score: shuffled per epoch, or in their stored order."""

    rows: int
    positives: int
    reader_threads: int  # threads that read while the caller trains on a batch

    def batches(self, epoch: int) -> Iterator[Batch]:
        """The rows of one epoch (numbered from 1) in its seeded order, `batch_size` at a time."""
        ...

    def chunks(self) -> Iterator[Batch]:
        """Every row once, in stored order, `batch_size` at a time."""
        ...


def epoch_generator(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch])


def encode_record_batches(batches: Iterable[pa.RecordBatch], encoder: FeatureEncoder, rows: int) -> Batch:
    """Arrow record batches (feature columns and `label`) encoded into one `Batch` of `rows`."""
    out = Batch(
        np.empty((rows, len(encoder.numeric)), dtype=np.float32),
        np.empty((rows, len(encoder.categorical)), dtype=np.int64),
        np.empty(rows, dtype=np.float32),
    )
    start = 0
    for record_batch in batches:
        end = start + record_batch.num_rows
        out.numeric[start:end], out.categorical[start:end] = encoder.record_batch_arrays(record_batch)
        out.labels[start:end] = record_batch.column(LABEL).to_numpy(zero_copy_only=False)
        start = end
    if start != rows:
        raise ValueError(f"expected {rows} rows, read {start}")
    return out


class ArrayBatches:
    """Rows held in memory; each epoch takes them in `order(epoch)` (default: a seeded permutation)."""

    def __init__(
        self,
        data: Batch,
        batch_size: int,
        seed: int,
        order: Callable[[int], np.ndarray] | None = None,
    ) -> None:
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.rows = data.rows
        self.positives = int(data.labels.sum())
        self.reader_threads = 0
        self._order = order or self.epoch_order

    def epoch_order(self, epoch: int) -> np.ndarray:
        return epoch_generator(self.seed, epoch).permutation(self.rows)

    def batches(self, epoch: int) -> Iterator[Batch]:
        order = self._order(epoch)
        for start in range(0, self.rows, self.batch_size):
            yield self.data.take(order[start : start + self.batch_size])

    def chunks(self) -> Iterator[Batch]:
        return self.data.slices(self.batch_size)


def shuffle_windows(
    group_rows: Sequence[int], window_rows: int, rng: np.random.Generator
) -> Iterator[tuple[list[int], np.ndarray]]:
    """The windows of one epoch: row groups in a seeded order, packed into windows of at most
    `window_rows` rows (at least one group each), and a permutation of each window's rows.

    Drawn one window at a time, so the permutations never hold more than one window.
    """
    window: list[int] = []
    held = 0
    for group in rng.permutation(len(group_rows)).tolist():
        if window and held + group_rows[group] > window_rows:
            yield window, rng.permutation(held)
            window, held = [], 0
        window.append(group)
        held += group_rows[group]
    if window:
        yield window, rng.permutation(held)


class ParquetBatches:
    """Rows streamed from a Parquet file of encoded-to-be columns (features and `label`).

    Holds at most `max_rows` rows at once (`peak_rows` records the most it held): the shuffle
    window being trained on and the next one being read, each of about `shuffle_batches`
    batches (at least one row group), and the rows of the last window that did not fill a batch.
    """

    def __init__(
        self,
        path: Path,
        encoder: FeatureEncoder,
        batch_size: int,
        seed: int,
        shuffle_batches: int = SHUFFLE_BATCHES,
    ) -> None:
        self.path, self.encoder, self.batch_size, self.seed = Path(path), encoder, batch_size, seed
        self._file = pq.ParquetFile(self.path, read_dictionary=encoder.categorical)
        metadata = self._file.metadata
        self.group_rows = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        self.rows = sum(self.group_rows)
        self.reader_threads = 1  # `batches` reads the next window while the current one trains
        self.window_rows = shuffle_batches * batch_size
        self.max_rows = 2 * max([self.window_rows, *self.group_rows]) + batch_size - 1
        self.peak_rows = 0
        self.positives = int(
            sum(
                batch.column(LABEL).to_numpy(zero_copy_only=False).sum()
                for batch in self._file.iter_batches(batch_size=batch_size, columns=[LABEL])
            )
        )

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The row order `batches(epoch)` streams, as indices into the file's rows."""
        starts = np.cumsum([0, *self.group_rows])
        windows = shuffle_windows(self.group_rows, self.window_rows, epoch_generator(self.seed, epoch))
        return np.concatenate(
            [
                np.concatenate([np.arange(starts[g], starts[g + 1]) for g in groups])[permutation]
                for groups, permutation in windows
            ]
        )

    def _read(self, groups: list[int]) -> Batch:
        rows = sum(self.group_rows[g] for g in groups)
        return encode_record_batches(
            self._file.iter_batches(batch_size=rows, row_groups=groups), self.encoder, rows
        )

    def _read_windows(self, epoch: int) -> Iterator[tuple[Batch, np.ndarray, int]]:
        """The epoch's windows read, each with its permutation and the rows of the next window,
        which a background thread reads while the caller trains on this one."""
        windows = shuffle_windows(self.group_rows, self.window_rows, epoch_generator(self.seed, epoch))
        with ThreadPoolExecutor(max_workers=1) as reader:
            current = None
            for groups, permutation in windows:
                upcoming = reader.submit(self._read, groups), permutation
                if current is not None:
                    yield current[0].result(), current[1], sum(self.group_rows[g] for g in groups)
                current = upcoming
            if current is not None:
                yield current[0].result(), current[1], 0

    def batches(self, epoch: int) -> Iterator[Batch]:
        pending: Batch | None = None  # rows of the previous windows that did not fill a batch
        for window, permutation, ahead in self._read_windows(epoch):
            carried, pending = pending, None
            held = carried.rows if carried is not None else 0
            self.peak_rows = max(self.peak_rows, held + window.rows + ahead)
            for start in range(-held, window.rows, self.batch_size):
                rows = window.take(permutation[max(start, 0) : start + self.batch_size])
                batch = rows if carried is None or start >= 0 else carried.concat(rows)
                if batch.rows < self.batch_size:
                    pending = batch
                else:
                    yield batch
        if pending is not None:
            yield pending

    def chunks(self) -> Iterator[Batch]:
        for group, rows in enumerate(self.group_rows):
            self.peak_rows = max(self.peak_rows, rows)
            yield from self._read([group]).slices(self.batch_size)


def select_sql(
    query: str, numeric: Sequence[str], categorical: Sequence[str], extra: Sequence[str] = ()
) -> str:
    """The features of `query`'s rows as the encoder reads them (numbers as DOUBLE, categories as
    VARCHAR), its `label`, and the `extra` columns as they are."""
    columns = [
        *(f"CAST({quote(n)} AS DOUBLE) AS {quote(n)}" for n in numeric),
        *(f"CAST({quote(c)} AS VARCHAR) AS {quote(c)}" for c in categorical),
        quote(LABEL),
        *(quote(e) for e in extra),
    ]
    return f"SELECT {', '.join(columns)} FROM ({query})"


def query_batches(
    con: duckdb.DuckDBPyConnection,
    query: str,
    order_by: str,
    encoder: FeatureEncoder,
    batch_size: int,
    seed: int,
    folder: Path,
    name: str,
) -> ArrayBatches | ParquetBatches:
    """The rows of `query`, sorted by `order_by` (a unique key, or ALL), as a batch source: in
    memory when they fit one shuffle window, else exported to `folder/<name>.parquet` and streamed.

    The sort makes the rows and the file's row groups the same in every run and on any number
    of threads: the shuffle, and so the trained weights, depend on them.
    """
    rows = con.sql(f"SELECT count(*) FROM ({query})").fetchall()[0][0]
    if not rows:
        raise ValueError(f"no rows to read for {name}: the query returned none ({query})")
    select = f"{select_sql(query, encoder.numeric, encoder.categorical)} ORDER BY {order_by}"
    if rows <= SHUFFLE_BATCHES * batch_size:
        data = encode_record_batches(con.sql(select).to_arrow_reader(batch_size), encoder, rows)
        return ArrayBatches(data, batch_size, seed)
    path = Path(folder) / f"{name}.parquet"
    target = str(path).replace("'", "''")
    con.execute(f"COPY ({select}) TO '{target}' (FORMAT parquet, ROW_GROUP_SIZE {batch_size})")
    return ParquetBatches(path, encoder, batch_size, seed)
