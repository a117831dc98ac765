"""The model server and local gateway over real HTTP: `mlops serve` with 2 uvicorn workers,
real registered versions (trained here), real Prometheus metrics and inference log."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from mlops_platform.lib.inference_records import (
    RECORD_FIELDS,
    frame_columns,
    read_inference_log,
    read_new_records,
)
from mlops_platform.lib.model_artifact import load_artifact
from mlops_platform.resources.serving import deploy_owner
from mlops_platform.serving.revisions import fetch_artifact
from mlops_platform.settings import Settings
from mlops_platform_tests.registry import adult_rows
from mlops_platform_tests.serving import ROW, RunningServer, start_server

MODEL = "adult_income_classifier"


@pytest.fixture(scope="module")
def server(model_registry: Settings):
    running = start_server(model_registry, 2)
    yield running
    running.stop()


@pytest.fixture
def v1_only(server: RunningServer) -> RunningServer:
    server.set_traffic("1", 100)
    return server


def _instances(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    records = frame[columns].astype(object).where(frame[columns].notna(), None).to_dict("records")
    return [{k: (int(v) if isinstance(v, np.integer) else v) for k, v in r.items()} for r in records]


def test_both_protocols_score_like_the_registered_model(v1_only: RunningServer, model_registry: Settings):
    spec = model_registry.load_spec()
    names = spec.features.all
    frame = adult_rows(spec, 40, seed=7)
    instances = _instances(frame, names)
    v1 = httpx.post(
        v1_only.predict_url(MODEL), json={"instances": instances}, headers={"x-request-id": "req-1"}
    )
    assert v1.status_code == 200, v1.text
    assert v1.headers["x-model-version"] == "1" and v1.headers["x-request-id"] == "req-1"
    body = v1.json()
    assert body["model_version"] == "1" and body["request_id"] == "req-1"
    served = np.array([p["probability"] for p in body["predictions"]])

    # the same rows, scored offline by the artifact's own pandas encoder
    artifact = load_artifact(
        fetch_artifact(model_registry.tracking_uri, MODEL, "1", model_registry.serving_dir / "models")
    )
    assert np.allclose(served, artifact.predict_proba(frame), atol=1e-6)
    assert [p["prediction"] for p in body["predictions"]] == list((served >= artifact.threshold).astype(int))

    as_lists = httpx.post(
        v1_only.predict_url(MODEL), json={"instances": [[r[n] for n in names] for r in instances]}
    )
    assert np.allclose([p["probability"] for p in as_lists.json()["predictions"]], served)

    inputs = [
        {
            "name": n,
            "shape": [len(instances)],
            "datatype": "BYTES" if n in spec.features.categorical else "INT64",
            "data": [r[n] for r in instances],
        }
        for n in names
    ]
    v2 = httpx.post(f"{v1_only.url}/v2/models/{MODEL}/infer", json={"id": "v2-req", "inputs": inputs})
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o for o in v2.json()["outputs"]}
    assert v2.json()["id"] == "v2-req" and v2.json()["model_version"] == "1"
    assert outputs["probability"]["shape"] == [40] and np.allclose(outputs["probability"]["data"], served)

    pinned = httpx.post(f"{v1_only.url}/v2/models/{MODEL}/versions/1/infer", json={"inputs": inputs})
    assert pinned.status_code == 200 and pinned.headers["x-model-version"] == "1"
    absent = httpx.post(f"{v1_only.url}/v2/models/{MODEL}/versions/9/infer", json={"inputs": inputs})
    assert absent.status_code == 404 and absent.json()["field"] == "version"

    assert httpx.get(f"{v1_only.url}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{v1_only.url}/v1/models/{MODEL}").json() == {"name": MODEL, "ready": True}
    metadata = httpx.get(f"{v1_only.url}/v2/models/{MODEL}").json()
    assert [i["name"] for i in metadata["inputs"]] == names
    assert {o["name"] for o in metadata["outputs"]} == {"probability", "prediction"}


@pytest.mark.parametrize(
    ("payload", "status", "field", "words"),
    [
        (b"{not json", 400, "body", "not valid JSON"),
        ({"rows": []}, 400, "instances", "required"),
        ({"instances": []}, 422, "instances", "empty"),
        ({"instances": [{k: v for k, v in ROW.items() if k != "age"}]}, 422, "instances[0].age", "missing"),
        ({"instances": [{**ROW, "age": 150}]}, 422, "instances[0].age", "above the maximum 90"),
        ({"instances": [{**ROW, "age": "forty"}]}, 422, "instances[0].age", "expected a number"),
        ({"instances": [{**ROW, "age": 39.5}]}, 422, "instances[0].age", "expected an integer"),
        ({"instances": [{**ROW, "sex": "Robot"}]}, 422, "instances[0].sex", "not an allowed value"),
        ({"instances": [{**ROW, "sex": None}]}, 422, "instances[0].sex", "may not be null"),
        ({"instances": [ROW, {**ROW, "height": 180}]}, 422, "instances[1].height", "not a feature"),
        ({"instances": [[1, 2]]}, 422, "instances[0]", "has 2 values"),
        ({"instances": [ROW] * 10_001}, 413, "instances", "at most 10000"),
        ({"instances": [{"record_id": 5}]}, 422, "instances[0].record_id", "non-empty string"),
    ],
)
def test_bad_v1_input_gets_a_4xx_naming_the_field(v1_only, payload, status, field, words):
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    answer = httpx.post(v1_only.predict_url(MODEL), content=content, timeout=30)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field
    assert words in answer.json()["error"]
    assert answer.headers["x-request-id"]


def test_bad_v2_input_oversized_bodies_and_unknown_models_are_refused(v1_only: RunningServer):
    def v2(inputs: list) -> httpx.Response:
        return httpx.post(f"{v1_only.url}/v2/models/{MODEL}/infer", json={"inputs": inputs})

    good = [
        {"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "INT64", "data": [v]}
        for k, v in ROW.items()
    ]
    wrong_type = [dict(t, datatype="FP32") if t["name"] == "sex" else t for t in good]
    answer = v2(wrong_type)
    assert answer.status_code == 422 and answer.json()["field"] == "inputs[sex].datatype"
    answer = v2([dict(t, data=[200]) if t["name"] == "age" else t for t in good])
    assert answer.status_code == 422 and answer.json()["field"] == "inputs[age].data[0]"
    answer = v2([t for t in good if t["name"] != "race"])
    assert answer.status_code == 422 and answer.json()["field"] == "inputs[race]"
    answer = v2([dict(t, shape=[2]) if t["name"] == "age" else t for t in good])
    assert answer.status_code == 422 and answer.json()["field"] == "inputs[age].shape"

    huge = b'{"instances": [' + b" " * (9 * 1024 * 1024) + b"]}"
    answer = httpx.post(v1_only.predict_url(MODEL), content=huge, timeout=60)
    assert answer.status_code == 413 and answer.json()["field"] == "body"
    answer = httpx.post(v1_only.predict_url("someone_elses_model"), json={"instances": [ROW]})
    assert answer.status_code == 404 and "adult_income_classifier" in answer.json()["error"]

    metrics = httpx.get(f"{v1_only.url}/metrics").text
    assert 'mlops_invalid_requests_total{status="413"}' in metrics


def test_admin_api_refuses_a_missing_or_wrong_token(v1_only: RunningServer):
    before = httpx.get(f"{v1_only.url}/admin/traffic", headers=v1_only.admin()).json()["spec"]
    missing = httpx.put(f"{v1_only.url}/admin/traffic", json={"version": "2", "canary_percent": 50})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = httpx.put(
        f"{v1_only.url}/admin/traffic",
        json={"version": "2", "canary_percent": 50},
        headers={"Authorization": "Bearer not-the-token"},
    )
    assert wrong.status_code == 403
    assert httpx.get(f"{v1_only.url}/admin/traffic").status_code == 401
    assert httpx.get(f"{v1_only.url}/admin/traffic", headers=v1_only.admin()).json()["spec"] == before

    bad = httpx.put(
        f"{v1_only.url}/admin/traffic", json={"version": "2", "canary_percent": 150}, headers=v1_only.admin()
    )
    assert bad.status_code == 422 and bad.json()["field"] == "canary_percent"
    unknown = httpx.put(f"{v1_only.url}/admin/traffic", json={"alias": "nobody"}, headers=v1_only.admin())
    assert unknown.status_code == 404 and "nobody" in unknown.json()["error"]


def test_split_follows_canary_percent_within_binomial_tolerance(v1_only: RunningServer):
    report = v1_only.set_traffic("2", 30)
    assert report["spec"]["rolled_out_version"] == "1" and report["spec"]["latest_version"] == "2"
    assert {t["version"]: t["percent"] for t in report["status"]["traffic"]} == {"1": 70, "2": 30}
    assert len(report["status"]["workers"]) == 2  # both workers confirmed the split

    n = 1500
    with httpx.Client(base_url=v1_only.url) as client:
        versions = [
            client.post(f"/v1/models/{MODEL}:predict", json={"instances": [ROW]}).headers["x-model-version"]
            for _ in range(n)
        ]
    canary = versions.count("2")
    assert set(versions) == {"1", "2"}
    sigma = math.sqrt(n * 0.3 * 0.7)
    assert abs(canary - 0.3 * n) < 4 * sigma, f"{canary} of {n} went to the canary, expected {0.3 * n:.0f}"

    rolled_back = v1_only.set_traffic("2", 0)  # KServe's rollback: 0 % pins traffic on the rolled-out version
    assert {t["version"]: t["percent"] for t in rolled_back["status"]["traffic"]} == {"1": 100, "2": 0}
    with httpx.Client(base_url=v1_only.url) as client:
        assert {
            client.post(f"/v1/models/{MODEL}:predict", json={"instances": [ROW]}).headers["x-model-version"]
            for _ in range(200)
        } == {"1"}


def test_no_request_fails_while_weights_and_revisions_change(v1_only: RunningServer):
    failures: list[str] = []
    served: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=v1_only.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    answer = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [ROW]})
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if answer.status_code != 200:
                    failures.append(answer.text)
                served.append(answer.headers.get("x-model-version", "?"))

    threads = [threading.Thread(target=load) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        for version, percent in [
            ("2", 10),
            ("2", 50),
            ("2", 100),
            ("1", 20),
            ("1", 100),
            ("2", 100),
            ("1", 100),
        ]:
            v1_only.set_traffic(version, percent)
            time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures, failures[:3]
    assert len(served) > 200 and set(served) == {"1", "2"}


def test_metrics_count_requests_errors_latency_and_predictions_per_version(v1_only: RunningServer):
    from mlops_platform.lib.canary_analysis import VersionWindow, parse_metrics

    before = parse_metrics(httpx.get(f"{v1_only.url}/metrics").text, MODEL)
    v1_only.set_traffic("3", 50)  # v3 fails on every request
    with httpx.Client(base_url=v1_only.url) as client:
        codes = [client.post(f"/v1/models/{MODEL}:predict", json={"instances": [ROW]}) for _ in range(200)]
    v1_only.set_traffic("1", 100)
    failed = [a for a in codes if a.status_code != 200]
    assert failed and all(a.status_code == 500 and a.headers["x-request-id"] for a in failed)
    assert "model version 3 failed" in failed[0].json()["error"]
    after = parse_metrics(httpx.get(f"{v1_only.url}/metrics").text, MODEL)
    v1 = after["1"].minus(before.get("1", VersionWindow()))
    v3 = after["3"].minus(before.get("3", VersionWindow()))
    assert v3.errors == v3.requests == len(failed)
    assert v1.requests == 200 - len(failed) and v1.errors == 0
    assert sum(v1.prediction_buckets.values()) == v1.requests
    assert v1.latency_buckets[math.inf] == v1.requests and 0 < v1.latency_quantile(0.95) < 1.0


def test_entity_ids_are_scored_from_the_feast_online_store(v1_only: RunningServer, model_registry: Settings):
    from mlops_platform.feature_repo.definitions import build_feature_repo, feature_view_name
    from mlops_platform.feature_repo.store import open_store

    spec = model_registry.load_spec()
    frame = adult_rows(spec, 5, seed=3)
    frame["record_id"] = [f"person-{i}" for i in range(len(frame))]
    frame["event_timestamp"] = pd.Timestamp("2026-01-01", tz="UTC")
    features = frame[["record_id", "event_timestamp", *spec.features.all]].astype(
        {n: "float64" for n in spec.features.numeric}
    )
    parquet = model_registry.home / "lake" / "features.parquet"
    parquet.parent.mkdir(parents=True, exist_ok=True)
    features.to_parquet(parquet)
    store = open_store(spec.name, model_registry.feast_dir)
    store.apply(build_feature_repo(spec, parquet))
    store.write_to_online_store(feature_view_name(spec), features)

    by_id = httpx.post(
        v1_only.predict_url(MODEL),
        json={"instances": [{"record_id": "person-0"}, {"record_id": "person-3"}]},
        timeout=60,
    )
    assert by_id.status_code == 200, by_id.text
    direct = httpx.post(
        v1_only.predict_url(MODEL), json={"instances": _instances(frame.iloc[[0, 3]], spec.features.all)}
    )
    assert np.allclose(
        [p["probability"] for p in by_id.json()["predictions"]],
        [p["probability"] for p in direct.json()["predictions"]],
    )
    missing = httpx.post(
        v1_only.predict_url(MODEL), json={"instances": [{"record_id": "nobody"}]}, timeout=60
    )
    assert missing.status_code == 404 and missing.json()["field"] == "instances[0].record_id"


def _log_lines(home: Path) -> list[dict]:
    return [
        json.loads(line) for path in sorted(home.glob("inference_log/date=*/*.jsonl")) for line in path.open()
    ]


def test_inference_log_is_complete_after_a_clean_stop_and_traffic_survives_a_restart(
    tmp_path, model_registry
):
    settings = Settings(
        home=tmp_path / "home",
        dataset_spec_path=model_registry.dataset_spec_path,
        mlflow_tracking_uri=model_registry.tracking_uri,
    )
    first = start_server(settings, 2, "--version", "1")
    try:
        first.set_traffic("2", 20, owner=deploy_owner("test-run"))  # a live owner: the canary survives
        sent: list[str] = []
        with httpx.Client(base_url=first.url) as client:
            for i in range(400):
                request_id = f"log-{i}-{uuid.uuid4().hex[:6]}"
                rows = [ROW] * (1 + i % 3)
                answer = client.post(
                    f"/v1/models/{MODEL}:predict",
                    json={"instances": rows},
                    headers={"x-request-id": request_id},
                )
                assert answer.status_code == 200
                sent += [request_id] * len(rows)
    finally:
        assert first.stop() == 0
    lines = _log_lines(settings.home)
    assert sorted(line["request_id"] for line in lines) == sorted(sent)  # every row, none twice
    assert {line["model_version"] for line in lines} == {"1", "2"}
    first_line = lines[0]
    assert first_line["inputs"]["age"] == 39 and first_line["inputs"]["sex"] == "Male"
    assert 0.0 <= first_line["probability"] <= 1.0 and first_line["prediction"] in (0, 1)
    assert first_line["role"] in ("stable", "canary") and first_line["timestamp"].endswith("+00:00")

    # the server writes exactly the schema's fields, and both readers give exactly its columns
    assert all(list(line) == RECORD_FIELDS for line in lines)
    spec = settings.load_spec()
    columns = frame_columns(spec.features.numeric, spec.features.categorical)
    files = sorted(settings.inference_log_dir.glob("date=*/*.jsonl"))
    read = read_inference_log(files, spec.features.numeric, spec.features.categorical)
    appended, _ = read_new_records(settings.inference_log_dir, {})
    for frame in (read, appended):
        assert list(frame.columns) == columns and len(frame) == len(sent)
        assert sorted(frame["request_id"]) == sorted(sent) and frame["age"].eq(39).all()
        assert frame[["timestamp", "model_version", "role", "probability", "prediction"]].notna().all().all()

    second = start_server(settings, 1)
    try:
        report = httpx.get(f"{second.url}/admin/traffic", headers=second.admin()).json()
        assert report["spec"]["rolled_out_version"] == "1" and report["spec"]["canary_percent"] == 20
        assert "kept the traffic state" in second.log_path.read_text()
    finally:
        second.stop()


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        (None, 200),  # no Content-Type: read as JSON (raw clients; the body is still validated)
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("application/vnd.kserve+json", 200),
        ("application/x-www-form-urlencoded", 415),  # what curl sends without -H
        ("text/plain", 415),
        ("multipart/form-data; boundary=x", 415),
    ],
)
def test_content_type_must_be_json_when_present(v1_only: RunningServer, content_type, status):
    body = json.dumps({"instances": [ROW]}).encode()
    headers = {} if content_type is None else {"Content-Type": content_type}
    for path in (v1_only.predict_url(MODEL), f"{v1_only.url}/v2/models/{MODEL}/infer"):
        sent = body if "v1" in path else json.dumps({"inputs": _v2_row(ROW)}).encode()
        answer = httpx.post(path, content=sent, headers=headers)
        assert answer.status_code == status, answer.text
        if status == 415:
            assert answer.json()["field"] == "content-type" and "application/json" in answer.json()["error"]
    admin = httpx.put(
        f"{v1_only.url}/admin/traffic",
        content=json.dumps({"version": "1"}).encode(),
        headers={**headers, **v1_only.admin()},
        timeout=60,
    )
    assert admin.status_code == status, admin.text


def _v2_row(row: dict) -> list[dict]:
    return [
        {"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "INT64", "data": [v]}
        for k, v in row.items()
    ]


def _deep(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("v2", {"inputs": [dict(t, datatype=["INT64"]) for t in _v2_row(ROW)]}, 422, "inputs[age].datatype"),
        ("v2", {"inputs": [dict(t, datatype={}) for t in _v2_row(ROW)]}, 422, "inputs[age].datatype"),
        ("v2", {"inputs": [dict(t, shape={"rows": 1}) for t in _v2_row(ROW)]}, 422, "inputs[age].shape"),
        ("v2", {"inputs": [dict(t, shape=[1, 1, 1]) for t in _v2_row(ROW)]}, 422, "inputs[age].shape"),
        ("v2", {"inputs": [dict(t, name=["age"]) for t in _v2_row(ROW)]}, 422, "inputs[0]"),
        ("v2", {"inputs": {}}, 400, "inputs"),
        ("v1", '{"instances": [{"age": ' + _deep(981) + "}]}", 422, "instances[0].age"),
        ("v1", '{"instances": [{"age": ' + _deep(1030) + "}]}", 400, "body"),
        ("v1", _deep(5000), 400, "body"),
        ("v1", {"instances": [{**ROW, "age": "٣٩"}]}, 422, "instances[0].age"),
        ("v1", {"instances": [{**ROW, "age": "39"}]}, 422, "instances[0].age"),
        ("v1", {"instances": [{**ROW, "capital_gain": 1e300}]}, 422, "instances[0].capital_gain"),
        ("v1", '{"instances": [{"age": NaN}]}', 400, "body"),
        ("v1", '{"instances": [{"age": 1e999}]}', 400, "body"),
    ],
)
def test_hostile_bodies_get_a_4xx_naming_the_field(v1_only: RunningServer, path, body, status, field):
    url = v1_only.predict_url(MODEL) if path == "v1" else f"{v1_only.url}/v2/models/{MODEL}/infer"
    content = body.encode() if isinstance(body, str) else json.dumps(body, ensure_ascii=False).encode()
    answer = httpx.post(url, content=content, headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field, answer.text
    assert len(answer.content) < 1000  # the value is described, never echoed whole


def test_numbers_sent_as_strings_are_named_with_a_hint(v1_only: RunningServer):
    answer = httpx.post(v1_only.predict_url(MODEL), json={"instances": [{**ROW, "age": "٣٩"}]})
    assert "a number written as a string" in answer.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"alias": {}}, 422, "alias"),
        ({"alias": []}, 422, "alias"),
        ({"version": True}, 422, "version"),
        ({"version": 1.5}, 422, "version"),
        ({"version": "1", "canary_percent": "50"}, 422, "canary_percent"),
        ({"version": "1", "owner": {"run_id": "r", "pid": "1", "host": "h"}}, 422, "owner.pid"),
        ({"version": "1", "owner": {"run_id": "r", "pid": 1}}, 422, "owner.host"),
        ({"version": "1", "colour": "red"}, 422, "colour"),
        ({}, 422, "version"),
        ([], 400, "body"),
        ("{", 400, "body"),
    ],
)
def test_malformed_admin_bodies_get_a_4xx_naming_the_field(v1_only: RunningServer, body, status, field):
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    answer = httpx.put(f"{v1_only.url}/admin/traffic", content=content, headers=v1_only.admin(), timeout=30)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field, answer.text


def test_openapi_lists_the_inference_routes_and_the_admin_api(v1_only: RunningServer):
    document = httpx.get(f"{v1_only.url}/openapi.json").json()
    paths, schemas = document["paths"], document["components"]["schemas"]
    for path, ref in [
        ("/v1/models/{model}:predict", "V1Request"),
        ("/v2/models/{model}/infer", "V2Request"),
        ("/v2/models/{model}/versions/{version}/infer", "V2Request"),
    ]:
        operation = paths[path]["post"]
        assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(ref)
        assert {"200", "400", "415", "422"} <= set(operation["responses"])
    instance = schemas["V1Instance"]["oneOf"][0]
    assert instance["properties"]["age"] == {"type": "integer", "minimum": 17, "maximum": 90}
    assert instance["properties"]["sex"]["enum"] == ["Female", "Male"]
    put = paths["/admin/traffic"]["put"]
    assert put["security"] == [{"bearerAuth": []}]
    assert put["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("TrafficRequest")
    assert set(schemas["TrafficRequest"]["properties"]) == {"version", "alias", "canary_percent", "owner"}
    assert set(schemas["CanaryOwner"]["required"]) == {"run_id", "pid", "host"}
    assert paths["/admin/traffic/lease"]["post"]["security"] == [{"bearerAuth": []}]
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "the admin token (MLOPS_ADMIN_TOKEN)",
    }


def test_server_errors_are_counted_by_route(v1_only: RunningServer):
    v1_only.set_traffic("3", 50)  # v3 fails on every request
    with httpx.Client(base_url=v1_only.url) as client:
        failed = sum(
            client.post(f"/v1/models/{MODEL}:predict", json={"instances": [ROW]}).status_code == 500
            for _ in range(60)
        )
        pinned = client.post(f"/v2/models/{MODEL}/versions/3/infer", json={"inputs": _v2_row(ROW)})
    v1_only.set_traffic("1", 100)
    assert failed > 0 and pinned.status_code == 500
    metrics = httpx.get(f"{v1_only.url}/metrics").text
    counted = {
        line[line.index("{") + 1 : line.rindex("}")]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("mlops_server_errors_total{")
    }
    assert counted.get('route="/v1/models/{model}:predict",status="500"', 0) >= failed, counted
    assert counted.get('route="/v2/models/{model}/versions/{version}/infer",status="500"', 0) >= 1, counted


WORKER_PROBE = """
import asyncio, json, sys

import httpx
from uvicorn.config import Config
from uvicorn.lifespan.on import LifespanOn

import mlops_platform.cli
from mlops_platform.serving.server import seed_traffic
from mlops_platform.settings import Settings


async def main():
    print(seed_traffic(Settings.from_env(), version="1", alias=None, reset=True))  # `mlops serve --version 1`
    config = Config("mlops_platform.serving.app:create_app", factory=True)
    config.load()  # what each uvicorn worker does: import the factory's module and call it
    lifespan = LifespanOn(config)
    await lifespan.startup()
    assert not lifespan.should_exit
    transport = httpx.ASGITransport(app=config.loaded_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
        answer = await client.post(sys.argv[1], json={"instances": [json.loads(sys.argv[2])]})
        by_id = await client.post(sys.argv[1], json={"instances": [{"record_id": "r-1"}]})
    await lifespan.shutdown()
    print(json.dumps({"status": answer.status_code, "version": answer.headers.get("x-model-version"),
                      "by_id": by_id.status_code, "modules": sorted(sys.modules)}))


asyncio.run(main())
"""


def test_a_server_worker_never_imports_dagster(tmp_path, model_registry):
    """`mlops serve`'s launcher and a worker, up to a scored request and a lookup by record id
    (a 404: no store yet), load no Dagster, no definitions and no Feast."""
    settings = Settings(
        home=tmp_path / "home",
        dataset_spec_path=model_registry.dataset_spec_path,
        mlflow_tracking_uri=model_registry.tracking_uri,
    )
    done = subprocess.run(
        [sys.executable, "-c", WORKER_PROBE, f"/v1/models/{MODEL}:predict", json.dumps(ROW)],
        env={**os.environ, **settings.to_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["status"] == 200 and result["version"] == "1" and result["by_id"] == 404
    modules = result["modules"]
    assert "mlops_platform.serving.app" in modules and "mlops_platform.cli" in modules
    forbidden = [
        m
        for m in modules
        if m.split(".")[0] in ("dagster", "dagster_dbt", "dagster_shared", "feast")
        or m.startswith(("mlops_platform.defs", "mlops_platform.definitions"))
    ]
    assert forbidden == []
