"""The model server's inference log: the record schema, and reading the log (JSON lines per day and
worker) into a typed frame.

`InferenceRecord` is the one definition of a line: the server writes it, and the readers select
its fields, in order, with the DuckDB type each field's annotation names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypedDict, get_type_hints

import pandas as pd


class InferenceRecord(TypedDict):
    """One scored row: who asked, which version answered, the inputs and the output."""

    request_id: Annotated[str, "VARCHAR"]
    timestamp: Annotated[str, "TIMESTAMPTZ"]  # UTC, ISO 8601
    model_name: Annotated[str, "VARCHAR"]
    model_version: Annotated[str, "VARCHAR"]
    role: Annotated[str, "VARCHAR"]  # stable or canary
    protocol: Annotated[str, "VARCHAR"]  # v1 or v2
    row: Annotated[int, "INTEGER"]  # index within the request
    entity_id: Annotated[str | None, "VARCHAR"]
    inputs: Annotated[dict[str, Any], "STRUCT"]  # feature -> value, typed per feature
    probability: Annotated[float, "DOUBLE"]
    prediction: Annotated[int, "INTEGER"]


_FIELDS = [
    (name, hint.__metadata__[0])
    for name, hint in get_type_hints(InferenceRecord, include_extras=True).items()
]
RECORD_FIELDS = [name for name, _ in _FIELDS]  # a line's keys, in order
_INPUTS = RECORD_FIELDS.index("inputs")
LOG_COLUMNS = dict(_FIELDS[:_INPUTS])  # the fields before the inputs
OUTPUT_COLUMNS = dict(_FIELDS[_INPUTS + 1 :])  # the fields after them


def frame_columns(numeric: list[str], categorical: list[str]) -> list[str]:
    """The columns of a read log: the record's fields with `inputs` flattened, one per feature."""
    return [*LOG_COLUMNS, *numeric, *categorical, *OUTPUT_COLUMNS]


def log_files(log_dir: Path, day: str) -> list[Path]:
    return sorted((Path(log_dir) / f"date={day}").glob("*.jsonl"))


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def read_inference_log(files: list[Path], numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """Every logged row of `files`, inputs flattened into one column per feature, ordered by time.

    A line still being written by a running server (no newline yet) is skipped; it is read
    the next time, once complete.
    """
    import duckdb

    inputs = {**{n: "DOUBLE" for n in numeric}, **{n: "VARCHAR" for n in categorical}}
    if not files:
        return pd.DataFrame({name: pd.Series(dtype="object") for name in frame_columns(numeric, categorical)})
    struct = ", ".join(f'"{name}" {kind}' for name, kind in inputs.items())
    columns = {name: f"STRUCT({struct})" if name == "inputs" else kind for name, kind in _FIELDS}
    columns_sql = "{" + ", ".join(f"{_sql_string(k)}: {_sql_string(v)}" for k, v in columns.items()) + "}"
    paths_sql = "[" + ", ".join(_sql_string(str(p)) for p in files) + "]"
    selected = ", ".join(
        [*(f'"{c}"' for c in LOG_COLUMNS), *(f'inputs."{n}" AS "{n}"' for n in inputs), *OUTPUT_COLUMNS]
    )
    with duckdb.connect() as connection:
        return connection.execute(
            f"SELECT {selected} FROM read_json({paths_sql}, format='newline_delimited', "
            f"columns={columns_sql}, ignore_errors=true) ORDER BY timestamp, request_id, row"
        ).df()


def read_new_records(
    log_dir: Path, offsets: dict[str, int], skip_days_before: str | None = None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows appended to the log since `offsets` (bytes read per file, relative path keys), whole
    lines only, with the inputs flattened; and the new offsets. Files of days before
    `skip_days_before` that were never read are marked read without parsing them."""
    import orjson

    rows: list[dict] = []
    new_offsets = dict(offsets)
    for path in sorted(Path(log_dir).glob("date=*/*.jsonl")):
        key = str(path.relative_to(log_dir))
        size = path.stat().st_size
        start = offsets.get(key)
        if (
            start is None
            and skip_days_before is not None
            and path.parent.name[len("date=") :] < skip_days_before
        ):
            new_offsets[key] = size
            continue
        start = start or 0
        if size <= start:
            continue
        with open(path, "rb") as handle:
            handle.seek(start)
            data = handle.read(size - start)
        complete = data.rfind(b"\n") + 1  # a line still being written is read next time
        for line in data[:complete].splitlines():
            record = orjson.loads(line)
            rows.append(
                {
                    **{k: record.get(k) for k in LOG_COLUMNS},
                    **record["inputs"],
                    **{k: record[k] for k in OUTPUT_COLUMNS},
                }
            )
        new_offsets[key] = start + complete
    return pd.DataFrame(rows), new_offsets
