"""Structured logs: the formats (`mlops_platform.logs`), the CLI's error line, the jobs' JSON
logger on a real in-process run, and `mlops serve` end to end: the access line, the request id
kept from the client's `x-request-id` to the response, the access line and the inference log,
and hostile ids refused with a 400 naming the header."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import httpx
import pytest

from mlops_platform import logs
from mlops_platform.defs.job_logs import (
    job_logger_defs,
    job_loggers_config,
    job_run_config,
    json_console_logger,
)
from mlops_platform.serving.access_log import AccessLog
from mlops_platform.settings import Settings
from mlops_platform_tests.serving import ROW, start_server

MODEL = "adult_income_classifier"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(autouse=True)
def _no_cli_handler():
    yield
    if logs._cli_handler is not None:
        logging.getLogger("mlops_platform").removeHandler(logs._cli_handler)
        logs._cli_handler = None


def _record(message: str = "request", level: int = logging.INFO, **extra) -> logging.LogRecord:
    return logging.getLogger("mlops_platform.test").makeRecord(
        "mlops_platform.test", level, __file__, 1, message, None, None, extra=extra
    )


# -- formats


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "text"), ("", "text"), ("text", "text"), ("json", "json"), (" JSON ", "json")],
)
def test_the_format_comes_from_mlops_log_format(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("MLOPS_LOG_FORMAT", raising=False)
    else:
        monkeypatch.setenv("MLOPS_LOG_FORMAT", value)
    assert logs.log_format() == expected


def test_an_unknown_format_names_the_variable_and_the_allowed_values(monkeypatch):
    monkeypatch.setenv("MLOPS_LOG_FORMAT", "xml")
    for call in (logs.log_format, logs.configure_cli, logs.server_log_config, job_logger_defs):
        with pytest.raises(ValueError, match=r"MLOPS_LOG_FORMAT='xml' is not a log format: use text or json"):
            call()


def test_a_json_line_holds_the_event_the_extra_fields_and_the_traceback():
    record = _record(request_id="r-1", status=200, duration_ms=1.5, model_version="7", role=None)
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    fields = json.loads(line)
    assert list(fields) == [
        "timestamp", "level", "logger", "event", "request_id", "status", "duration_ms", "model_version"
    ]  # fmt: skip
    assert TIMESTAMP.match(fields["timestamp"]) and fields["level"] == "info"
    assert fields["logger"] == "mlops_platform.test" and fields["event"] == "request"
    assert fields["request_id"] == "r-1" and fields["status"] == 200 and fields["model_version"] == "7"
    assert "role" not in fields  # None: left out

    try:
        raise KeyError("boom")
    except KeyError:
        failed = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, "f", 1, 'a "quoted"\nmessage', None, sys.exc_info()
        )
    fields = json.loads(logs.JsonFormatter().format(failed))
    assert fields["level"] == "error" and fields["event"] == 'a "quoted"\nmessage'
    assert fields["traceback"].startswith("Traceback") and "KeyError: 'boom'" in fields["traceback"]
    # values JSON cannot hold are written as text
    assert json.loads(logs.JsonFormatter().format(_record(path=Path("/a"))))["path"] == "/a"


def test_a_text_line_has_the_same_fields_and_quotes_what_would_break_it():
    line = logs.TextFormatter().format(
        _record(request_id="r-1", status=200, model_name='a b"\nc', empty="", role=None)
    )
    timestamp, level, rest = line.split(" ", 2)
    assert TIMESTAMP.match(timestamp) and level == "INFO"
    assert rest == 'mlops_platform.test: request request_id=r-1 status=200 model_name="a b\\"\\nc" empty=""'
    assert "\n" not in line


def test_the_cli_error_line_in_each_format(monkeypatch, capsys):
    monkeypatch.delenv("MLOPS_LOG_FORMAT", raising=False)
    logs.log_error("check-spec", "data.yaml: no such file")
    assert capsys.readouterr().err == "mlops check-spec: data.yaml: no such file\n"

    monkeypatch.setenv("MLOPS_LOG_FORMAT", "json")
    logs.log_error("check-spec", "data.yaml: no such file")
    fields = json.loads(capsys.readouterr().err)
    assert fields["level"] == "error" and fields["logger"] == "mlops_platform.cli"
    assert fields["event"] == "data.yaml: no such file" and fields["command"] == "check-spec"

    # when the format itself is the error, the error still gets out, as text
    monkeypatch.setenv("MLOPS_LOG_FORMAT", "yaml")
    with pytest.raises(ValueError) as raised:
        logs.configure_cli()
    logs.log_error("serve", str(raised.value))
    assert (
        capsys.readouterr().err
        == "mlops serve: MLOPS_LOG_FORMAT='yaml' is not a log format: use text or json\n"
    )


def test_configure_cli_writes_the_platforms_warnings_once_in_the_format(monkeypatch, capsys):
    monkeypatch.setenv("MLOPS_LOG_FORMAT", "json")
    logs.configure_cli()
    logs.configure_cli()  # again (main() called twice in one process): still one handler
    logging.getLogger("mlops_platform.lib.something").warning("disk %s full", "/data", extra={"free_mb": 3})
    logging.getLogger("mlops_platform.lib.something").info("not shown")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    fields = json.loads(lines[0])
    assert fields["event"] == "disk /data full" and fields["level"] == "warning" and fields["free_mb"] == 3


def test_the_access_log_writes_queued_requests_through_the_loggers_handlers():
    logger = logging.getLogger("mlops_platform.test.access")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    stream = io.StringIO()
    batched = logging.StreamHandler(stream)
    batched.setFormatter(logs.JsonFormatter())
    collected: list[logging.LogRecord] = []
    other = logging.Handler()
    other.emit = collected.append  # type: ignore[method-assign]
    logger.handlers = [batched, other]
    access = AccessLog(logger, flush_seconds=3600, chunk=3, max_pending=50)
    try:
        for i in range(7):
            access.request(f"r-{i}", MODEL, "2", "canary", "v2", 200, 1.5, 3)
        access.request("r-bad", MODEL, None, None, "v1", 415, 0.2, 0)
        assert stream.getvalue() == ""  # queued, not written by the request
        sent_at = time.time()
    finally:
        access.close()  # writes what is left
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == [*(f"r-{i}" for i in range(7)), "r-bad"]
    assert lines[0] == {
        "timestamp": lines[0]["timestamp"],
        "level": "info",
        "logger": "mlops_platform.test.access",
        "event": "request",
        "request_id": "r-0",
        "model_name": MODEL,
        "model_version": "2",
        "role": "canary",
        "protocol": "v2",
        "status": 200,
        "duration_ms": 1.5,
        "rows": 3,
    }
    assert "model_version" not in lines[-1] and lines[-1]["status"] == 415
    assert [r.request_id for r in collected] == [line["request_id"] for line in lines]  # type: ignore[attr-defined]
    assert all(r.created <= sent_at for r in collected)  # the time of the request, not of the write
    assert access.written == 8

    # past max_pending the request that adds one writes the queue itself
    access = AccessLog(logger, flush_seconds=3600, max_pending=5)
    try:
        for i in range(5):
            access.request(f"p-{i}", MODEL, "2", "stable", "v1", 200, 1.0, 1)
        assert access.written == 5
    finally:
        access.close()
        logger.handlers = []


# -- Dagster jobs


@dg.asset
def scored_table(context) -> int:
    context.log.info("promoted v7", extra={"model_version": "7"})
    return 1


@dg.asset
def broken_table(scored_table: int) -> int:
    raise RuntimeError("the warehouse is gone")


def _run_job(tmp_path: Path, select: list) -> dg.ExecuteInProcessResult:
    job = dg.define_asset_job("logged_job", selection=select, config=job_run_config())
    defs = dg.Definitions(
        assets=[scored_table, broken_table],
        jobs=[job],
        loggers=job_logger_defs(),
        resources={"io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path))},
    )
    return defs.resolve_job_def("logged_job").execute_in_process(raise_on_error=False)


def test_a_job_run_writes_json_lines_with_its_run_id(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MLOPS_LOG_FORMAT", "json")
    result = _run_job(tmp_path, [scored_table, broken_table])
    assert not result.success
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert len(records) > 10
    assert {r["run_id"] for r in records} == {result.run_id}
    assert {r["job_name"] for r in records} == {"logged_job"}
    assert all(TIMESTAMP.match(r["timestamp"]) and r["logger"] == "dagster" for r in records)
    assert {"RUN_START", "STEP_START", "STEP_SUCCESS", "STEP_FAILURE", "RUN_FAILURE"} <= {
        r.get("dagster_event") for r in records
    }
    (promoted,) = [r for r in records if r["event"] == "promoted v7"]
    assert promoted["level"] == "info" and promoted["model_version"] == "7"
    assert promoted["step_key"] == "scored_table"
    (failure,) = [r for r in records if r.get("dagster_event") == "STEP_FAILURE"]
    assert failure["level"] == "error" and failure["step_key"] == "broken_table"
    assert "the warehouse is gone" in failure["error"]


def test_text_mode_keeps_dagsters_console_logger(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("MLOPS_LOG_FORMAT", raising=False)
    assert job_logger_defs() is None and job_loggers_config() is None and job_run_config() is None
    result = _run_job(tmp_path, [scored_table])
    assert result.success
    err = capsys.readouterr().err
    assert f"{result.run_id} - scored_table - promoted v7" in err and not err.lstrip().startswith("{")


def test_the_platform_jobs_select_the_json_logger(monkeypatch, adult_settings):
    from mlops_platform.definitions import build_definitions
    from mlops_platform.defs.ingestion.jobs import build_data_pipeline_job
    from mlops_platform.defs.training.jobs import build_retrain_job

    monkeypatch.setenv("MLOPS_LOG_FORMAT", "json")
    assert build_retrain_job().config == {"loggers": {"console": {}}}
    assert build_data_pipeline_job(adult_settings.load_spec()).config == {"loggers": {"console": {}}}
    defs = build_definitions(adult_settings)  # the code location resolves with them
    retrain = defs.resolve_job_def("retrain_model")
    assert retrain.loggers["console"] is json_console_logger  # Definitions(loggers=job_logger_defs())
    assert retrain.run_config_schema.config_type.fields["loggers"].default_value == {"console": {}}
    # a partitioned job's default config is its partitions' (a range's run config is its starter's)
    pipeline = defs.resolve_job_def("data_pipeline")
    assert pipeline.loggers["console"] is json_console_logger
    day = pipeline.partitions_def.get_first_partition_key()
    assert pipeline.partitioned_config.get_run_config_for_partition_key(day)["loggers"] == {"console": {}}
    monkeypatch.delenv("MLOPS_LOG_FORMAT")
    assert build_retrain_job().config is None


# -- the model server


def _v2_inputs() -> list[dict]:
    return [
        {"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "INT64", "data": [v]}
        for k, v in ROW.items()
    ]


def _raw_post(url: str, path: str, request_id: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """A POST with `x-request-id: <request_id>` written byte for byte (HTTP clients refuse to send
    CR, LF or non-ASCII); (status, headers, body)."""
    parts = urlsplit(url)
    body = json.dumps({"instances": [ROW]}).encode()
    head = (
        f"POST {path} HTTP/1.0\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as connection:
        connection.sendall(head + b"x-request-id: " + request_id + b"\r\n\r\n" + body)
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.split(b"\r\n")
    headers = {k.lower(): v for k, v in (line.split(b": ", 1) for line in header_lines)}
    if headers.get(b"transfer-encoding") == b"chunked":
        body, rest = b"", payload
        while (size := int(rest.split(b"\r\n", 1)[0], 16)) > 0:
            start = rest.index(b"\r\n") + 2
            body, rest = body + rest[start : start + size], rest[start + size + 2 :]
        payload = body
    return int(status_line.split(b" ")[1]), headers, payload


HOSTILE_IDS = {
    "too long": b"x" * 129,
    "line feed": b"abc\ninjected: 1",
    "carriage return": b"abc\rinjected",
    "non-ASCII": "r\u00e9quest-\u4e2d".encode(),
    "JSON-breaking quote": b'abc","status":200,"x":"',
    "space": b"abc def",
    "percent-encoded newline": b"abc%0Ainjected",
}


def _access_lines(log: str, fmt: str) -> list[dict]:
    found = []
    for line in log.splitlines():
        if fmt == "json":
            fields = json.loads(line)
            if fields["logger"] == "mlops_platform.serving.access":
                found.append(fields)
        elif " mlops_platform.serving.access: request " in line:
            pairs = line.split(" mlops_platform.serving.access: request ", 1)[1].split(" ")
            found.append({k: v for k, _, v in (pair.partition("=") for pair in pairs)})
    return found


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_the_request_id_is_kept_from_the_client_to_the_access_line_and_the_inference_log(
    fmt, monkeypatch, tmp_path, model_registry
):
    monkeypatch.setenv("MLOPS_LOG_FORMAT", fmt)
    settings = Settings(
        home=tmp_path / "home",
        dataset_spec_path=model_registry.dataset_spec_path,
        mlflow_tracking_uri=model_registry.tracking_uri,
    )
    server = start_server(settings, 2, "--version", "1")
    refused: dict[str, str] = {}
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            kept = "Ab9._:/-" + "x" * 120  # every allowed character, 128 in all
            v1 = client.post(
                f"/v1/models/{MODEL}:predict", json={"instances": [ROW, ROW]}, headers={"x-request-id": kept}
            )
            assert v1.status_code == 200, v1.text
            assert v1.headers["x-request-id"] == kept and v1.json()["request_id"] == kept

            # V2: a body `id` is the request id when no header names one; the answer's `id` is as sent
            v2 = client.post(f"/v2/models/{MODEL}/infer", json={"id": "v2.body-id", "inputs": _v2_inputs()})
            assert v2.status_code == 200 and v2.headers["x-request-id"] == "v2.body-id"
            both = client.post(
                f"/v2/models/{MODEL}/infer",
                json={"id": "the body's", "inputs": _v2_inputs()},
                headers={"x-request-id": "v2-header"},
            )
            assert both.headers["x-request-id"] == "v2-header" and both.json()["id"] == "the body's"

            # an empty header is no id: a new one is made, as without the header
            empty = client.post(
                f"/v1/models/{MODEL}:predict", json={"instances": [ROW]}, headers={"x-request-id": ""}
            )
            assert empty.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", empty.headers["x-request-id"])
            bad_input = client.post(
                f"/v1/models/{MODEL}:predict",
                json={"instances": [{**ROW, "age": 150}]},
                headers={"x-request-id": "bad-input"},
            )
            assert bad_input.status_code == 422 and bad_input.headers["x-request-id"] == "bad-input"

        for name, value in HOSTILE_IDS.items():
            status, headers, body = _raw_post(server.url, f"/v1/models/{MODEL}:predict", value)
            assert status == 400, (name, body)
            if name in ("line feed", "carriage return"):
                # the HTTP parser refuses the request before it reaches the app: nothing is logged
                assert b"injected" not in body
                continue
            answer = json.loads(body)
            assert answer["field"] == "x-request-id" and "is not a request id" in answer["error"], name
            assert re.fullmatch(rb"[0-9a-f]{32}", headers[b"x-request-id"]), name
            assert answer["request_id"] == headers[b"x-request-id"].decode()
            refused[name] = answer["request_id"]
    finally:
        assert server.stop() == 0

    log = server.log_path.read_text()
    assert "injected" not in log
    access = {line["request_id"]: line for line in _access_lines(log, fmt)}
    line = access[kept]
    assert line["model_name"] == MODEL and line["model_version"] == "1" and line["role"] == "stable"
    assert line["protocol"] == "v1" and str(line["status"]) == "200" and str(line["rows"]) == "2"
    assert float(line["duration_ms"]) > 0
    assert str(access["v2.body-id"]["status"]) == "200" and access["v2.body-id"]["protocol"] == "v2"
    assert "v2-header" in access and empty.headers["x-request-id"] in access
    assert str(access["bad-input"]["status"]) == "422" and str(access["bad-input"]["rows"]) == "0"
    for request_id in refused.values():
        assert str(access[request_id]["status"]) == "400"
    if fmt == "json":
        assert all(json.loads(line) for line in log.splitlines())  # every line of the server's log

    logged = [
        json.loads(line)
        for path in sorted(settings.inference_log_dir.glob("date=*/*.jsonl"))
        for line in path.open()
    ]
    assert sorted(r["request_id"] for r in logged) == sorted(
        [kept, kept, "v2.body-id", "v2-header", empty.headers["x-request-id"]]
    )
