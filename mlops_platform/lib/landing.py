"""Landing files: the demo's source split into a reference period and daily batches.

A landing file is `<landing_dir>/<YYYY-MM-DD>.csv` holding the source's own columns as
text, UTF-8, with a header line. Files are written atomically (temporary name, then
rename), so a sensor never sees half a file.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_platform.datasets.csv_text import CsvFileError, check_header, read_csv_text
from mlops_platform.datasets.simulation import Shift
from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.lib.files import atomic_target

_LANDING_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})\.csv$")


def landing_path(landing_dir: Path, day: dt.date | str) -> Path:
    return Path(landing_dir) / f"{day}.csv"


def landed_days(landing_dir: Path) -> list[str]:
    """Days (`YYYY-MM-DD`) with a landing file, oldest first."""
    if not Path(landing_dir).is_dir():
        return []
    return sorted(m.group(1) for p in Path(landing_dir).iterdir() if (m := _LANDING_NAME.match(p.name)))


@dataclass(frozen=True)
class LandingFingerprint:
    """What tells one version of a landing file from another without reading it: its size
    and modification time (a landed file is replaced by a rename, never edited in place)."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> LandingFingerprint:
        stat = Path(path).stat()
        return cls(size=stat.st_size, mtime_ns=stat.st_mtime_ns)


def file_sha256(path: Path) -> str:
    """The sha256 (hex) of a file's bytes, read in blocks."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


@dataclass(frozen=True)
class LandedFile:
    """A landing file's data records as text, in file order.

    `text` has one row per record, with the header's columns; empty cells are missing.
    A ragged record (more or fewer fields than the header) is all missing in `text`, kept
    as landed in `ragged` and explained in `faults` (both missing for well-formed records).
    `lines` holds the line each record starts on; line 1 is the header. `fingerprint` is
    that of the bytes read, `sha256` (hex) their content hash.
    """

    path: Path
    text: pd.DataFrame
    lines: np.ndarray
    ragged: pd.Series
    faults: pd.Series
    fingerprint: LandingFingerprint
    sha256: str

    @property
    def well_formed(self) -> np.ndarray:
        return self.ragged.isna().to_numpy()


def parse_landing_file(path: Path) -> LandedFile:
    """Read a landing file as text records (types are checked later).

    Fails only when the file is not a table at all (missing, empty, not UTF-8, a header
    with an empty or repeated name). A record with the wrong number of fields is kept as
    ragged, for quarantine; when it spans several lines (a quote left open swallows the
    lines after it), each of its lines is a ragged record of its own. A quote left open that
    runs to the end of the file makes its lines ragged even when the field count happens to
    fit. (A quote left open and closed again lines later, with the right field count, is a
    valid multi-line cell to any CSV reader; the cell's rules judge it.)

    A plain file (no quote, no blank line, every line break LF or CRLF) whose lines all have
    the header's number of fields is one record per line: Arrow's CSV reader parses it, with
    each distinct cell text held once. Any other file is read line by line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no landing file {path}: write one with `mlops simulate-batches` or copy a CSV there"
        )
    with open(path, "rb") as file:
        stat = os.fstat(file.fileno())
        data = file.read()
    sha256 = hashlib.sha256(data).hexdigest()
    data = data.removeprefix(codecs.BOM_UTF8)  # positions count from the first character
    fingerprint = LandingFingerprint(size=stat.st_size, mtime_ns=stat.st_mtime_ns)
    content = _decode(path, data)
    if not content.strip():
        raise CsvFileError(f"{path}: the file is empty; a landing file starts with a header line")
    body = data.find(b"\n") + 1  # where the records start
    if _is_plain(data) and 0 < body < len(data):
        header = _header(path, next(csv.reader([data[:body].decode()])))
        text = _read_plain(memoryview(data)[body:], header)
        if text is not None:
            return LandedFile(
                path=path,
                text=text,
                lines=np.arange(2, len(text) + 2, dtype=np.int64),
                ragged=pd.Series(pd.NA, index=range(len(text)), dtype="string"),
                faults=pd.Series(pd.NA, index=range(len(text)), dtype="string"),
                fingerprint=fingerprint,
                sha256=sha256,
            )
    return _read_lines(path, content, fingerprint, sha256)


def _is_plain(data: bytes) -> bool:
    """No quote, every line break LF or CRLF and no blank line: each line is one record."""
    return (
        b'"' not in data
        and data.count(b"\r") == data.count(b"\r\n")
        and not data.startswith((b"\n", b"\r\n"))
        and b"\n\n" not in data
        and b"\n\r\n" not in data
    )


def _read_plain(records: memoryview, header: list[str]) -> pd.DataFrame | None:
    """The records (the lines after the header) of a plain file as text, or None when a line
    has another number of fields than the header."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    irregular: list[object] = []

    def keep_aside(row: object) -> str:
        irregular.append(row)
        return "skip"

    table = pacsv.read_csv(
        pa.py_buffer(records),
        read_options=pacsv.ReadOptions(column_names=header),
        parse_options=pacsv.ParseOptions(quote_char=False, invalid_row_handler=keep_aside),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=True, null_values=[""]
        ),
    )
    if irregular:
        return None
    return table.to_pandas(deduplicate_objects=True)


def _read_lines(path: Path, content: str, fingerprint: LandingFingerprint, sha256: str) -> LandedFile:
    """Any landing file, line by line with Python's CSV reader (see `parse_landing_file`)."""
    lines = io.StringIO(content, newline="").readlines()
    csv.field_size_limit(max(csv.field_size_limit(), len(content) + 1))  # one field may hold it all
    reader = csv.reader(lines)
    header = _header(path, next(reader))
    rows: list[list[str | None]] = []
    starts: list[int] = []
    ragged: list[str | None] = []
    faults: list[str | None] = []
    missing = [None] * len(header)
    start = reader.line_num + 1
    for fields in reader:
        end = reader.line_num
        open_quote_at_end = end == len(lines) and "".join(lines[start - 1 : end]).count('"') % 2 == 1
        if len(fields) == len(header) and not open_quote_at_end:
            rows.append([cell if cell != "" else None for cell in fields])
            starts.append(start)
            ragged.append(None)
            faults.append(None)
        elif fields:  # a blank line holds no record
            fault = f"{len(fields)} fields where the header has {len(header)}"
            if open_quote_at_end and len(fields) == len(header):
                fault = f"a quote opened on line {start} is never closed (it runs to the end of the file)"
            elif end > start:
                fault = f"one record of {fault} spans lines {start}-{end} (a quote left open?)"
            for number in range(start, end + 1):
                if lines[number - 1].strip("\r\n") or number == start:
                    rows.append(missing)
                    starts.append(number)
                    ragged.append(lines[number - 1].rstrip("\r\n"))
                    faults.append(fault)
        start = end + 1
    return LandedFile(
        path=path,
        text=pd.DataFrame(rows, columns=header, dtype=object),
        lines=np.array(starts, dtype=np.int64),
        ragged=pd.Series(ragged, dtype="string"),
        faults=pd.Series(faults, dtype="string"),
        fingerprint=fingerprint,
        sha256=sha256,
    )


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = exc.start - data.rfind(b"\n", 0, exc.start)
        raise CsvFileError(
            f"{path}: line {line}, byte {byte} of the line: not UTF-8 ({exc.reason}); "
            "write landing files as UTF-8"
        ) from None


def _header(path: Path, header: list[str]) -> list[str]:
    """The header record, checked: a name for every column, none twice."""
    if not header:
        raise CsvFileError(f"{path}: line 1 is empty; line 1 must be the header naming the columns")
    check_header(path, header)
    return header


def read_landing_file(path: Path) -> pd.DataFrame:
    """A well-formed landing file as a text table (empty cells missing); a ragged record
    raises `CsvFileError` naming its line."""
    landed = parse_landing_file(path)
    if not landed.well_formed.all():
        first = int(np.flatnonzero(~landed.well_formed)[0])
        raise CsvFileError(f"{path}: line {landed.lines[first]}: {landed.faults[first]}")
    return landed.text


def load_source(spec: DatasetSpec) -> pd.DataFrame:
    """The spec's source, as text, shuffled with the simulation seed (one fixed order)."""
    frame = read_csv_text(spec.source.path)
    order = np.random.default_rng(spec.simulation.seed).permutation(len(frame))
    return frame.iloc[order].reset_index(drop=True)


def apply_shifts(
    batch: pd.DataFrame, shifts: list[Shift], spec: DatasetSpec, seed: int | Sequence[int]
) -> pd.DataFrame:
    """Return a copy of a text batch with the shifts applied."""
    out = batch.copy()
    rng = np.random.default_rng(seed)
    for shift in shifts:
        column = spec.columns.get(shift.column)
        if column is None:
            raise ValueError(f"shift: {shift.column!r} is not a column of dataset {spec.name!r}")
        if shift.delta is not None:
            if not column.is_numeric:
                raise ValueError(f"shift: {shift.column!r} is categorical; use {shift.column}=VALUE")
            values = pd.to_numeric(out[shift.column], errors="coerce") + shift.delta
            values = values.clip(lower=column.min, upper=column.max)
            if column.type == "integer":
                values = values.round().astype("Int64")
            out[shift.column] = values.astype("string")
        else:
            if column.is_numeric:
                raise ValueError(f"shift: {shift.column!r} is numeric; use {shift.column}=+N")
            if column.domain is not None and shift.value not in column.domain:
                raise ValueError(f"shift: {shift.value!r} is not in the domain of {shift.column!r}")
            chosen = rng.random(len(out)) < shift.fraction
            out.loc[chosen, shift.column] = shift.value
    return out


def write_landing_file(batch: pd.DataFrame, landing_dir: Path, day: dt.date | str) -> Path:
    """Write one day's batch atomically; an existing file for that day is replaced.

    Records end in CRLF (RFC 4180), so a cell holding a line break of any kind is quoted
    and reads back as one cell.
    """
    target = landing_path(landing_dir, day)
    with atomic_target(target) as tmp:
        batch.to_csv(tmp, index=False, lineterminator="\r\n")
    return target


RESAMPLE_CHUNK_ROWS = 100_000  # rows drawn, shifted and written at a time; part of each day's seed
_INTEGER_ID_STRIDE = 10**10  # integer ids of resampled day i: (i + 1) * stride + position
_MAD_TO_STD = 1.4826  # scales the median absolute deviation to a normal distribution's std


@dataclass(frozen=True)
class _NumericSource:
    values: np.ndarray  # float64; NaN where the source cell is missing or not a number
    noise: float  # std of the jitter
    low: float
    high: float
    integer: bool


class Resampler:
    """Draws days of any size from the source's distribution, with replacement.

    Rows are picked uniformly; numeric values get Gaussian noise of `jitter` times the
    column's robust spread (zero for a column that is mostly one value, so such point masses
    stay put), are rounded for integer columns and clipped to the spec's range. Other cells
    are copied as they are; the spec's id column, when the source has one, gets
    `<day>-<position>` (an integer one `(day index + 1) * 10**10 + position`). A day is drawn
    in chunks of `RESAMPLE_CHUNK_ROWS` rows, each seeded by the simulation seed, the day index
    and the chunk, so memory stays bounded and the same day always lands the same rows.
    """

    def __init__(self, source: pd.DataFrame, spec: DatasetSpec, jitter: float) -> None:
        if source.empty:
            raise ValueError(f"the source of {spec.name!r} ({spec.source.path}) holds no rows to draw from")
        self.spec = spec
        self.text = {name: source[name].to_numpy(dtype=object) for name in source.columns}
        self.numeric: dict[str, _NumericSource] = {}
        for name in source.columns:
            column = spec.columns.get(name)
            if column is None or not column.is_numeric or name == spec.source.id_column:
                continue
            values = pd.to_numeric(source[name], errors="coerce").to_numpy(dtype=np.float64)
            values[~np.isfinite(values)] = np.nan  # `inf` lands as written, like any non-number
            present = values[~np.isnan(values)]
            spread = (
                _MAD_TO_STD * float(np.median(np.abs(present - np.median(present)))) if present.size else 0.0
            )
            low = -np.inf if column.min is None else column.min
            high = np.inf if column.max is None else column.max
            integer = column.type == "integer"
            if integer:
                low, high = np.ceil(low), np.floor(high)
            self.numeric[name] = _NumericSource(values, jitter * spread, low, high, integer)

    def chunks(self, index: int, day: str, rows: int, seed: int) -> Iterator[tuple[int, pd.DataFrame]]:
        """Day `index`'s rows as text, `(chunk number, frame)` per chunk."""
        size = len(next(iter(self.text.values())))
        for part, start in enumerate(range(0, rows, RESAMPLE_CHUNK_ROWS)):
            stop = min(start + RESAMPLE_CHUNK_ROWS, rows)
            rng = np.random.default_rng([seed, index, part])
            picks = rng.integers(0, size, size=stop - start)
            frame = {}
            for name, text in self.text.items():
                numeric = self.numeric.get(name)
                if name == self.spec.source.id_column:
                    frame[name] = self._ids(index, day, start, stop)
                elif numeric is None:
                    frame[name] = text[picks]
                else:
                    frame[name] = _jittered(numeric, picks, text, rng)
            yield part, pd.DataFrame(frame)

    def _ids(self, index: int, day: str, start: int, stop: int) -> np.ndarray:
        positions = np.arange(start, stop, dtype=np.int64)
        if self.spec.columns[self.spec.source.id_column].type == "integer":
            return ((index + 1) * _INTEGER_ID_STRIDE + positions).astype(str).astype(object)
        return np.char.add(f"{day}-", positions.astype(str)).astype(object)


def _jittered(
    numeric: _NumericSource, picks: np.ndarray, text: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    values = numeric.values[picks]
    if numeric.noise > 0:
        values = values + rng.normal(0.0, numeric.noise, size=len(picks))
    values = np.clip(np.round(values) if numeric.integer else np.round(values, 6), numeric.low, numeric.high)
    missing = np.isnan(values)
    formatted = (np.where(missing, 0, values).astype(np.int64) if numeric.integer else values).astype(str)
    # a cell that is missing or not a number in the source lands as it was
    return np.where(missing, text[picks], formatted.astype(object))


def write_resampled_day(
    resampler: Resampler,
    landing_dir: Path,
    index: int,
    day: dt.date,
    rows: int,
    seed: int,
    shifts: list[Shift] | None = None,
) -> Path:
    """Write day `index` drawn by `resampler`, chunk by chunk, atomically."""
    target = landing_path(landing_dir, day)
    with atomic_target(target) as tmp, open(tmp, "w", encoding="utf-8", newline="") as out:
        for part, chunk in resampler.chunks(index, str(day), rows, seed):
            if shifts:
                chunk = apply_shifts(chunk, shifts, resampler.spec, seed=[seed, index, part])
            chunk.to_csv(out, index=False, header=part == 0, lineterminator="\r\n")
    return target


def simulate_batches(
    spec: DatasetSpec,
    landing_dir: Path,
    days: int,
    shifts: list[Shift] | None = None,
    reference: bool = False,
    rows_per_day: int | None = None,
    sampling: str | None = None,
) -> list[Path]:
    """Land the next `days` daily batches (or the whole reference period) from the source.

    `rows_per_day` and `sampling` override the spec's `simulation` section. A sequential day
    *i* after the start date takes rows `[i * rows_per_day, (i + 1) * rows_per_day)` of the
    shuffled source; a resampled day is drawn by `Resampler`. Either way the same day always
    lands the same records. Batches continue after the latest landed day.
    """
    sim = spec.simulation
    rows = sim.rows_per_day if rows_per_day is None else rows_per_day
    mode = sim.sampling if sampling is None else sampling
    if rows < 1:
        raise ValueError(f"rows_per_day must be at least 1, got {rows}")
    if mode not in ("auto", "sequential", "resample"):
        raise ValueError(f"sampling {mode!r}: choose auto, sequential or resample")
    source = load_source(spec)
    available_days = len(source) // rows
    existing = landed_days(landing_dir)
    if reference:
        first, count = 0, sim.reference_days
    else:
        first = (dt.date.fromisoformat(existing[-1]) - sim.start_date).days + 1 if existing else 0
        count = days
    if count < 1:
        raise ValueError("days must be at least 1")
    if mode == "sequential" and first + count > available_days:
        raise ValueError(
            f"the source of {spec.name!r} has {len(source)} rows, enough for {available_days} days of "
            f"{rows} rows; days {first}..{first + count - 1} were asked for. To draw days of any size "
            "with replacement, set simulation.sampling to auto or resample (or pass --sampling)"
        )
    resampler = None
    written = []
    for index in range(first, first + count):
        day = sim.start_date + dt.timedelta(days=index)
        if mode == "resample" or index >= available_days:
            resampler = resampler or Resampler(source, spec, sim.jitter)
            written.append(write_resampled_day(resampler, landing_dir, index, day, rows, sim.seed, shifts))
            continue
        batch = source.iloc[index * rows : (index + 1) * rows]
        if shifts:
            batch = apply_shifts(batch, shifts, spec, seed=sim.seed + index)
        written.append(write_landing_file(batch, landing_dir, day))
    return written
