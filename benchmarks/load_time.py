"""How long loading the code location takes: `dagster definitions validate -m mlops_platform.definitions`.

Every Dagster step process and every CLI call loads the code location, so this is paid
again and again. The peer is a trivial one-asset module, which measures Dagster's own
CLI cost on this machine. Beside it, the location alone: a fresh interpreter that imports
`mlops_platform.definitions` and builds the Definitions (what a step process pays on top of
Python's start). Results go to benchmarks/results/load_time.json.

    .venv/bin/python benchmarks/load_time.py [--repeat 5]
"""

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "load_time.json"
BUILD = "from mlops_platform.definitions import build_definitions; build_definitions().get_repository_def()"
TRIVIAL = (
    "import dagster as dg\n\n\n@dg.asset\ndef one():\n    return 1\n\n\ndefs = dg.Definitions(assets=[one])\n"
)


def _time(command: list[str], env: dict[str, str], cwd: str, repeat: int) -> list[float]:
    subprocess.run(command, env=env, cwd=cwd, check=True, capture_output=True)  # warm: manifest, caches
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, env=env, cwd=cwd, check=True, capture_output=True)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    dagster = str(Path(sys.executable).parent / "dagster")
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "MLOPS_HOME": os.environ.get("MLOPS_HOME", f"{scratch}/home")}
        env.setdefault("DAGSTER_HOME", scratch)
        Path(scratch, "trivial_location.py").write_text(TRIVIAL)
        ours = _time(
            [dagster, "definitions", "validate", "-m", "mlops_platform.definitions"],
            env,
            scratch,
            args.repeat,
        )
        alone = _time([sys.executable, "-c", BUILD], env, scratch, args.repeat)
        peer = _time(
            [dagster, "definitions", "validate", "-m", "trivial_location"], env, scratch, args.repeat
        )
    result = {
        "benchmark": "dagster definitions validate",
        "date": dt.date.today().isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "repeat": args.repeat,
        "mlops_platform_seconds": {"median": statistics.median(ours), "all": ours},
        "trivial_location_seconds": {"median": statistics.median(peer), "all": peer},
        "overhead_over_trivial_seconds": statistics.median(ours) - statistics.median(peer),
        "import_and_build_seconds": {"median": statistics.median(alone), "all": alone},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
