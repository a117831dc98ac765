"""How long the whole demo takes: `mlops demo` in a fresh data directory, now and at a baseline.

`mlops demo` is the README's second command: it lands the shipped data, runs the data
pipeline, trains, registers, rolls out behind a canary, serves traffic, detects drift and
retrains. This script runs it in a fresh `MLOPS_HOME` and `DAGSTER_HOME` (with the
repository's `dagster.yaml`) and a free port for the model server, for the working tree and,
with `--baseline REF`, for that git revision too (checked out into a temporary worktree and
put first on `PYTHONPATH`, same virtual environment), one after the other, `--repeat` times
each, and writes the wall times and the tree's peak RSS to benchmarks/results/demo.json.

    .venv/bin/python benchmarks/demo.py [--baseline REF] [--repeat 1] [--output PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "demo.json"
MLOPS = Path(sys.executable).parent / "mlops"


def _commit(tree: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tree, check=True, capture_output=True, text=True
    ).stdout.strip()


def _tree_rss(root: psutil.Process) -> int:
    total = 0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_demo(tree: Path, scratch: Path, timeout: float) -> dict[str, float]:
    """One `mlops demo` with the code of `tree`; its wall time and peak tree RSS."""
    home = scratch / "home"
    dagster_home = scratch / "dagster_home"
    dagster_home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_"))},
        "MLOPS_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "PYTHONPATH": str(tree),
        "MLOPS_SERVING_URL": f"http://127.0.0.1:{_free_port()}",  # a server still stopping keeps its port
    }
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(MLOPS), "demo"], cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(process.pid)
        while not done.wait(0.5):
            try:
                peak = max(peak, _tree_rss(root))
            except psutil.Error:
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tail: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        tail = [*tail[-40:], line.rstrip()]
    code = process.wait(timeout=timeout)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"mlops demo failed ({code}) for {tree}:\n" + "\n".join(tail))
    return {"wall_s": round(wall, 1), "peak_tree_rss_gb": round(peak / 1e9, 2)}


def measure(label: str, tree: Path, repeat: int, timeout: float) -> dict[str, object]:
    runs = []
    for i in range(repeat):
        with tempfile.TemporaryDirectory(prefix=f"mlops-demo-{label}-") as scratch:
            runs.append(run_demo(tree, Path(scratch), timeout))
        print(f"{label} run {i + 1}/{repeat}: {runs[-1]}", flush=True)
    return {
        "commit": _commit(tree),
        "runs": runs,
        "median_wall_s": statistics.median(r["wall_s"] for r in runs),
        "median_peak_tree_rss_gb": statistics.median(r["peak_tree_rss_gb"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", help="a git revision to time the same way (e.g. a release tag)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (default 1)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run (default 1800)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = parser.parse_args()
    result: dict[str, object] = {
        "benchmark": "mlops demo, fresh data directory",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "working_tree": measure("working-tree", REPO, args.repeat, args.timeout),
    }
    if args.baseline:
        with tempfile.TemporaryDirectory(prefix="mlops-demo-baseline-") as folder:
            worktree = Path(folder) / "tree"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(worktree), args.baseline], cwd=REPO, check=True
            )
            try:
                result["baseline"] = {
                    "ref": args.baseline,
                    **measure("baseline", worktree, args.repeat, args.timeout),
                }
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=REPO, check=False)
        now, then = result["working_tree"]["median_wall_s"], result["baseline"]["median_wall_s"]
        result["wall_ratio_working_tree_to_baseline"] = round(now / then, 3)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
