"""Fuzzing the model server over HTTP: requests generated from its OpenAPI document
(schemathesis, positive and negative) and a seeded generator of hostile bodies.

Shared by `test_fuzz_serving.py` (a couple of thousand requests) and `benchmarks/fuzz_serving.py`
(tens of thousands). Every answer is judged by `judge`: no 5xx, and every 4xx is JSON naming
the field (`field`) or the reason (`error`).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from mlops_platform_tests.serving import ROW

MODEL = "adult_income_classifier"
NUMERIC = ("age", "education_num", "capital_gain", "capital_loss", "hours_per_week")


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    path: str
    content: bytes | None
    headers: dict[str, str]
    family: str


@dataclass
class FuzzReport:
    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    families: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    unsendable: int = 0  # generated requests the HTTP client refuses to send (e.g. bad header bytes)
    seconds: float = 0.0

    def record(self, family: str, status: int, problem: str | None) -> None:
        self.sent += 1
        self.statuses[status] += 1
        self.families[family] += 1
        if problem is not None and len(self.problems) < 50:
            self.problems.append(f"{family}: {problem}")

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.sent,
            "server_errors": self.server_errors,
            "problems": len(self.problems),
            "unsendable": self.unsendable,
            "seconds": round(self.seconds, 1),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "families": dict(sorted(self.families.items())),
            "first_problems": self.problems[:10],
        }


def judge(status: int, body: bytes) -> str | None:
    """What is wrong with an answer, or None: no 5xx, a 4xx names the field or the reason."""
    if status >= 500:
        return f"{status}: {body[:300]!r}"
    if status >= 400:
        try:
            payload = json.loads(body)
        except ValueError:
            return f"{status} without a JSON body: {body[:200]!r}"
        if not isinstance(payload, dict) or not (
            isinstance(payload.get("field"), str) or isinstance(payload.get("error"), str)
        ):
            return f"{status} names neither field nor error: {body[:200]!r}"
    return None


# -- hostile bodies


def _nested(depth: int, leaf: Any = 1) -> str:
    return "[" * depth + json.dumps(leaf) + "]" * depth


def _hostile_value(rng: random.Random) -> Any:
    """A JSON value that is wrong somewhere a feature value goes (as a Python value)."""
    choices: list[Callable[[], Any]] = [
        lambda: [rng.randint(0, 9)],
        lambda: {},
        lambda: {"value": 39},
        lambda: rng.choice([True, False]),
        lambda: None,
        lambda: "",
        lambda: rng.choice(["39", "٣٩", "３９", "३९", " 39", "39.0", "+39", "1e3", "0x27", "½"]),
        lambda: rng.choice([1e308, -1e308, 1.7976931348623157e308, 3.5e38, -3.5e38, 5e-324, -0.0]),
        lambda: rng.choice([2**63 - 1, -(2**63), 2**64 - 1, 10**30, -(10**30)]),
        lambda: rng.choice(["Male\u0000", "Ma\u200ble", "Ｍａｌｅ", "male", "MALE", "\u202eelaM", "💥" * 50]),
        lambda: "x" * rng.choice([1, 300, 5000]),
        lambda: [[[[rng.random()]]]],
        lambda: rng.uniform(-1e6, 1e6),
    ]
    return rng.choice(choices)()


def _row_with(rng: random.Random) -> dict[str, Any]:
    row = dict(ROW)
    for name in rng.sample(list(row), rng.randint(1, 3)):
        row[name] = _hostile_value(rng)
    return row


def _v2_inputs(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": k, "shape": [1], "datatype": "INT64" if k in NUMERIC else "BYTES", "data": [v]}
        for k, v in row.items()
    ]


def _v2_body(rng: random.Random) -> Any:
    inputs = _v2_inputs(ROW)
    target = rng.randrange(len(inputs))
    tensor = dict(inputs[target])
    key = rng.choice(["name", "shape", "datatype", "data", "extra", "drop", "dup"])
    wrong = [
        ["INT64"],
        {},
        5,
        None,
        "int64",
        "BYTES",
        "FP32",
        "",
        [1],
        [[1]],
        ["1"],
        [1.5],
        [-1],
        [1, 1, 1],
        [2**70],
        [0],
        "x",
        True,
    ]
    if key == "drop":
        del inputs[target]
    elif key == "dup":
        inputs.append(tensor)
    elif key == "extra":
        tensor["parameters"] = rng.choice([{}, [], "x", json.loads(_nested(50))])
        inputs[target] = tensor
    elif key == "data":
        tensor["data"] = rng.choice(
            [[_hostile_value(rng)], {}, "x", None, [], [1, 2], json.loads(_nested(rng.randint(2, 60)))]
        )
        inputs[target] = tensor
    else:
        tensor[key] = rng.choice(wrong)
        inputs[target] = tensor
    body: dict[str, Any] = {"inputs": inputs}
    if rng.random() < 0.3:
        body["id"] = rng.choice([5, None, [], {}, "ok-id", "\u00e9\u4e2d💥", "x" * 2000])
    if rng.random() < 0.1:
        body["inputs"] = rng.choice([{}, "x", None, [], 7])
    return body


def _v1_structure(rng: random.Random) -> Any:
    return rng.choice(
        [
            {"instances": rng.choice([{}, "x", None, 5, [], [None], [5], ["x"], [[]], [[1, 2]]])},
            {"instances": [ROW], "extra": json.loads(_nested(200))},
            {"instances": [{**ROW, "height": 1}]},
            {"instances": [{**ROW, "\u00e4ge": 1}]},
            {"instances": [list(ROW.values())[:-1]]},
            {"instances": [[*list(ROW.values()), 1]]},
            {"instances": [{"record_id": rng.choice([5, "", None, [], "nobody", "💥"])}]},
            {"instances": [{"record_id": "a"}, ROW]},
            {"instances": [ROW, {"record_id": "a"}]},
            {"inputs": []},
            [ROW],
            "instances",
            None,
            {},
        ]
    )


_NON_JSON = [
    b"",
    b"{",
    b"{not json",
    b'{"instances": [',
    b"\xff\xfe{\x00}\x00",
    b"\xef\xbb\xbf{}",
    b'{"instances": [{"age": NaN}]}',
    b'{"instances": [{"age": Infinity}]}',
    b'{"instances": [{"age": -Infinity}]}',
    b'{"instances": [{"age": 1e999}]}',
    b'{"instances": [{"age": "\\ud800"}]}',
    b'{"instances": [{"age": 39}]} trailing',
    b"\x00\x01\x02",
    b"null",
    b"[]",
    b'"instances"',
    b"12",
    b"true",
    '{"instances": [{"sex": "Ma\xe9le"}]}'.encode("latin-1"),
]


def _raw_body(rng: random.Random, protocol: str) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:
        return rng.choice(_NON_JSON)
    if kind == 1:  # nesting near and past orjson's limit, in a value or at the top
        depth = rng.choice([980, 981, 1000, 1022, 1023, 1024, 1025, 1100, 5000])
        if protocol == "v1":
            return ('{"instances": [{"age": ' + _nested(depth) + "}]}").encode()
        return _nested(depth).encode()
    if kind == 2:  # duplicate keys: the last one wins, and must still be validated
        row = json.dumps(ROW)[1:-1]
        return ('{"instances": [{' + row + ', "age": "forty", "age": [1]}], "instances": 5}').encode()
    if kind == 3:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
    return json.dumps({"instances": [_row_with(rng)]}, ensure_ascii=rng.random() < 0.5).encode()


_CONTENT_TYPES = [
    None,
    "application/json",
    "application/json; charset=utf-8",
    "application/vnd.kserve+json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    ";;;",
    "application/jsonx",
    "APPLICATION/JSON",
]


def hostile_requests(seed: int, count: int, token: str) -> Iterator[FuzzRequest]:
    """`count` requests from a seeded generator: inference bodies with wrong types, deep nesting,
    huge numbers, NaN/Infinity tokens, unicode, wrong V2 datatypes and shapes, duplicate keys,
    empty objects and non-JSON; admin bodies that are malformed the same ways."""
    rng = random.Random(seed)
    bearer = {"Authorization": f"Bearer {token}"}
    for _ in range(count):
        roll = rng.random()
        headers: dict[str, str] = {}
        content_type = "application/json" if rng.random() < 0.7 else rng.choice(_CONTENT_TYPES)
        if content_type is not None:
            headers["Content-Type"] = content_type
        if rng.random() < 0.1:
            headers["x-request-id"] = rng.choice(["r-1", "%C3%A9", "x" * 500, "a b", ""])
        if roll < 0.3:
            body = json.dumps({"instances": [_row_with(rng)]}).encode()
            yield FuzzRequest("POST", f"/v1/models/{MODEL}:predict", body, headers, "v1-values")
        elif roll < 0.45:
            yield FuzzRequest(
                "POST",
                f"/v1/models/{MODEL}:predict",
                json.dumps(_v1_structure(rng)).encode(),
                headers,
                "v1-shape",
            )
        elif roll < 0.7:
            path = rng.choice(
                [
                    f"/v2/models/{MODEL}/infer",
                    f"/v2/models/{MODEL}/versions/1/infer",
                    f"/v2/models/{MODEL}/versions/x%2Fy/infer",
                ]
            )
            yield FuzzRequest("POST", path, json.dumps(_v2_body(rng)).encode(), headers, "v2")
        elif roll < 0.82:
            protocol = rng.choice(["v1", "v2"])
            path = f"/v1/models/{MODEL}:predict" if protocol == "v1" else f"/v2/models/{MODEL}/infer"
            yield FuzzRequest("POST", path, _raw_body(rng, protocol), headers, "raw")
        elif roll < 0.85:
            name = rng.choice(["other", "%F0%9F%92%A5", "a" * 300, MODEL.upper()])
            yield FuzzRequest(
                "POST",
                f"/v1/models/{name}:predict",
                json.dumps({"instances": [ROW]}).encode(),
                headers,
                "model-name",
            )
        else:
            yield _admin_request(rng, headers, bearer)


def _admin_request(rng: random.Random, headers: dict[str, str], bearer: dict[str, str]) -> FuzzRequest:
    owner = {"run_id": "fuzz", "pid": 1, "host": "elsewhere"}
    wrong_owner = rng.choice(
        [
            {},
            {"run_id": 5, "pid": 1, "host": "h"},
            {"run_id": "r", "pid": "1", "host": "h"},
            {"run_id": "r", "pid": -1, "host": "h"},
            {"run_id": "r", "pid": 2**70, "host": "h"},
            {"run_id": "r", "pid": 1, "host": "h", "extra": 1},
            {"run_id": "", "pid": 1, "host": "h"},
            [],
            "me",
        ]
    )
    body: Any = rng.choice(
        [
            {"alias": {}},
            {"alias": []},
            {"alias": None, "version": None},
            {"alias": "nobody"},
            {"alias": "no body/../x"},
            {"alias": "💥"},
            {"version": True},
            {"version": 1.5},
            {"version": "abc"},
            {"version": "999"},
            {"version": 999},
            {"version": -1},
            {"version": [1]},
            {"version": "1", "alias": "champion"},
            {"version": "1", "canary_percent": "50"},
            {"version": "1", "canary_percent": 101},
            {"version": "1", "canary_percent": -1},
            {"version": "1", "canary_percent": 1e3},
            {"version": "1", "canary_percent": 50.0},
            {"version": "1", "canary_percent": True},
            {"version": "1", "owner": wrong_owner},
            {"version": "1", "colour": "red"},
            {"version": "1", "extra": json.loads(_nested(300))},
            {"owner": owner},
            {},
            [],
            None,
            "x",
            7,
        ]
    )
    path = "/admin/traffic" if rng.random() < 0.75 else "/admin/traffic/lease"
    method = "PUT" if path == "/admin/traffic" else "POST"
    if path.endswith("lease"):
        body = rng.choice([{"owner": owner}, {"owner": wrong_owner}, {}, {"owner": owner, "x": 1}, [], None])
    auth = (
        bearer
        if rng.random() < 0.85
        else rng.choice([{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}])
    )
    content = rng.choice(_NON_JSON) if rng.random() < 0.1 else json.dumps(body).encode()
    return FuzzRequest(method, path, content, {**headers, **auth}, "admin")


def send_all(client: httpx.Client, requests: Iterator[FuzzRequest], report: FuzzReport) -> None:
    """Send each request and judge its answer into `report` (a transport error is a problem too)."""
    for request in requests:
        try:
            answer = client.request(
                request.method, request.path, content=request.content, headers=request.headers
            )
        except httpx.HTTPError as exc:
            report.record(request.family, 599, f"no answer: {exc!r}")
            continue
        report.record(request.family, answer.status_code, judge(answer.status_code, answer.content))


# -- requests generated from the OpenAPI document (schemathesis)


def _bound(send: Callable[..., None], family: str, headers: dict[str, str] | None) -> Callable[[Any], None]:
    def call(case: Any) -> None:
        send(case, family, headers)

    return call


SCHEMA_OPERATIONS = (
    ("/v1/models/{model}:predict", "POST"),
    ("/v2/models/{model}/infer", "POST"),
    ("/v2/models/{model}/versions/{version}/infer", "POST"),
    ("/admin/traffic", "PUT"),
    ("/admin/traffic/lease", "POST"),
)


def schema_cases(
    document: dict[str, Any],
    base_url: str,
    token: str,
    examples: dict[str, int],
    report: FuzzReport,
    seed: int = 0,
) -> None:
    """Run schemathesis' positive and negative cases of each operation named in `examples` (a path
    of `SCHEMA_OPERATIONS`: examples per mode) against the server, judging answers into `report`."""
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    schema = schemathesis.openapi.from_dict(document)
    session = requests.Session()

    def send(case: Any, family: str, headers: dict[str, str] | None) -> None:
        try:
            answer = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        except (ValueError, requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL):
            report.unsendable += 1  # the client refuses it (bad header bytes): never sent
            return
        except requests.exceptions.RequestException as exc:
            report.record(family, 599, f"no answer: {exc!r}")
            return
        report.record(family, answer.status_code, judge(answer.status_code, answer.content))

    for path, method in SCHEMA_OPERATIONS:
        if path not in examples:
            continue
        operation = schema[path][method]
        headers = {"Authorization": f"Bearer {token}"} if path.startswith("/admin") else None
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            run = given(case=operation.as_strategy(generation_mode=mode))(
                _bound(send, f"schema-{mode.value}:{method} {path}", headers)
            )
            settings(
                max_examples=examples[path],
                database=None,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(hypothesis_seed(seed)(run))()
