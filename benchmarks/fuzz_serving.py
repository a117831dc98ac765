"""Fuzzing `mlops serve` at scale: 20,000 requests (by default) against the real server.

The same generators as `mlops_platform_tests/test_fuzz_serving.py`, ten times over: requests
generated from the server's OpenAPI document by schemathesis (positive and negative, V1, V2 and
the admin API) and a seeded generator of hostile bodies (wrong types, deep nesting, huge
numbers, NaN/Infinity tokens, unicode, wrong V2 datatypes and shapes, duplicate keys, empty
objects, non-JSON, odd Content-Types, malformed admin bodies). Every answer must be below 500,
and every 4xx JSON naming the field or the reason; afterwards the server must still be ready and
score a known row exactly as before. Small networks are trained and registered first (seconds).

Results go to benchmarks/results/fuzz_serving.json with the machine and the date.

    .venv/bin/python benchmarks/fuzz_serving.py [--requests 20000] [--seed 0] [--workers 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the test helpers: mlops_platform_tests

RESULTS = HERE / "results" / "fuzz_serving.json"
SCHEMA_SHARE = 0.35  # of the requests, generated from the OpenAPI document; the rest hostile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import httpx

    from mlops_platform.datasets.spec import shipped_spec_path
    from mlops_platform.settings import Settings
    from mlops_platform_tests.fuzz import MODEL, FuzzReport, hostile_requests, schema_cases, send_all
    from mlops_platform_tests.registry import register_version
    from mlops_platform_tests.serving import ROW, start_server

    home = Path(tempfile.mkdtemp(prefix="fuzz-serving-"))
    settings = Settings(home=home, dataset_spec_path=shipped_spec_path("adult"))
    for seed in (0, 1):
        register_version(settings, "good", seed=seed, alias="champion" if seed == 0 else None)
    server = start_server(settings, args.workers, "--version", "1")
    schema_total = int(args.requests * SCHEMA_SHARE)
    inference_each = schema_total * 4 // 10 // 2  # per mode, for V1 and V2
    versioned_each = schema_total // 10 // 2
    admin_each = schema_total // 10 // 2
    report = FuzzReport()
    started = time.monotonic()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            known = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [ROW]}).json()
            document = client.get("/openapi.json").json()
            schema_cases(
                document,
                server.url,
                server.token,
                {
                    "/v1/models/{model}:predict": inference_each,
                    "/v2/models/{model}/infer": inference_each,
                    "/v2/models/{model}/versions/{version}/infer": versioned_each,
                },
                report,
                seed=args.seed,
            )
            hostile = args.requests - report.sent - 4 * admin_each
            send_all(client, hostile_requests(args.seed, hostile, server.token), report)
            schema_cases(
                document,
                server.url,
                server.token,
                {"/admin/traffic": admin_each, "/admin/traffic/lease": admin_each},
                report,
                seed=args.seed,
            )
            report.seconds = time.monotonic() - started
            server.set_traffic("1", 100)
            ready = client.get("/v2/health/ready").json() == {"ready": True}
            again = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [ROW]}).json()
            same_answer = again["predictions"] == known["predictions"]
            metrics = client.get("/metrics").text
    finally:
        server.stop()
    server_error_lines = [
        line for line in metrics.splitlines() if line.startswith("mlops_server_errors_total{")
    ]
    result = {
        "benchmark": "fuzz_serving",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        },
        "versions": {p: version(p) for p in ("schemathesis", "hypothesis", "fastapi", "uvicorn", "orjson")},
        "server_workers": args.workers,
        "seed": args.seed,
        **report.summary(),
        "requests_per_s": round(report.sent / report.seconds, 1) if report.seconds else None,
        "after": {
            "ready": ready,
            "same_prediction_as_before": same_answer,
            "server_error_series": server_error_lines,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "families"}, indent=2))
    ok = report.server_errors == 0 and not report.problems and ready and same_answer
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
