"""Online serving throughput and latency: `mlops serve` against its peers, plus the batch path.

Every server runs the same TorchScript model with 2 workers on loopback and answers single-row
requests under concurrency, driven by `wrk -t2 -c32 --latency` (a Lua script POSTs one real
Adult row) after a short warm-up run. Measured per server: requests/s, p50/p90/p99 latency,
non-2xx and socket errors, and the CPU seconds its whole process group used during the run
(also per 1,000 requests). wrk shares the machine's cores with the server.

- ours: `mlops serve --workers 2` with everything on: request validation against the dataset
  spec, a canary split (version A rolled out, then `PUT /admin/traffic` sends 10 % to version
  B), Prometheus metrics and the inference log. After the run the benchmark checks that the
  inference log grew by about the number of requests and that /metrics counts both versions.
- kserve: KServe's own Python `ModelServer` (benchmarks/peers/kserve_server.py) at its
  defaults: a few log lines per request, gRPC on, REST bound to 0.0.0.0 (KServe 0.21 has no
  option for another address; the benchmark sends traffic to 127.0.0.1 only).
- fastapi: one bare FastAPI route, no validation, metrics or logging (benchmarks/peers/).
- mlflow: `mlflow models serve --env-manager local --workers 2` (`/invocations`, pandas);
  slow, so its run is capped by `--mlflow-duration`.

The batch path is timed in-process: `ScoringModel.predict_proba` over a 1,000,000-row frame
(Adult resampled) in 65,536-, 8,192- and 1,000-row batches, its parts, and the server's V2 path
(JSON body -> `RequestValidator.v2_batch` -> `Revision.predict_proba`) at 10,000 rows a request.

The model versions come from the registry under `--home` (default: a fresh temporary data
directory); when it holds fewer than two versions, small networks are trained on Adult and
registered first (seconds). Results go to benchmarks/results/serving.json, and a Markdown
table to stdout. Measure on an otherwise idle machine: the JSON records, per run, the CPU
time the rest of the machine used meanwhile (`other_cpu_seconds`).

    .venv/bin/python benchmarks/serving.py [--duration 20] [--skip mlflow] [--home DIR] [--logs DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil

from mlops_platform.datasets.spec import shipped_spec_path
from mlops_platform.serving.revisions import fetch_artifact
from mlops_platform.settings import Settings

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "serving.json"
PEERS = HERE / "peers"
BIN = Path(sys.executable).parent
SERVERS = ("ours", "kserve", "fastapi", "mlflow")
ROW = {
    "age": 39,
    "workclass": "State-gov",
    "education": "Bachelors",
    "education_num": 13,
    "marital_status": "Never-married",
    "occupation": "Adm-clerical",
    "relationship": "Not-in-family",
    "race": "White",
    "sex": "Male",
    "capital_gain": 2174,
    "capital_loss": 0,
    "hours_per_week": 40,
    "native_country": "United-States",
}
TARGET_RPS_RATIO = 1.5
TARGET_P99_MS = 10.0


# -- model versions


def ensure_versions(settings: Settings, wanted: int = 2) -> list[str]:
    """The registry's versions of the spec's model, training and registering more if fewer than `wanted`."""
    from mlflow import MlflowClient

    name = settings.load_spec().registered_model_name
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    found = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
    for seed in range(len(found), wanted):
        found.append(int(register_version(settings, seed)))
        print(f"registered {name} v{found[-1]}", flush=True)
    return [str(v) for v in found]


def register_version(settings: Settings, seed: int) -> str:
    """Train a small network on Adult and register it as `trained_model` would; returns the version."""
    import mlflow
    import pandas as pd

    from mlops_platform.lib.evaluation import choose_threshold
    from mlops_platform.lib.model_artifact import save_artifact
    from mlops_platform.lib.pyfunc_model import log_pyfunc
    from mlops_platform.lib.training import predict_proba, train_model
    from mlops_platform.lib.training_params import TrainingParams
    from mlops_platform.resources.mlflow import MlflowTracking

    spec = settings.load_spec()
    frame = pd.read_csv(spec.source.path).sample(n=6000, random_state=seed).reset_index(drop=True)
    frame["label"] = (frame[spec.label.column] == spec.label.positive_class).astype(int)
    train, validation = frame.iloc[:5000], frame.iloc[5000:]
    params = TrainingParams(hidden_sizes=[64, 32], epochs=5, seed=seed)
    outcome = train_model(train, validation, spec.features.numeric, spec.features.categorical, params)
    threshold = choose_threshold(
        validation["label"].to_numpy(), predict_proba(outcome.net, outcome.encoder, validation)
    )
    meta = {"threshold": threshold, "dataset": spec.name, "features": spec.features.all}
    tracking = MlflowTracking(
        tracking_uri=settings.tracking_uri,
        artifact_root=settings.artifact_root,
        experiment="serving-benchmark",
    )
    with tracking.start_run(f"benchmark-{seed}", tags={}) as run:
        artifact = save_artifact(
            outcome.net, outcome.encoder, meta, settings.models_dir / run.info.run_id / "model.pt"
        )
        example = validation[spec.features.all].head(3).astype({n: "float64" for n in spec.features.numeric})
        logged = log_pyfunc(artifact, example)
    return str(mlflow.register_model(logged.model_uri, spec.registered_model_name).version)


# -- processes, readiness, CPU


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A server started in its own session, so its whole process group can be measured and stopped."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            command, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.pgid = self.process.pid

    def group(self) -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if os.getpgid(process.pid) == self.pgid:
                    found.append(process)
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of every live process in the group."""
        total = 0.0
        for process in self.group():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def wait_ready(self, url: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}; see {self.log_path}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
            time.sleep(0.25)
        raise TimeoutError(f"{url} not ready after {timeout:.0f} s; see {self.log_path}")

    def pids(self) -> set[int]:
        return {process.pid for process in self.group()}

    def wait_settled(self, quiet: float = 6.0, timeout: float = 120.0) -> None:
        """Wait until the group's processes stay the same for `quiet` seconds (workers started,
        none being replaced: KServe kills and respawns a worker that does not answer its ping)."""
        deadline = time.monotonic() + timeout
        seen, since = self.pids(), time.monotonic()
        while time.monotonic() - since < quiet:
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker processes kept changing for {timeout:.0f} s; see {self.log_path}")
            time.sleep(0.5)
            now = self.pids()
            if now != seen:
                seen, since = now, time.monotonic()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to the group (clean shutdown flushes logs), SIGKILL whatever is left after `timeout`."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.group():
            time.sleep(0.2)
            self.process.poll()  # reap the leader so it leaves the group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        self.process.wait()
        self._log.close()


@contextlib.contextmanager
def started(command: list[str], env: dict[str, str], log_path: Path) -> Iterator[Server]:
    server = Server(command, env, log_path)
    try:
        yield server
    finally:
        server.stop()


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq + times.steal


def children_cpu_seconds() -> float:
    """CPU seconds of this process's finished children (the wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def http(method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    return json.loads(text) if text.lstrip().startswith(("{", "[")) else text


# -- wrk


def lua_script(folder: Path, name: str, body: dict) -> Path:
    path = folder / f"{name}.lua"
    payload = json.dumps(body, separators=(",", ":"))
    path.write_text(
        f'wrk.method = "POST"\nwrk.body = [[{payload}]]\nwrk.headers["Content-Type"] = "application/json"\n'
    )
    return path


def _milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def parse_wrk(output: str) -> dict[str, Any]:
    """requests/s, latency percentiles, request count and errors from `wrk --latency` output."""
    result: dict[str, Any] = {
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),  # type: ignore[union-attr]
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
    }
    for percent in (50, 90, 99):
        found = re.search(rf"^\s+{percent}%\s+(\S+)", output, re.MULTILINE)
        result[f"p{percent}_ms"] = round(_milliseconds(found.group(1)), 3)  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result["non_2xx"] = int(non_2xx.group(1)) if non_2xx else 0
    result["socket_errors"] = sum(int(n) for n in sockets.groups()) if sockets else 0
    result["errors"] = result["non_2xx"] + result["socket_errors"]
    return result


def wrk(url: str, script: Path, seconds: int, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    return parse_wrk(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def measure(
    server: Server, url: str, script: Path, seconds: int, args: argparse.Namespace, warm: bool = True
) -> dict[str, Any]:
    """The measured wrk run (after a warm-up run unless `warm` is False), with the CPU time the
    server's process group used during it."""
    warmup = wrk(url, script, args.warmup, args)["requests"] if warm else 0
    pids = server.pids()
    before, busy_before, wrk_before = server.cpu_seconds(), machine_busy_seconds(), children_cpu_seconds()
    result = wrk(url, script, seconds, args)
    cpu = server.cpu_seconds() - before
    wrk_cpu = children_cpu_seconds() - wrk_before
    others = machine_busy_seconds() - busy_before - cpu - wrk_cpu
    replaced = len(pids - server.pids())
    result.update(
        requests_per_s=round(result["requests_per_s"], 1),
        cpu_seconds=round(cpu, 2),
        cpu_ms_per_1k_requests=round(1e6 * cpu / max(result["requests"], 1), 1),
        workers=2,
        duration_s=seconds,
        warmup_requests=warmup,
        wrk_cpu_seconds=round(wrk_cpu, 2),
        # CPU the rest of the machine used meanwhile (other processes, some kernel time): near 0 when idle
        other_cpu_seconds=round(others, 2),
        processes_replaced_during_run=replaced,  # their CPU time is missing from cpu_seconds
    )
    return result


def bench_ours(
    settings: Settings, versions: list[str], lua: Path, args: argparse.Namespace
) -> dict[str, Any]:
    name = settings.load_spec().registered_model_name
    stable, canary = versions[-2], versions[-1]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "MLOPS_HOME": str(settings.home),
        "MLOPS_DATASET_SPEC": str(settings.dataset_spec_path),
    }
    command = [str(BIN / "mlops"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    command += ["--version", stable, "--reset"]
    with started(command, env, args.logs / "ours.log") as server:
        server.wait_ready(f"{base}/v2/health/ready")
        token = (settings.serving_dir / "admin_token").read_text().strip()
        http("PUT", f"{base}/admin/traffic", {"version": canary, "canary_percent": 10}, token)
        deadline = time.monotonic() + 30
        while True:
            report = http("GET", f"{base}/admin/traffic", token=token)
            if report["status"]["applied"] and len(report["status"]["workers"]) == 2:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the canary split was not applied by both workers: {report}")
            time.sleep(0.2)
        server.wait_settled()
        url = f"{base}/v1/models/{name}:predict"
        warmup = wrk(url, lua, args.warmup, args)["requests"]
        time.sleep(1.5)  # the inference log's writer flushes every 0.5 s
        logged_before = count_lines(settings.inference_log_dir)
        result = measure(server, url, lua, args.duration, args, warm=False)
        result["warmup_requests"] = warmup
        metrics = http("GET", f"{base}/metrics")
    logged = count_lines(settings.inference_log_dir) - logged_before  # after a clean stop: all flushed
    per_version = requests_per_version(metrics, name)
    result.update(
        traffic_split=report["status"]["traffic"],
        inference_log_records_during_run=logged,
        inference_log_matches_requests=abs(logged - result["requests"]) <= args.connections,
        metrics_requests_per_version=per_version,
        metrics_canary_share=round(per_version.get(canary, 0) / max(sum(per_version.values()), 1), 3),
        metrics_show_both_versions=all(per_version.get(v, 0) > 0 for v in (stable, canary)),
        notes=(
            f"mlops serve --workers 2 on 127.0.0.1: validation, canary split (v{stable} 90 % / v{canary} "
            "10 % set by PUT /admin/traffic), Prometheus metrics and inference log all on; the log "
            "record count is over the measured run (wrk counts only completed responses, so up to "
            "`connections` more may be logged); the metrics counts include the warm-up"
        ),
    )
    return result


def count_lines(folder: Path) -> int:
    return sum(count_file_lines(path) for path in folder.rglob("*.jsonl"))


def count_file_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def requests_per_version(metrics: str, name: str) -> dict[str, int]:
    """`mlops_requests_total` summed over protocols, per model version."""
    counts: dict[str, int] = {}
    for line in metrics.splitlines():
        if line.startswith("mlops_requests_total{") and f'model_name="{name}"' in line:
            version = re.search(r'model_version="([^"]+)"', line).group(1)  # type: ignore[union-attr]
            counts[version] = counts.get(version, 0) + int(float(line.rsplit(" ", 1)[1]))
    return counts


def bench_kserve(name: str, artifact: Path, lua: Path, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    command = [sys.executable, str(PEERS / "kserve_server.py"), "--model_path", str(artifact)]
    command += ["--model_name", name, "--http_port", str(port), "--grpc_port", str(free_port())]
    command += ["--workers", "2"]
    log_path = args.logs / "kserve.log"
    with started(command, dict(os.environ), log_path) as server:
        server.wait_ready(f"http://127.0.0.1:{port}/v2/health/ready")
        server.wait_settled()
        lines_before = count_file_lines(log_path)
        result = measure(
            server, f"http://127.0.0.1:{port}/v1/models/{name}:predict", lua, args.duration, args
        )
    served = result["warmup_requests"] + result["requests"]
    result["log_lines_per_request"] = round((count_file_lines(log_path) - lines_before) / max(served, 1), 2)
    result["binds"] = "0.0.0.0 (REST and gRPC; KServe 0.21 has no option for another address)"
    result["notes"] = (
        "KServe 0.21 ModelServer(workers=2) at its defaults: REST binds 0.0.0.0 (traffic sent to "
        f"127.0.0.1 only), gRPC server on, {result['log_lines_per_request']} log lines per request "
        "(access log, latency line, 2 trace lines) written to a file"
    )
    return result


def bench_fastapi(name: str, artifact: Path, lua: Path, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    command = [sys.executable, str(PEERS / "fastapi_server.py"), "--port", str(port), "--workers", "2"]
    with started(command, {**os.environ, "MODEL_PATH": str(artifact)}, args.logs / "fastapi.log") as server:
        server.wait_ready(f"http://127.0.0.1:{port}/ready")
        server.wait_settled()
        result = measure(
            server, f"http://127.0.0.1:{port}/v1/models/{name}:predict", lua, args.duration, args
        )
    result["notes"] = (
        "one FastAPI route (orjson in and out), uvicorn --workers 2 on 127.0.0.1: no validation, "
        "metrics or logging; `mlops serve` answers inference below FastAPI's routing (bare ASGI), "
        "so this is a reference for FastAPI's own cost, not a ceiling for ours"
    )
    return result


def bench_mlflow(settings: Settings, version: str, lua: Path, args: argparse.Namespace) -> dict[str, Any]:
    name = settings.load_spec().registered_model_name
    port = free_port()
    seconds = min(args.duration, args.mlflow_duration)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # it runs `uvicorn` from PATH
    }
    command = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{name}/{version}"]
    command += ["--env-manager", "local", "--workers", "2", "-h", "127.0.0.1", "-p", str(port)]
    with started(command, env, args.logs / "mlflow.log") as server:
        server.wait_ready(f"http://127.0.0.1:{port}/ping")
        server.wait_settled()
        result = measure(server, f"http://127.0.0.1:{port}/invocations", lua, seconds, args)
    result["notes"] = (
        f"mlflow models serve --env-manager local --workers 2 on 127.0.0.1 ({seconds} s run: it is slow)"
    )
    return result


# -- the batch path, in-process


def batch_path(settings: Settings, artifact: Path, rows: int = 1_000_000) -> dict[str, Any]:
    """Rows/s of `ScoringModel.predict_proba` on a large frame, and of the server's V2 path."""
    import numpy as np
    import orjson
    import pandas as pd
    import torch

    from mlops_platform.lib.model_artifact import load_artifact
    from mlops_platform.serving.revisions import load_revision
    from mlops_platform.serving.validation import RequestValidator

    spec = settings.load_spec()
    source = pd.read_csv(spec.source.path)[spec.features.all]
    frame = source.sample(n=rows, replace=True, random_state=0).reset_index(drop=True)
    model = load_artifact(artifact)
    encoder = model.encoder
    model.predict_proba(frame.iloc[:65_536])  # warm the TorchScript executor

    def rows_per_s(batch: int, step: Any) -> int:
        started_at = time.perf_counter()
        for start in range(0, rows, batch):
            step(frame.iloc[start : start + batch])
        return round(rows / (time.perf_counter() - started_at))

    def module(part: pd.DataFrame) -> None:
        numeric = torch.from_numpy(encoder.numeric_array(part))
        categorical = torch.from_numpy(encoder.category_indices(part))
        started_at = time.perf_counter()
        with torch.no_grad():
            model.module.predict_proba(numeric, categorical)
        module_seconds.append(time.perf_counter() - started_at)

    module_seconds: list[float] = []
    rows_per_s(65_536, module)
    threads = torch.get_num_threads()
    result: dict[str, Any] = {"rows": rows, "torch_threads": threads}
    for label, count in ((f"{threads}_threads", threads), ("1_thread", 1)):
        torch.set_num_threads(count)
        result[f"scoring_model_predict_proba_rows_per_s_torch_{label}"] = {
            f"batch_{batch}": rows_per_s(batch, model.predict_proba) for batch in (65_536, 8_192, 1_000)
        }
    torch.set_num_threads(threads)
    result["parts_at_batch_65536_rows_per_s"] = {
        "numeric_array": rows_per_s(65_536, encoder.numeric_array),
        "category_indices": rows_per_s(65_536, encoder.category_indices),
        "torchscript_module": round(rows / sum(module_seconds)),
    }

    # The server's V2 path: JSON body -> validation -> Revision.predict_proba, 10,000 rows a request.
    per_request, requests = 10_000, 20
    validator = RequestValidator(spec, max_rows=per_request)
    revision = load_revision(spec.registered_model_name, "benchmark", artifact)
    bodies = []
    for k in range(requests):
        part = frame.iloc[k * per_request : (k + 1) * per_request]
        inputs = []
        for column in spec.features.all:
            is_numeric = column in spec.features.numeric
            data = [None if isinstance(v, float) and np.isnan(v) else v for v in part[column].tolist()]
            datatype = "INT64" if is_numeric else "BYTES"
            inputs.append({"name": column, "shape": [per_request], "datatype": datatype, "data": data})
        bodies.append(orjson.dumps({"inputs": inputs}))
    revision.predict_proba(validator.v2_batch(orjson.loads(bodies[0])))
    seconds = np.zeros(3)
    for body in bodies:
        t0 = time.perf_counter()
        parsed = orjson.loads(body)
        t1 = time.perf_counter()
        features = validator.v2_batch(parsed)
        t2 = time.perf_counter()
        revision.predict_proba(features)
        seconds += (t1 - t0, t2 - t1, time.perf_counter() - t2)
    total = per_request * requests
    result["v2_path"] = {
        "rows_per_request": per_request,
        "rows": total,
        "rows_per_s": round(total / seconds.sum()),
        "parts_rows_per_s": {
            "orjson_loads": round(total / seconds[0]),
            "request_validator_v2_batch": round(total / seconds[1]),
            "revision_predict_proba": round(total / seconds[2]),
        },
    }
    return result


# -- report


def markdown_table(servers: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| server | requests/s | p50 ms | p90 ms | p99 ms | errors | CPU ms / 1k requests |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    labels = {
        "ours": "`mlops serve` (validation, canary, metrics, inference log)",
        "kserve": "KServe 0.21 `ModelServer` (defaults)",
        "fastapi": "bare FastAPI route (no validation, metrics or log)",
        "mlflow": "`mlflow models serve`",
    }
    for key, r in servers.items():
        lines.append(
            f"| {labels[key]} | {r['requests_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['errors']} | {r['cpu_ms_per_1k_requests']:,.0f} |"
        )
    return "\n".join(lines)


def batch_summary(batch: dict[str, Any]) -> str:
    threads = batch["torch_threads"]
    scoring = batch[f"scoring_model_predict_proba_rows_per_s_torch_{threads}_threads"]
    single = batch["scoring_model_predict_proba_rows_per_s_torch_1_thread"]
    return (
        f"Batch path, in-process ({batch['rows']:,} rows): `ScoringModel.predict_proba` "
        f"{scoring['batch_65536']:,} rows/s in 65,536-row batches ({single['batch_65536']:,} with one torch "
        f"thread), {scoring['batch_1000']:,} rows/s in 1,000-row batches; the server's V2 path "
        f"(validation + scoring, {batch['v2_path']['rows_per_request']:,} rows a request) "
        f"{batch['v2_path']['rows_per_s']:,} rows/s."
    )


def machine() -> dict[str, Any]:
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "wrk": (wrk_version.stdout or wrk_version.stderr).splitlines()[0].strip(),
        **{name: version(name) for name in ("torch", "kserve", "mlflow", "fastapi", "uvicorn")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=20, help="seconds of each measured wrk run")
    parser.add_argument("--mlflow-duration", type=int, default=10, help="at most this long for mlflow (slow)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of wrk before each measured run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip", action="append", default=[], choices=[*SERVERS, "batch"])
    parser.add_argument("--home", type=Path, help="data directory with the registry (default: a fresh one)")
    parser.add_argument("--logs", type=Path, help="keep the servers' logs here (default: discarded)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="serving-bench-") as scratch:
        args.scratch = Path(scratch)
        args.logs = args.logs or args.scratch
        args.logs.mkdir(parents=True, exist_ok=True)
        home = (args.home or args.scratch / "home").resolve()
        settings = Settings(home=home, dataset_spec_path=shipped_spec_path())
        name = settings.load_spec().registered_model_name
        versions = ensure_versions(settings)
        artifact = fetch_artifact(settings.tracking_uri, name, versions[-2], settings.serving_dir / "models")
        v1 = lua_script(args.scratch, "v1", {"instances": [ROW]})
        records = lua_script(args.scratch, "records", {"dataframe_records": [ROW]})

        servers: dict[str, dict[str, Any]] = {}
        for key in SERVERS:
            if key in args.skip:
                continue
            print(f"benchmarking {key} ...", flush=True)
            if key == "ours":
                servers[key] = bench_ours(settings, versions, v1, args)
            elif key == "kserve":
                servers[key] = bench_kserve(name, artifact, v1, args)
            elif key == "fastapi":
                servers[key] = bench_fastapi(name, artifact, v1, args)
            else:
                servers[key] = bench_mlflow(settings, versions[-2], records, args)
        batch = None if "batch" in args.skip else batch_path(settings, artifact)

    ours = servers.get("ours")
    kserve = servers.get("kserve")
    result: dict[str, Any] = {
        "benchmark": "online serving, single-row requests over loopback",
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "load": {
            "tool": "wrk",
            "threads": args.threads,
            "connections": args.connections,
            "warmup_s": args.warmup,
            "request": "one Adult row, V1 {'instances': [row]} (mlflow: {'dataframe_records': [row]})",
            "note": "wrk runs on the same cores as the servers",
        },
        "model": {"name": name, "versions": versions, "peers_serve_version": versions[-2]},
        "servers": servers,
    }
    for peer in ("kserve", "mlflow", "fastapi"):
        if ours and peer in servers:
            result[f"ours_vs_{peer}_rps"] = round(ours["requests_per_s"] / servers[peer]["requests_per_s"], 2)
    if ours and kserve:
        result["target"] = {
            "target_rps_ratio_vs_kserve": TARGET_RPS_RATIO,
            "target_p99_ms": TARGET_P99_MS,
            "met": result["ours_vs_kserve_rps"] >= TARGET_RPS_RATIO and ours["p99_ms"] <= TARGET_P99_MS,
        }
    if batch:
        result["batch_path"] = batch
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print()
    print(markdown_table(servers))
    if batch:
        print()
        print(batch_summary(batch))


if __name__ == "__main__":
    main()
