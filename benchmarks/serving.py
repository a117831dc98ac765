"""Online serving throughput and latency: `mlops serve` against its peers, plus the batch path.

Every server runs the same TorchScript model with 2 workers on loopback and answers single-row
requests under concurrency, driven by `wrk -t2 -c32 --latency` (a Lua script POSTs one real
Adult row). Measured per server: requests/s, p50/p90/p99 latency, non-2xx and socket errors,
and the CPU seconds its whole process group used during the run (per 1,000 requests).

- ours: `mlops serve --workers 2` with everything on: request validation against the dataset
  spec, a canary split (version A rolled out, then `PUT /admin/traffic` sends 10 % to version
  B), Prometheus metrics and the inference log. After the run the benchmark checks that the
  inference log grew by about the number of requests and that /metrics counts both versions.
- mlflow: `mlflow models serve --env-manager local --workers 2` (`/invocations`, pandas).
- kserve: KServe's own Python `ModelServer` (benchmarks/peers/kserve_server.py), at its
  defaults: a latency log line per request, gRPC on, REST bound to 0.0.0.0.
- fastapi: a bare FastAPI route with no validation, metrics or logging (a ceiling reference).

The batch path is timed in-process: `ScoringModel.predict_proba` over a 1,000,000-row frame
in 65,536- and 1,000-row batches, and the server's V2 path (JSON body -> `RequestValidator.v2_batch`
-> `Revision.predict_proba`) at 10,000 rows a request.

The model versions come from the registry under `--home` (default: a fresh temporary data
directory); when it holds fewer than two versions, two small networks are trained on Adult
and registered first (about a minute). Results go to benchmarks/results/serving.json and a
Markdown table to stdout.

    .venv/bin/python benchmarks/serving.py [--duration 20] [--skip mlflow] [--home DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from mlops_platform.datasets.spec import shipped_spec_path
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
    from mlflow import MlflowClient

    from mlops_platform.lib.evaluation import choose_threshold
    from mlops_platform.lib.model_artifact import save_artifact
    from mlops_platform.lib.pyfunc_model import ARTIFACT_KEY, TorchScriptClassifier, pyfunc_requirements
    from mlops_platform.lib.training import predict_proba, train_model
    from mlops_platform.lib.training_params import TrainingParams

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
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    experiment = client.get_experiment_by_name("serving-benchmark")
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment("serving-benchmark", Path(settings.artifact_root).as_uri())
    )
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"benchmark-{seed}") as run:
        artifact = save_artifact(
            outcome.net, outcome.encoder, meta, settings.models_dir / run.info.run_id / "model.pt"
        )
        example = validation[spec.features.all].head(3).astype({n: "float64" for n in spec.features.numeric})
        logged = mlflow.pyfunc.log_model(
            name="model",
            python_model=TorchScriptClassifier(),
            artifacts={ARTIFACT_KEY: str(artifact)},
            input_example=example,
            pip_requirements=pyfunc_requirements(),
        )
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
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            time.sleep(0.25)
        raise TimeoutError(f"{url} not ready after {timeout:.0f} s; see {self.log_path}")

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


def measure(server: Server, url: str, script: Path, seconds: int, args: argparse.Namespace) -> dict[str, Any]:
    """A short warm-up run, then the measured run with the group's CPU time around it."""
    wrk(url, script, args.warmup, args)
    before = server.cpu_seconds()
    result = wrk(url, script, seconds, args)
    cpu = server.cpu_seconds() - before
    result.update(
        cpu_seconds=round(cpu, 2),
        cpu_ms_per_1k_requests=round(1e6 * cpu / max(result["requests"], 1), 1),
        duration_s=seconds,
        workers=2,
        requests_per_s=round(result["requests_per_s"], 1),
    )
    return result


# -- the servers


def bench_ours(settings: Settings, versions: list[str], lua: Path, args: argparse.Namespace) -> dict[str, Any]:
    name = settings.load_spec().registered_model_name
    stable, canary = versions[-2], versions[-1]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLOPS_HOME": str(settings.home), "MLOPS_DATASET_SPEC": str(settings.dataset_spec_path)}
    command = [str(BIN / "mlops"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    command += ["--version", stable, "--reset"]
    with started(command, env, args.scratch / "ours.log") as server:
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
        url = f"{base}/v1/models/{name}:predict"
        wrk(url, lua, args.warmup, args)
        time.sleep(1.5)  # the log writer flushes every 0.5 s
        logged_before = count_lines(settings.inference_log_dir)
        before = server.cpu_seconds()
        result = wrk(url, lua, args.duration, args)
        cpu = server.cpu_seconds() - before
        metrics = http("GET", f"{base}/metrics")
        split = report["status"]["traffic"]
    logged = count_lines(settings.inference_log_dir) - logged_before  # after a clean stop: all flushed
    per_version = requests_per_version(metrics, name)
    result.update(
        cpu_seconds=round(cpu, 2),
        cpu_ms_per_1k_requests=round(1e6 * cpu / max(result["requests"], 1), 1),
        duration_s=args.duration,
        workers=2,
        requests_per_s=round(result["requests_per_s"], 1),
        traffic_split=split,
        inference_log_records_during_run=logged,
        inference_log_matches_requests=abs(logged - result["requests"]) <= args.connections,
        metrics_requests_per_version=per_version,
        metrics_show_both_versions=all(per_version.get(v, 0) > 0 for v in (stable, canary)),
        notes=(
            f"mlops serve --workers 2 on 127.0.0.1: validation, canary split (v{stable} 90 % / v{canary} "
            "10 % via PUT /admin/traffic), Prometheus metrics and inference log all on; "
            "metrics counts include the warm-up"
        ),
    )
    return result


def count_lines(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*.jsonl"):
        with open(path, "rb") as handle:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda h=handle: h.read(1 << 20), b""))
    return total


def requests_per_version(metrics: str, name: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    pattern = rf'^mlops_requests_total{{(?=[^}}]*model_name="{re.escape(name)}")[^}}]*model_version="([^"]+)"'
    for found in re.finditer(pattern + r"[^}]*}\s+([\d.e+]+)$", metrics, re.MULTILINE):
        counts[found.group(1)] = counts.get(found.group(1), 0) + int(float(found.group(2)))
    return counts


def bench_kserve(name: str, artifact: Path, lua: Path, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    command = [sys.executable, str(PEERS / "kserve_server.py"), "--model_path", str(artifact)]
    command += ["--model_name", name, "--http_port", str(port), "--grpc_port", str(free_port())]
    command += ["--workers", "2"]
    log_path = args.scratch / "kserve.log"
    with started(command, dict(os.environ), log_path) as server:
        server.wait_ready(f"http://127.0.0.1:{port}/v2/health/ready")
        lines_before = count_file_lines(log_path)
        result = measure(server, f"http://127.0.0.1:{port}/v1/models/{name}:predict", lua, args.duration, args)
    log_lines = count_file_lines(log_path) - lines_before
    result["log_lines_per_request"] = round(log_lines / max(result["requests"], 1), 2)
    result["notes"] = (
        "kserve 0.21 ModelServer(workers=2), KServe defaults: REST binds 0.0.0.0 (no option for another "
        "address; traffic sent to 127.0.0.1 only), gRPC server on, "
        f"{result['log_lines_per_request']} log lines per request (counted over warm-up and run) to a file"
    )
    return result


def count_file_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def bench_fastapi(name: str, artifact: Path, lua: Path, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    command = [sys.executable, str(PEERS / "fastapi_server.py"), "--port", str(port), "--workers", "2"]
    with started(command, {**os.environ, "MODEL_PATH": str(artifact)}, args.scratch / "fastapi.log") as server:
        server.wait_ready(f"http://127.0.0.1:{port}/ready")
        result = measure(server, f"http://127.0.0.1:{port}/v1/models/{name}:predict", lua, args.duration, args)
    result["notes"] = "one FastAPI route, uvicorn --workers 2 on 127.0.0.1: no validation, metrics or logging"
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
    with started(command, env, args.scratch / "mlflow.log") as server:
        server.wait_ready(f"http://127.0.0.1:{port}/ping")
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

    def rows_per_s(batch: int, step: Any) -> float:
        started_at = time.perf_counter()
        for start in range(0, rows, batch):
            step(frame.iloc[start : start + batch])
        return round(rows / (time.perf_counter() - started_at))

    result: dict[str, Any] = {"rows": rows, "torch_threads": torch.get_num_threads()}
    for batch in (65_536, 1_000):
        result[f"scoring_model_rows_per_s_batch_{batch}"] = rows_per_s(batch, model.predict_proba)
    numeric = [torch.from_numpy(encoder.numeric_array(frame.iloc[s : s + 65_536])) for s in range(0, rows, 65_536)]
    categorical = [
        torch.from_numpy(encoder.category_indices(frame.iloc[s : s + 65_536])) for s in range(0, rows, 65_536)
    ]
    with torch.no_grad():
        started_at = time.perf_counter()
        for n, c in zip(numeric, categorical, strict=True):
            model.module.predict_proba(n, c)
        module_seconds = time.perf_counter() - started_at
    result["breakdown_batch_65536_rows_per_s"] = {
        "numeric_array": rows_per_s(65_536, encoder.numeric_array),
        "category_indices": rows_per_s(65_536, encoder.category_indices),
        "torchscript_module": round(rows / module_seconds),
    }

    # The server's V2 path: JSON body -> validation -> Revision.predict_proba, 10,000 rows a request.
    per_request, requests = 10_000, 20
    validator = RequestValidator(spec, max_rows=per_request)
    revision = load_revision(spec.registered_model_name, "bench", artifact)
    bodies = []
    for k in range(requests):
        part = frame.iloc[k * per_request : (k + 1) * per_request]
        inputs = []
        for column in spec.features.all:
            numeric_column = column in spec.features.numeric
            values = part[column].tolist() if numeric_column else part[column].astype(object).tolist()
            data = [None if isinstance(v, float) and np.isnan(v) else v for v in values]
            inputs.append(
                {
                    "name": column,
                    "shape": [per_request],
                    "datatype": "INT64" if numeric_column else "BYTES",
                    "data": data,
                }
            )
        bodies.append(orjson.dumps({"inputs": inputs}))
    revision.predict_proba(validator.v2_batch(orjson.loads(bodies[0])))
    parse = validate = score = 0.0
    for body in bodies:
        t0 = time.perf_counter()
        parsed = orjson.loads(body)
        t1 = time.perf_counter()
        features = validator.v2_batch(parsed)
        t2 = time.perf_counter()
        revision.predict_proba(features)
        t3 = time.perf_counter()
        parse, validate, score = parse + t1 - t0, validate + t2 - t1, score + t3 - t2
    total_rows = per_request * requests
    result["v2_path"] = {
        "rows_per_request": per_request,
        "rows": total_rows,
        "rows_per_s": round(total_rows / (parse + validate + score)),
        "orjson_parse_rows_per_s": round(total_rows / parse),
        "v2_batch_validation_rows_per_s": round(total_rows / validate),
        "revision_predict_proba_rows_per_s": round(total_rows / score),
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
        "fastapi": "bare FastAPI route (ceiling reference)",
        "mlflow": "`mlflow models serve`",
    }
    for key, r in servers.items():
        lines.append(
            f"| {labels[key]} | {r['requests_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['errors']} | {r['cpu_ms_per_1k_requests']:,.0f} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import torch

    version = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "wrk": (version.stdout or version.stderr).splitlines()[0].strip(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=20, help="seconds of each measured wrk run")
    parser.add_argument("--mlflow-duration", type=int, default=10, help="at most this long for mlflow (slow)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of wrk before each measured run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip", action="append", default=[], choices=[*SERVERS, "batch"])
    parser.add_argument("--home", type=Path, help="data directory with the registry (default: a fresh one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="serving-bench-") as scratch:
        args.scratch = Path(scratch)
        home = (args.home or args.scratch / "home").resolve()
        settings = Settings(home=home, dataset_spec_path=shipped_spec_path())
        name = settings.load_spec().registered_model_name
        versions = ensure_versions(settings)
        from mlops_platform.serving.revisions import fetch_artifact

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


if __name__ == "__main__":
    main()
