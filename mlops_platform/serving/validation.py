"""Request validation against the dataset spec, for both KServe protocols.

Every problem becomes an `InvalidRequest` naming the field (`instances[3].<column>`,
`inputs[<column>].data[7]`) and what is wrong with it; the server answers it with a 4xx and
never lets bad input reach the model. Validated rows come out as one `FeatureBatch`,
whatever the protocol: numeric values as a float32 matrix (NaN = missing) and categorical
values as strings (None = missing), both in the spec's feature order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops_platform.datasets.spec import ColumnSpec, DatasetSpec, is_integer_code
from mlops_platform.lib.preprocessing import MISSING_CATEGORY

ENTITY_FIELD = "record_id"  # the Feast entity key: an instance may carry only this
V2_NUMERIC_TYPES = frozenset(
    {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64"}
)
V2_INTEGER_TYPES = frozenset(t for t in V2_NUMERIC_TYPES if "INT" in t)
FLOAT32_MAX = float(np.finfo(np.float32).max)  # numeric features reach the model as float32


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(value: Any) -> str:
    """A value for an error message: short, and safe for deep or huge containers."""
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return f"an object with {len(value)} keys"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        body = value.strip().lstrip("+-").replace(".", "", 1)
        hint = " (a number written as a string: send it as a JSON number)" if body.isdigit() else ""
        return f"the string {_short(value)}{hint}"
    return f"{type(value).__name__} {_short(value)}"


class InvalidRequest(Exception):
    """Bad input: `field` says where, the message says what; `status` is the HTTP code."""

    def __init__(self, field: str, problem: str, status: int = 422) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem
        self.status = status


@dataclass
class FeatureBatch:
    """Validated rows, ready for a model's encoder."""

    numeric: np.ndarray  # float32 [rows, numeric features]; NaN where missing
    categorical: list[list[str | None]]  # one list per categorical feature, `rows` long
    rows: int
    entity_ids: list[str] | None = None  # set when the rows were read from the feature store

    @staticmethod
    def concat(batches: list[FeatureBatch]) -> FeatureBatch:
        return FeatureBatch(
            numeric=np.concatenate([b.numeric for b in batches]),
            categorical=[
                [v for b in batches for v in b.categorical[j]] for j in range(len(batches[0].categorical))
            ],
            rows=sum(b.rows for b in batches),
        )

    def inputs(self, numeric_names: list[str], categorical_names: list[str], row: int) -> dict[str, Any]:
        """One row as a plain dict (for the inference log)."""
        values: dict[str, Any] = {}
        for j, name in enumerate(numeric_names):
            value = float(self.numeric[row, j])
            values[name] = None if math.isnan(value) else value
        for j, name in enumerate(categorical_names):
            values[name] = self.categorical[j][row]
        return values


class _Column:
    """One feature's checks, precomputed from its spec."""

    def __init__(self, name: str, spec: ColumnSpec) -> None:
        self.name = name
        self.nullable = spec.nullable
        self.integer = spec.type == "integer"
        self.low = spec.min
        self.high = spec.max
        self.domain = frozenset(spec.domain) if spec.domain is not None else None
        # A domain of integer codes (`0`, `1`, `2`): a JSON number is as good as its text.
        self.integer_codes = self.domain is not None and all(map(is_integer_code, self.domain))

    def numeric(self, value: Any, field: str) -> float:
        if value is None:
            if self.nullable:
                return math.nan
            raise InvalidRequest(field, "is required and may not be null")
        if type(value) is bool or not isinstance(value, int | float):
            raise InvalidRequest(field, f"expected a number, got {describe(value)}")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidRequest(field, f"{value!r} is not a finite number")
            if self.integer and not value.is_integer():
                raise InvalidRequest(field, f"expected an integer, got {value!r}")
        if self.low is not None and value < self.low:
            raise InvalidRequest(field, f"{_short(value)} is below the minimum {self.low:g}")
        if self.high is not None and value > self.high:
            raise InvalidRequest(field, f"{_short(value)} is above the maximum {self.high:g}")
        if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
            raise InvalidRequest(field, f"{_short(value)} is out of range for this model (float32)")
        return float(value)

    def categorical(self, value: Any, field: str) -> str | None:
        if value is None:
            if self.nullable:
                return None
            raise InvalidRequest(field, "is required and may not be null")
        sent = value
        if self.integer_codes and type(value) is not bool and isinstance(value, int | float):
            if isinstance(value, float) and not value.is_integer():
                raise InvalidRequest(field, f"expected an integer code, got {_short(value)}")
            value = str(int(value))
        elif not isinstance(value, str):
            wanted = "a string or an integer code" if self.integer_codes else "a string"
            raise InvalidRequest(field, f"expected {wanted}, got {describe(value)}")
        if self.domain is not None and value not in self.domain:
            shown = ", ".join(sorted(self.domain)[:8]) + (", ..." if len(self.domain) > 8 else "")
            raise InvalidRequest(field, f"{_short(sent)} is not an allowed value ({shown})")
        return value

    def categorical_values(self, values: list) -> list[str | None]:
        """A whole V2 column: set arithmetic when every value is fine, else the first problem."""
        try:
            if self.domain is not None and self.domain.issuperset(values):
                return values
        except TypeError:  # an unhashable value (a list, an object): the loop below names it
            pass
        if self.domain is None and all(type(v) is str for v in values):
            return values
        return [self.categorical(v, f"inputs[{self.name}].data[{i}]") for i, v in enumerate(values)]


class RequestValidator:
    """Checks V1 instances and V2 inputs against the spec's feature columns."""

    def __init__(self, spec: DatasetSpec, max_rows: int) -> None:
        self.numeric_names = list(spec.features.numeric)
        self.categorical_names = list(spec.features.categorical)
        self.names = [*self.numeric_names, *self.categorical_names]
        self.max_rows = max_rows
        self._numeric = [_Column(n, spec.columns[n]) for n in self.numeric_names]
        self._categorical = [_Column(n, spec.columns[n]) for n in self.categorical_names]
        self._categorical_by_name = {column.name: column for column in self._categorical}
        self._known = frozenset(self.names)

    def _check_rows(self, rows: int, field: str) -> None:
        if rows == 0:
            raise InvalidRequest(field, "is empty: send at least one row")
        if rows > self.max_rows:
            raise InvalidRequest(field, f"has {rows} rows; at most {self.max_rows} per request", status=413)

    # -- V1: {"instances": [{feature: value, ...} | [values in feature order] | {"record_id": id}]}

    def v1_instances(self, body: Any) -> list[Any]:
        if not isinstance(body, dict):
            raise InvalidRequest("body", 'expected a JSON object with "instances"', status=400)
        instances = body.get("instances")
        if not isinstance(instances, list):
            raise InvalidRequest("instances", "is required and must be a list", status=400)
        self._check_rows(len(instances), "instances")
        return instances

    @staticmethod
    def entity_ids(instances: list[Any]) -> list[str] | None:
        """The entity ids when every instance is `{"record_id": ...}`, else None."""
        first = instances[0]
        if not (isinstance(first, dict) and len(first) == 1 and ENTITY_FIELD in first):
            return None
        ids = []
        for i, instance in enumerate(instances):
            if not (isinstance(instance, dict) and len(instance) == 1 and ENTITY_FIELD in instance):
                raise InvalidRequest(f"instances[{i}]", f"mixes {ENTITY_FIELD!r} lookups with feature values")
            value = instance[ENTITY_FIELD]
            if not isinstance(value, str) or not value:
                raise InvalidRequest(f"instances[{i}].{ENTITY_FIELD}", "must be a non-empty string")
            ids.append(value)
        return ids

    def stored_batch(self, rows: list[list[Any]], entity_ids: list[str]) -> FeatureBatch:
        """Rows read from the online store (values in `names` order), checked like a request's.

        The `features` model stores a missing category as `MISSING_CATEGORY`; here it is the
        missing value it stands for. A stored value the spec refuses is a 422 naming the record.
        """
        numeric = np.empty((len(rows), len(self._numeric)), dtype=np.float32)
        categorical: list[list[str | None]] = [[] for _ in self._categorical]
        offset = len(self._numeric)
        for i, row in enumerate(rows):
            try:
                for j, column in enumerate(self._numeric):
                    numeric[i, j] = column.numeric(row[j], column.name)
                for j, column in enumerate(self._categorical):
                    value = row[offset + j]
                    categorical[j].append(
                        column.categorical(None if value == MISSING_CATEGORY else value, column.name)
                    )
            except InvalidRequest as exc:
                raise InvalidRequest(
                    f"instances[{i}].{ENTITY_FIELD}",
                    f"the online store's {exc.field} of {entity_ids[i]!r} is refused by the dataset spec "
                    f"({exc.problem}): send feature values instead",
                ) from None
        return FeatureBatch(numeric=numeric, categorical=categorical, rows=len(rows))

    def v1_batch(self, instances: list[Any]) -> FeatureBatch:
        numeric = np.empty((len(instances), len(self._numeric)), dtype=np.float32)
        categorical: list[list[str | None]] = [[] for _ in self._categorical]
        for i, instance in enumerate(instances):
            if isinstance(instance, dict):
                self._row_from_mapping(instance, i, numeric, categorical)
            elif isinstance(instance, list):
                if len(instance) != len(self.names):
                    raise InvalidRequest(
                        f"instances[{i}]",
                        f"has {len(instance)} values; expected {len(self.names)} in this order: "
                        + ", ".join(self.names),
                    )
                self._row_from_mapping(dict(zip(self.names, instance, strict=True)), i, numeric, categorical)
            else:
                raise InvalidRequest(f"instances[{i}]", "must be an object of feature values or a list")
        return FeatureBatch(numeric=numeric, categorical=categorical, rows=len(instances))

    def _row_from_mapping(
        self, instance: dict, i: int, numeric: np.ndarray, categorical: list[list[str | None]]
    ) -> None:
        if len(instance) > len(self._known) or not self._known.issuperset(instance):
            unknown = sorted(set(instance) - self._known)
            if unknown:
                raise InvalidRequest(f"instances[{i}].{unknown[0]}", "is not a feature of this model")
        for j, column in enumerate(self._numeric):
            value = instance.get(column.name)
            if value is None and column.name not in instance and not column.nullable:
                raise InvalidRequest(f"instances[{i}].{column.name}", "is missing")
            numeric[i, j] = column.numeric(value, f"instances[{i}].{column.name}")
        for j, column in enumerate(self._categorical):
            value = instance.get(column.name)
            if value is None and column.name not in instance and not column.nullable:
                raise InvalidRequest(f"instances[{i}].{column.name}", "is missing")
            categorical[j].append(column.categorical(value, f"instances[{i}].{column.name}"))

    # -- V2 (open inference protocol): {"inputs": [{"name", "shape", "datatype", "data"}, ...]}

    def v2_batch(self, body: Any) -> FeatureBatch:
        if not isinstance(body, dict):
            raise InvalidRequest("body", 'expected a JSON object with "inputs"', status=400)
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise InvalidRequest("inputs", "is required and must be a non-empty list of tensors", status=400)
        tensors: dict[str, list] = {}
        rows: int | None = None
        for k, tensor in enumerate(inputs):
            if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
                raise InvalidRequest(f"inputs[{k}]", 'must be an object with a "name"')
            name = tensor["name"]
            where = f"inputs[{name}]"
            if name not in self._known:
                raise InvalidRequest(where, "is not a feature of this model")
            if name in tensors:
                raise InvalidRequest(where, "is given twice")
            data = tensor.get("data")
            if not isinstance(data, list):
                raise InvalidRequest(f"{where}.data", "is required and must be a list")
            shape = tensor.get("shape")
            if not (isinstance(shape, list) and shape and all(isinstance(s, int) for s in shape)):
                raise InvalidRequest(f"{where}.shape", "is required: a list of integers such as [rows]")
            if len(shape) > 2 or math.prod(shape) != len(data) or (len(shape) == 2 and shape[1] != 1):
                raise InvalidRequest(
                    f"{where}.shape", f"{_short(shape)} does not describe {len(data)} values in one column"
                )
            datatype = tensor.get("datatype")
            numeric = name in self.numeric_names
            if type(datatype) is not str:
                raise InvalidRequest(
                    f"{where}.datatype",
                    f"expected a string such as INT64, FP32 or BYTES, got {describe(datatype)}",
                )
            if numeric and datatype not in V2_NUMERIC_TYPES:
                raise InvalidRequest(
                    f"{where}.datatype", f"{_short(datatype)}: a numeric feature needs INT* or FP*"
                )
            if not numeric and datatype != "BYTES" and not self._integer_coded(name, datatype):
                raise InvalidRequest(
                    f"{where}.datatype",
                    f"{_short(datatype)}: a categorical feature needs BYTES"
                    + (" or INT*" if self._categorical_by_name[name].integer_codes else ""),
                )
            if not numeric and datatype in V2_INTEGER_TYPES:
                bad = next((i for i, v in enumerate(data) if type(v) is not int and v is not None), None)
                if bad is not None:
                    raise InvalidRequest(
                        f"{where}.data[{bad}]",
                        f"expected an integer code ({datatype}), got {describe(data[bad])}",
                    )
            if rows is not None and len(data) != rows:
                raise InvalidRequest(f"{where}.data", f"has {len(data)} rows; other inputs have {rows}")
            rows = len(data)
            tensors[name] = data
        missing = [n for n in self.names if n not in tensors]
        if missing:
            raise InvalidRequest(f"inputs[{missing[0]}]", "is missing")
        assert rows is not None
        self._check_rows(rows, "inputs")
        numeric_matrix = np.empty((rows, len(self._numeric)), dtype=np.float32)
        for j, column in enumerate(self._numeric):
            numeric_matrix[:, j] = self._v2_numeric(column, tensors[column.name])
        categorical = [column.categorical_values(tensors[column.name]) for column in self._categorical]
        return FeatureBatch(numeric=numeric_matrix, categorical=categorical, rows=rows)

    def _integer_coded(self, name: str, datatype: str) -> bool:
        """An INT* tensor for a categorical feature whose domain is integer codes."""
        return datatype in V2_INTEGER_TYPES and self._categorical_by_name[name].integer_codes

    @staticmethod
    def _v2_numeric(column: _Column, data: list) -> np.ndarray:
        try:
            values = np.asarray(data, dtype=np.float64)
        except (TypeError, ValueError):
            values = None
        if values is None or values.ndim != 1 or any(type(v) is bool or isinstance(v, str) for v in data):
            # Fall back to per-value checks for the precise message (strings, nested lists, ...).
            return np.asarray(
                [column.numeric(v, f"inputs[{column.name}].data[{i}]") for i, v in enumerate(data)]
            )
        finite = np.isfinite(values)
        bad = np.isinf(values) if column.nullable else ~finite  # JSON null arrives as NaN
        if column.integer:
            bad |= finite & (values != np.round(values))
        if column.low is not None:
            bad |= values < column.low
        if column.high is not None:
            bad |= values > column.high
        if column.low is None or column.high is None:
            bad |= np.abs(values) > FLOAT32_MAX
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            column.numeric(data[i], f"inputs[{column.name}].data[{i}]")  # raises with the reason
        return values
