"""The platform at size: the data pipeline over N rows, a one-day increment on top, and a retrain.

For each size N (default 1 M and 10 M rows), in a fresh data directory (`MLOPS_HOME` and
`DAGSTER_HOME` in a temporary folder, `dagster.yaml` copied in as `make dagster-home` does),
every phase runs as its own process, the way a user runs it:

1. land: `mlops simulate-batches --rows-per-day N/days --days DAYS`
2. pipeline: `dagster job execute -m mlops_platform.definitions -j data_pipeline` over those days
   (partition range tags): ingestion, gates, dbt features, Feast apply and online window,
   training set
3. land_increment: `mlops simulate-batches --rows-per-day INCREMENT --days 1`, the next day
4. increment: `data_pipeline` for that day only, on top of N rows of history
5. retrain: `dagster job execute -m mlops_platform.definitions -j retrain_model` (training set, training,
   evaluation, fairness, gates, registration); `--epochs`/`--batch-size` set `trained_model`'s
   run config, otherwise the spec's defaults hold

Measured per phase: wall time of the process, the run's own wall time (RUN_START to its end in
the event log), and the peak RSS of the whole process tree (the CLI process and everything it
forks: step processes, dbt), sampled with psutil every `--interval` seconds and summed over the
tree. Sums of RSS count pages shared between a parent and a forked child twice, so the tree
figure is an upper bound; the kernel's exact high-water mark of the largest single process
(`wait4` rusage) is recorded beside it. Per step, from the run's event log (STEP_START and
STEP_SUCCESS/FAILURE/SKIPPED timestamps in the instance's storage): wall = end - start, peak
RSS = the highest tree sample taken while the step ran. With the default in-process executor
the steps run one after another inside the CLI process, so a step's peak includes what earlier
steps left allocated. Training throughput (rows/s per epoch) is read from `trained_model`'s
metadata or its MLflow run when recorded there, else derived from the MLflow timestamps of the
per-epoch losses (train rows / time between two epochs' logs, which includes the validation
pass); epoch 1 has no start mark and is left out.

Targets (judged on the largest size, stated for 10 M): the pipeline <= 5 min and <= 4 GB peak
RSS; a 100 k-row day on top of the history <= 60 s; training >= 300 k rows/s per epoch; memory
flat: every step's peak RSS at the largest size <= 1.5 x its peak at the smallest.

Results go to benchmarks/results/scale.json (`--output`) after every phase, and a Markdown table
next to it (.md). Progress streams to stdout; each phase's full output goes to a log folder.

    .venv/bin/python benchmarks/scale.py [--rows 1M,10M] [--days 10] [--increment-rows 100000]
        [--epochs N] [--batch-size N] [--timeout 3600] [--output PATH] [--workdir DIR] [--keep-homes]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "scale.json"
BIN = Path(sys.executable).parent
DAGSTER_YAML = REPO / "dagster.yaml"
PACKAGES = ("dagster", "dagster-dbt", "duckdb", "feast", "torch", "mlflow", "pandas", "pyarrow")
# Variables that would send the fresh home's state somewhere else (a shared MLflow server).
DROPPED_ENV = (
    "MLOPS_MLFLOW_TRACKING_URI",
    "MLOPS_MLFLOW_ARTIFACT_ROOT",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
)
BENCHMARK_TAG = "mlops/benchmark"
GB = 1e9
MB = 1e6

PIPELINE_MAX_S = 300.0
PIPELINE_MAX_RSS = 4 * GB
INCREMENT_MAX_S = 60.0
TRAINING_MIN_ROWS_PER_S = 300_000.0
MEMORY_GROWTH_MAX = 1.5
TARGET_ROWS, TARGET_BASE_ROWS = 10_000_000, 1_000_000

STEP_LINE = re.compile(r" - (\S+) - (STEP_START|STEP_SUCCESS|STEP_FAILURE|STEP_SKIPPED) - (.*)$")
RUN_LINE = re.compile(r" - (RUN_START|RUN_SUCCESS|RUN_FAILURE) - (.*)$")
ERROR_LINE = re.compile(r" - ERROR - \S+ - \S+ - (.*)$")
LANDED_LINE = re.compile(r"landed .*?(\d{4}-\d{2}-\d{2})\.csv\s*$")


# -- sizes and formatting


def parse_rows(text: str) -> list[int]:
    """`1M,10M`, `200k`, `100000,1000000`: row counts, smallest first."""
    sizes = []
    for part in text.split(","):
        part = part.strip().lower().replace("_", "")
        scale = {"k": 1_000, "m": 1_000_000}.get(part[-1:], 1)
        number = part[:-1] if scale > 1 else part
        try:
            value = int(float(number) * scale)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not a row count (e.g. 200000, 200k, 1M)") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"row counts must be at least 1, got {part!r}")
        sizes.append(value)
    return sorted(set(sizes))


def rows_label(rows: int) -> str:
    if rows >= 1_000_000 and rows % 100_000 == 0:
        return f"{rows / 1_000_000:g} M"
    if rows >= 1_000 and rows % 100 == 0:
        return f"{rows / 1_000:g} k"
    return f"{rows:,}"


def gb(value: float | None) -> str:
    return "-" if value is None else f"{value / GB:.2f} GB"


def mb(value: float | None) -> str:
    return "-" if value is None else f"{value / MB:,.0f}"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


class Progress:
    """`[  12 s] message` lines on stdout, seconds since the benchmark started."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.0f} s] {message}", flush=True)


# -- the machine


def machine_info() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": model,
        "cpus_logical": psutil.cpu_count(logical=True),
        "cpus_physical": psutil.cpu_count(logical=False),
        "memory_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def package_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    found["dbt"] = dbt_version()
    return found


def dbt_version() -> str | None:
    """dbt-core's version from the dbt the platform runs (its own environment)."""
    from mlops_platform.settings import default_dbt_executable

    executable = os.environ.get("MLOPS_DBT_EXECUTABLE") or default_dbt_executable()
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"installed:\s*(\S+)", out)
    return match.group(1) if match else None


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


# -- one measured process


@dataclass
class Sample:
    time: float  # time.time(), the clock of the event log
    rss: int  # summed over the process tree


@dataclass
class Measured:
    """One process tree from start to exit: wall time, RSS samples and what it printed."""

    command: list[str]
    returncode: int | None
    timed_out: bool
    started: float
    ended: float
    samples: list[Sample]
    peak_rss: int
    peak_processes: list[dict[str, Any]]
    max_single_process_rss: int | None
    cpu_s: float | None  # the tree's user + system CPU (the root and every descendant it reaped)
    other_cpu_s: float  # CPU the rest of the machine used meanwhile: near 0 on an idle machine
    harness_cpu_s: float  # this process's own CPU (sampling, reading output)
    tail: list[str]

    @property
    def wall_s(self) -> float:
        return self.ended - self.started


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (guest time is already inside user)."""
    t = psutil.cpu_times()
    return sum(getattr(t, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))


def own_cpu_s() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_rss(processes: list[psutil.Process]) -> tuple[int, list[tuple[psutil.Process, int]]]:
    each = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            each.append((process, process.memory_info().rss))
    return sum(rss for _, rss in each), each


def describe(each: list[tuple[psutil.Process, int]]) -> list[dict[str, Any]]:
    """The processes of a peak sample, largest first: pid, name, the start of the command line, RSS."""
    described = []
    for process, rss in sorted(each, key=lambda pair: -pair[1]):
        try:
            command = " ".join(
                Path(part).name if i == 0 else part for i, part in enumerate(process.cmdline())
            )
        except psutil.Error:
            command = "?"
        described.append({"pid": process.pid, "command": command[:120], "rss_bytes": rss})
    return described


def alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop_tree(pid: int, grace_s: float = 10.0) -> tuple[int | None, Any]:
    """SIGTERM the process group of child `pid` and every descendant, SIGKILL what is left after
    `grace_s`; reaps the child and returns its wait status and rusage."""
    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    reaped: tuple[int | None, Any] | None = None
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        for process in descendants:
            with contextlib.suppress(psutil.Error):
                process.send_signal(sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if reaped is None:
                try:
                    done, status, usage = os.wait4(pid, os.WNOHANG)
                except ChildProcessError:
                    done, status, usage = pid, None, None
                if done:
                    reaped = (status, usage)
            descendants = [process for process in descendants if alive(process)]
            if reaped is not None and not descendants:
                return reaped
            time.sleep(0.1)
    if reaped is None:
        _, status, usage = os.wait4(pid, 0)
        reaped = (status, usage)
    return reaped


def run_measured(
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    timeout_s: float,
    interval_s: float,
    on_line: Callable[[str], None],
    on_tick: Callable[[float, int, int], None],
) -> Measured:
    """Run `command` in its own session, sampling its tree's RSS until it exits or times out."""
    tail: deque[str] = deque(maxlen=400)
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        started = time.time()
        begun = time.monotonic()
        busy_before, own_before = machine_busy_s(), own_cpu_s()
        proc = subprocess.Popen(
            command,
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,
        )

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                log.flush()
                tail.append(line.rstrip("\n"))
                on_line(line.rstrip("\n"))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        root = psutil.Process(proc.pid)
        samples: list[Sample] = []
        peak, peak_processes = 0, []
        timed_out, usage, status = False, None, None
        try:
            while True:
                now = time.time()
                total, each = tree_rss(tree(root))
                if each:
                    samples.append(Sample(now, total))
                    if total > peak:
                        peak, peak_processes = total, describe(each)
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                elapsed = time.monotonic() - begun
                on_tick(elapsed, total, peak)
                if elapsed > timeout_s:
                    timed_out = True
                    status, usage = stop_tree(proc.pid)
                    break
                time.sleep(interval_s)
        except BaseException:
            stop_tree(proc.pid)
            raise
        ended = time.time()
        busy, own = machine_busy_s() - busy_before, own_cpu_s() - own_before
        proc.returncode = os.waitstatus_to_exitcode(status) if status is not None else None
        cpu = usage.ru_utime + usage.ru_stime if usage is not None else None
        reader.join(timeout=10)
        if proc.stdout is not None:
            with contextlib.suppress(OSError):
                proc.stdout.close()
    return Measured(
        command=command,
        returncode=proc.returncode,
        timed_out=timed_out,
        started=started,
        ended=ended,
        samples=samples,
        peak_rss=peak,
        peak_processes=peak_processes,
        max_single_process_rss=usage.ru_maxrss * 1024 if usage is not None else None,
        cpu_s=cpu,
        other_cpu_s=max(0.0, busy - own - (cpu or 0.0)),
        harness_cpu_s=own,
        tail=list(tail),
    )


# -- the run in the event log


@contextlib.contextmanager
def instance_at(dagster_home: Path) -> Iterator[Any]:
    """The Dagster instance of `dagster_home` (its dagster.yaml reads DAGSTER_HOME from the environment)."""
    import dagster as dg

    before = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        yield instance
    finally:
        instance.dispose()
        if before is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = before


def metadata_numbers(metadata: dict[str, Any]) -> dict[str, float | int]:
    numbers = {}
    for key, entry in metadata.items():
        value = getattr(entry, "value", None)
        if isinstance(value, int | float) and not isinstance(value, bool):
            numbers[key] = value
    return numbers


def error_text(data: Any) -> str | None:
    """An error's message, the messages of its causes, then the innermost stack's last frames."""
    error = getattr(data, "error", None)
    if error is None:
        return None
    if not hasattr(error, "stack"):
        return excerpt(str(error))
    lines, innermost = [error.message.strip()], error
    while innermost.cause is not None:
        innermost = innermost.cause
        lines.append(f"caused by {innermost.message.strip()}")
    lines.append("".join(innermost.stack[-3:]).rstrip())
    return excerpt("\n".join(lines), 3000)


def excerpt(text: str, limit: int = 2000) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit // 4] + "\n...\n" + text[-limit * 3 // 4 :]


def read_run(dagster_home: Path, tag: str) -> dict[str, Any] | None:
    """The run tagged `tag`: status, run wall time, step spans, materializations, failed checks."""
    from dagster import DagsterEventType as Kind
    from dagster._core.storage.dagster_run import RunsFilter

    step_end = {Kind.STEP_SUCCESS: "success", Kind.STEP_FAILURE: "failure", Kind.STEP_SKIPPED: "skipped"}
    run_ends = (Kind.RUN_SUCCESS, Kind.RUN_FAILURE, Kind.RUN_CANCELED)

    with instance_at(dagster_home) as instance:
        runs = instance.get_runs(filters=RunsFilter(tags={BENCHMARK_TAG: tag}), limit=1)
        if not runs:
            return None
        run = runs[0]
        steps: dict[str, dict[str, Any]] = {}
        assets: dict[str, dict[str, Any]] = {}
        failed_checks, run_errors = [], []
        run_start = run_end = None
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None:
                continue
            kind, data = event.event_type, event.event_specific_data
            if kind == Kind.RUN_START:
                run_start = entry.timestamp
            elif kind in run_ends:
                run_end = entry.timestamp
                if (text := error_text(data)) is not None:
                    run_errors.append(text)
            elif kind == Kind.STEP_START and entry.step_key:
                steps.setdefault(entry.step_key, {"start": entry.timestamp})
            elif kind in step_end and entry.step_key:
                step = steps.setdefault(entry.step_key, {"start": entry.timestamp})
                step.update(end=entry.timestamp, status=step_end[kind])
                if kind == Kind.STEP_FAILURE:
                    step["error"] = error_text(data)
            elif kind == Kind.ASSET_MATERIALIZATION:
                materialization = data.materialization
                record = assets.setdefault(
                    materialization.asset_key.to_user_string(), {"materializations": 0}
                )
                record["materializations"] += 1
                record["metadata"] = metadata_numbers(materialization.metadata)
                for key in ("mlflow_run_id",):
                    if key in materialization.metadata:
                        record[key] = str(materialization.metadata[key].value)
                for key, entry_value in materialization.metadata.items():
                    if "rows_per_s" in key or "throughput" in key:
                        record.setdefault("throughput", {})[key] = getattr(entry_value, "value", None)
            elif kind == Kind.ASSET_CHECK_EVALUATION and not data.passed:
                failed_checks.append(
                    {
                        "asset": data.asset_key.to_user_string(),
                        "check": data.check_name,
                        "description": getattr(data, "description", None),
                    }
                )
        return {
            "run_id": run.run_id,
            "status": run.status.value,
            "start": run_start,
            "end": run_end,
            "wall_s": run_end - run_start if run_start and run_end else None,
            "steps": steps,
            "assets": assets,
            "failed_checks": failed_checks,
            "errors": run_errors,
        }


def step_peak(samples: list[Sample], start: float, end: float) -> int | None:
    """The highest tree RSS sampled while a step ran; for a step shorter than the sampling
    interval, the samples just before and after it."""
    inside = [s.rss for s in samples if start <= s.time <= end]
    if inside:
        return max(inside)
    before = [s.rss for s in samples if s.time < start][-1:]
    after = [s.rss for s in samples if s.time > end][:1]
    return max(before + after) if before or after else None


def attribute_steps(run: dict[str, Any], measured: Measured) -> list[dict[str, Any]]:
    """Steps in the order they started, with wall time and peak tree RSS."""
    rows = []
    for key, step in sorted(run["steps"].items(), key=lambda pair: pair[1]["start"]):
        end = step.get("end", measured.ended)
        rows.append(
            {
                "step": key,
                "status": step.get("status", "unfinished"),
                "start_offset_s": round(step["start"] - measured.started, 3),
                "wall_s": round(end - step["start"], 3),
                "peak_rss_bytes": step_peak(measured.samples, step["start"], end),
                **({"error": step["error"]} if step.get("error") else {}),
            }
        )
    return rows


# -- training throughput


def training_throughput(home: Path, run: dict[str, Any]) -> dict[str, Any] | None:
    """Rows/s per epoch of the retrain's `trained_model`: from its metadata or MLflow run, when
    recorded there, else from the MLflow timestamps of the per-epoch losses."""
    model = run["assets"].get("trained_model")
    if model is None:
        return None
    found: dict[str, Any] = {"mlflow_run_id": model.get("mlflow_run_id"), **model.get("metadata", {})}
    if model.get("throughput"):
        found["from_metadata"] = model["throughput"]
    database = home / "mlflow" / "mlflow.db"
    if not found["mlflow_run_id"] or not database.exists():
        return found
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{database}")
        mlflow_run = client.get_run(found["mlflow_run_id"])
        train_rows = int(mlflow_run.data.params.get("train_rows", 0)) or None
        found["train_rows"] = train_rows
        recorded = [key for key in mlflow_run.data.metrics if "rows_per_s" in key]
        if recorded:
            history = client.get_metric_history(found["mlflow_run_id"], recorded[0])
            per_epoch = [m.value for m in sorted(history, key=lambda m: m.step)]
            found.update(source=f"mlflow metric {recorded[0]}", rows_per_s_per_epoch=per_epoch)
        elif train_rows:
            history = sorted(
                client.get_metric_history(found["mlflow_run_id"], "train_loss"), key=lambda m: m.step
            )
            gaps = [(b.timestamp - a.timestamp) / 1000 for a, b in itertools.pairwise(history)]
            found.update(
                source="train rows / time between per-epoch train_loss logs in MLflow (epochs 2..n)",
                epoch_seconds=gaps,
                rows_per_s_per_epoch=[train_rows / gap for gap in gaps if gap > 0],
            )
    except Exception as exc:  # an optional reading: say why it is missing, never fail the run
        found["error"] = f"{type(exc).__name__}: {exc}"
    per_epoch = found.get("rows_per_s_per_epoch") or []
    if per_epoch:
        found.update(rows_per_s_median=statistics.median(per_epoch), rows_per_s_min=min(per_epoch))
    return found


# -- one size


@dataclass
class SizeRun:
    """Every phase of one size, in a fresh data directory."""

    rows: int
    args: argparse.Namespace
    progress: Progress
    logs: Path
    write: Callable[[], None]
    result: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.result.update(
            rows=self.rows, label=rows_label(self.rows), rows_increment=self.args.increment_rows, phases={}
        )

    def run(self) -> dict[str, Any]:
        args, rows = self.args, self.rows
        per_day = max(1, rows // args.days)
        base = Path(args.workdir) if args.workdir else None
        home = Path(tempfile.mkdtemp(prefix=f"mlops-scale-{rows}-", dir=base))
        dagster_home = home / "dagster"
        dagster_home.mkdir(parents=True)
        shutil.copy(DAGSTER_YAML, dagster_home / "dagster.yaml")
        env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
        env.update(MLOPS_HOME=str(home), DAGSTER_HOME=str(dagster_home), PYTHONUNBUFFERED="1")
        if args.executor:
            env["MLOPS_EXECUTOR"] = args.executor
        env["MLOPS_DATASET_SPEC"] = str(benchmark_spec(home, args.online_ttl_days))
        self.result.update(
            rows_per_day=per_day, rows_landed=per_day * args.days, home=str(home), failure=None
        )
        self.progress.say(f"== {rows_label(rows)} rows: {args.days} days x {per_day:,} rows, home {home}")
        try:
            self.phases(home, dagster_home, env, per_day)
        finally:
            self.result["disk_bytes"] = folder_bytes(home)
            if args.keep_homes:
                self.progress.say(f"kept {home}")
            else:
                shutil.rmtree(home, ignore_errors=True)
            self.write()
        return self.result

    def phases(self, home: Path, dagster_home: Path, env: dict[str, str], per_day: int) -> None:
        args, mlops, dagster = self.args, str(BIN / "mlops"), str(BIN / "dagster")
        land = [mlops, "simulate-batches", "--rows-per-day", str(per_day), "--days", str(args.days)]
        days = self.phase("land", land, env, dagster_home)
        if days is None:
            return
        if not days:
            self.fail("land", None, "simulate-batches printed no landed day")
            return
        if self.pipeline("pipeline", days[0], days[-1], env, dagster_home) is None:
            return
        increment = [mlops, "simulate-batches", "--rows-per-day", str(args.increment_rows), "--days", "1"]
        new_days = self.phase("land_increment", increment, env, dagster_home)
        if not new_days:
            if new_days is not None:
                self.fail("land_increment", None, "simulate-batches printed no landed day")
            return
        if self.pipeline("increment", new_days[0], new_days[-1], env, dagster_home) is None:
            return
        retrain = [dagster, "job", "execute", "-m", "mlops_platform.definitions", "-j", "retrain_model"]
        retrain += ["--tags", json.dumps({BENCHMARK_TAG: self.tag("retrain")})]
        training = {
            key: value
            for key, value in (("epochs", args.epochs), ("batch_size", args.batch_size))
            if value is not None
        }
        if training:
            config = self.logs / f"{self.rows}-retrain-config.json"
            config.write_text(json.dumps({"ops": {"trained_model": {"config": training}}}))
            retrain += ["-c", str(config)]
        run = self.phase("retrain", retrain, env, dagster_home, dagster_run=True)
        if run is not None:
            self.result["training"] = training_throughput(home, run)
            throughput = (self.result["training"] or {}).get("rows_per_s_median")
            if throughput:
                self.progress.say(f"   training: {throughput:,.0f} rows/s per epoch (median)")

    def tag(self, phase: str) -> str:
        return f"scale-{self.rows}-{phase}-{os.getpid()}"

    def pipeline(
        self, name: str, first: str, last: str, env: dict[str, str], dagster_home: Path
    ) -> dict[str, Any] | None:
        tags = {
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
            BENCHMARK_TAG: self.tag(name),
        }
        command = [
            str(BIN / "dagster"),
            "job",
            "execute",
            "-m",
            "mlops_platform.definitions",
            "-j",
            "data_pipeline",
        ]
        self.result["phases"].setdefault(name, {})["partitions"] = [first, last]
        return self.phase(name, [*command, "--tags", json.dumps(tags)], env, dagster_home, dagster_run=True)

    def phase(
        self,
        name: str,
        command: list[str],
        env: dict[str, str],
        dagster_home: Path,
        dagster_run: bool = False,
    ) -> Any:
        """Run one phase: the landed days (land phases) or the run (Dagster phases); None on failure."""
        label = f"{rows_label(self.rows)} {name}"
        self.progress.say(
            f"-- {label}: {' '.join(Path(command[0]).name if i == 0 else c for i, c in enumerate(command))}"
        )
        landed: list[str] = []
        state = {"step": None, "last_tick": 0.0}

        def on_line(line: str) -> None:
            if self.args.verbose:
                print(f"   | {line}", flush=True)
            if (match := LANDED_LINE.search(line)) is not None:
                landed.append(match.group(1))
                if not self.args.verbose:
                    print(f"   | {line.strip()}", flush=True)
            elif (match := STEP_LINE.search(line)) is not None:
                step, kind, message = match.groups()
                state["step"] = step if kind == "STEP_START" else None
                if not self.args.verbose and kind != "STEP_START":
                    self.progress.say(f"   {label}: {message[:200]}")
            elif (match := RUN_LINE.search(line)) is not None and not self.args.verbose:
                self.progress.say(f"   {label}: {match.group(1)}")
            elif (match := ERROR_LINE.search(line)) is not None and not self.args.verbose:
                print(f"   ! {match.group(1)[:300]}", flush=True)

        def on_tick(elapsed: float, rss: int, peak: int) -> None:
            if elapsed - state["last_tick"] >= self.args.heartbeat:
                state["last_tick"] = elapsed
                doing = f", in {state['step']}" if state["step"] else ""
                self.progress.say(f"   {label}: {elapsed:,.0f} s{doing}; tree RSS {gb(rss)}, peak {gb(peak)}")

        measured = run_measured(
            command,
            env,
            self.logs / f"{self.rows}-{name}.log",
            self.args.timeout,
            self.args.interval,
            on_line,
            on_tick,
        )
        record = self.result["phases"].setdefault(name, {})
        record.update(
            command=" ".join(command),
            returncode=measured.returncode,
            timed_out=measured.timed_out,
            wall_s=round(measured.wall_s, 3),
            peak_rss_bytes=measured.peak_rss,
            peak_processes=measured.peak_processes,
            max_single_process_rss_bytes=measured.max_single_process_rss,
            cpu_s=None if measured.cpu_s is None else round(measured.cpu_s, 2),
            other_cpu_s=round(measured.other_cpu_s, 2),
            harness_cpu_s=round(measured.harness_cpu_s, 2),
            samples=len(measured.samples),
            log=str(self.logs / f"{self.rows}-{name}.log"),
        )
        run = None
        if dagster_run:
            try:
                run = read_run(dagster_home, self.tag(name))
            except Exception as exc:  # the measurements above stand; say why the steps are missing
                record["event_log_error"] = f"{type(exc).__name__}: {exc}"
                self.progress.say(f"   {label}: could not read the run's event log: {exc}")
            if run is not None:
                record.update(
                    run_id=run["run_id"],
                    run_status=run["status"],
                    run_wall_s=round(run["wall_s"], 3) if run["wall_s"] else None,
                    steps=attribute_steps(run, measured),
                    assets=run["assets"],
                    failed_checks=run["failed_checks"],
                )
        ok = measured.returncode == 0 and not measured.timed_out
        if dagster_run:
            ok = ok and run is not None and run["status"] == "SUCCESS"
        record["ok"] = ok
        summary = f"{measured.wall_s:,.1f} s, peak tree RSS {gb(measured.peak_rss)}"
        if run is not None and run.get("wall_s"):
            summary += f" (run {run['wall_s']:,.1f} s)"
        self.progress.say(f"   {label}: {'done' if ok else 'FAILED'} in {summary}")
        if not ok:
            missing = None
            if dagster_run and run is None and measured.returncode == 0 and not measured.timed_out:
                missing = record.get("event_log_error") or f"no run tagged {self.tag(name)} in the instance"
            self.fail(name, measured, missing, run)
            return None
        self.write()
        return run if dagster_run else landed

    def fail(
        self, phase: str, measured: Measured | None, message: str | None, run: dict[str, Any] | None = None
    ) -> None:
        """Record why `phase` failed: the failed step and its error, a failed gate, a timeout, the output."""
        failure: dict[str, Any] = {"phase": phase, "step": None, "error": message}
        if measured is not None and measured.timed_out:
            failure["error"] = f"timed out after {self.args.timeout:g} s and was stopped"
        if run is not None:
            failed = [s for s in run["steps"].items() if s[1].get("status") == "failure"]
            if failed:
                failure["step"] = failed[0][0]
                failure["error"] = failure["error"] or failed[0][1].get("error")
            if run["failed_checks"]:
                failure["failed_checks"] = run["failed_checks"]
            if not failure["error"] and run["errors"]:
                failure["error"] = run["errors"][0]
            failure["run_id"] = run["run_id"]
        if not failure["error"] and measured is not None:
            failure["error"] = excerpt("\n".join(measured.tail[-40:]))
        self.result["failure"] = failure
        self.result["phases"].setdefault(phase, {})["ok"] = False
        where = f" in step {failure['step']}" if failure["step"] else ""
        self.progress.say(f"   {rows_label(self.rows)} {phase} failed{where}:")
        print("\n".join("     " + line for line in (failure["error"] or "").splitlines()[:20]), flush=True)
        self.write()


def folder_bytes(folder: Path) -> int:
    total = 0
    for path, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(path, name)).st_size
    return total


# -- targets and the table


def judged(size: dict[str, Any] | None, phase: str) -> dict[str, Any] | None:
    record = (size or {}).get("phases", {}).get(phase)
    return record if record and record.get("ok") else None


def evaluate(sizes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target against the largest size (10 M when measured), memory growth against the smallest (1 M)."""
    if not sizes:
        return []
    by_rows = {size["rows"]: size for size in sizes}
    large = by_rows.get(TARGET_ROWS) or sizes[-1]
    small = by_rows.get(TARGET_BASE_ROWS) or sizes[0]
    at = f"at {large['label']} rows"
    verdicts: list[dict[str, Any]] = []

    def limit(
        target: str, measured: float | None, bound: float, unit: str, higher_is_better: bool = False
    ) -> None:
        factor = None if measured is None else (measured / bound)
        met = None if factor is None else (factor >= 1 if higher_is_better else factor <= 1)
        verdicts.append(
            {
                "target": target,
                "rows": large["rows"],
                "limit": bound,
                "comparison": ">=" if higher_is_better else "<=",
                "unit": unit,
                "measured": measured,
                "factor": None if factor is None else round(factor, 3),
                "met": met,
            }
        )

    pipeline, increment = judged(large, "pipeline"), judged(large, "increment")
    limit(
        f"data_pipeline wall {at} (ingest, gates, features, online window, training set)",
        pipeline and pipeline["wall_s"],
        PIPELINE_MAX_S,
        "s",
    )
    limit(f"data_pipeline peak tree RSS {at}", pipeline and pipeline["peak_rss_bytes"], PIPELINE_MAX_RSS, "B")
    limit(
        f"data_pipeline wall of one {rows_label(large['rows_increment'])}-row day on {large['label']} rows",
        increment and increment["wall_s"],
        INCREMENT_MAX_S,
        "s",
    )
    training = large.get("training") or {}
    limit(
        f"training rows/s per epoch {at} (median over epochs)",
        training.get("rows_per_s_median"),
        TRAINING_MIN_ROWS_PER_S,
        "rows/s",
        higher_is_better=True,
    )
    if small is large:
        return verdicts
    for phase in ("pipeline", "increment", "retrain"):
        big_run, small_run = judged(large, phase), judged(small, phase)
        if not big_run or not small_run:
            verdicts.append(
                {
                    "target": f"memory flat, {phase}: {large['label']} vs {small['label']} rows",
                    "rows": large["rows"],
                    "measured": None,
                    "met": None,
                }
            )
            continue
        small_steps = {s["step"]: s.get("peak_rss_bytes") for s in small_run.get("steps", [])}
        ratios: dict[str, float | None] = {}
        for step in big_run.get("steps", []):
            before, after = small_steps.get(step["step"]), step.get("peak_rss_bytes")
            ratios[step["step"]] = round(after / before, 3) if before and after else None
        measured = {key: ratio for key, ratio in ratios.items() if ratio is not None}
        worst = max(measured, key=measured.__getitem__) if measured else None
        verdicts.append(
            {
                "target": f"memory flat, {phase}: every step's peak RSS {large['label']} / {small['label']}",
                "rows": large["rows"],
                "limit": MEMORY_GROWTH_MAX,
                "comparison": "<=",
                "unit": "ratio",
                "measured": measured[worst] if worst else None,
                "worst_step": worst,
                "steps": ratios,
                "factor": round(measured[worst] / MEMORY_GROWTH_MAX, 3) if worst else None,
                "met": measured[worst] <= MEMORY_GROWTH_MAX if worst else None,
            }
        )
    return verdicts


def shown(value: float | None, unit: str) -> str:
    if value is None:
        return "not measured"
    if unit == "B":
        return gb(value)
    if unit == "s":
        return f"{value:,.1f} s"
    if unit == "rows/s":
        return f"{value:,.0f} rows/s"
    return f"{value:.2f}"


def markdown(report: dict[str, Any]) -> str:
    machine, params = report["machine"], report["parameters"]
    sizes = report["sizes"]
    lines = [
        "# Scale benchmark",
        "",
        f"{report['date']}, commit {(report['git']['commit'] or '?')[:12]}"
        + (" (uncommitted changes)" if report["git"]["dirty"] else "")
        + f"; {machine['cpu_model']}, {machine['cpus_logical']} CPUs, "
        + f"{machine['memory_bytes'] / GB:.1f} GB RAM; "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v),
        "",
        f"Sizes {', '.join(rows_label(r) for r in params['rows'])} rows landed as {params['days']} days; "
        f"increment {params['increment_rows']:,} rows; executor {params['executor']}; "
        f"RSS summed over the process tree, sampled every {params['interval_s']} s.",
        "",
        "## Targets",
        "",
        "Judged on the largest size measured (the targets are stated for 10 M rows, memory growth for "
        "10 M against 1 M); walls are the whole process's, loading the code location included.",
        "",
        "| target | limit | measured | factor | |",
        "|---|---:|---:|---:|---|",
    ]
    for verdict in report["evaluation"]:
        if "limit" not in verdict:
            lines.append(f"| {verdict['target']} | | not measured | | - |")
            continue
        bound = f"{verdict['comparison']} {shown(verdict['limit'], verdict['unit'])}"
        factor = "-" if verdict.get("factor") is None else f"{verdict['factor']:.2f}x"
        met = {True: "met", False: "**missed**", None: "-"}[verdict["met"]]
        measured = shown(verdict["measured"], verdict["unit"])
        if verdict.get("worst_step"):
            measured += f" (worst: {verdict['worst_step']})"
        lines.append(f"| {verdict['target']} | {bound} | {measured} | {factor} | {met} |")
    lines += [
        "",
        "factor: measured / limit (a limit is met at <= 1, a minimum at >= 1).",
        "",
        "Phases: wall is the process's, run wall the run's own (RUN_START to its end in the event log); "
        "peak tree RSS is summed over the process tree, the largest process is the kernel's high-water "
        "mark of one process; CPU s is the tree's CPU time, other CPU s what the rest of the machine "
        "used meanwhile (near 0 on an idle machine).",
        "",
        "## Phases",
        "",
        "| rows | phase | wall s | run wall s | peak tree RSS | largest process (kernel) | CPU s | "
        "other CPU s | status |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for size in sizes:
        for name, phase in size["phases"].items():
            status = "ok" if phase.get("ok") else "timed out" if phase.get("timed_out") else "failed"
            status = status if "wall_s" in phase else "interrupted"
            lines.append(
                f"| {size['label']} | {name} | {seconds(phase.get('wall_s'))} "
                f"| {seconds(phase.get('run_wall_s'))} | {gb(phase.get('peak_rss_bytes'))} "
                f"| {gb(phase.get('max_single_process_rss_bytes'))} | {seconds(phase.get('cpu_s'))} "
                f"| {seconds(phase.get('other_cpu_s'))} | {status} |"
            )
    lines += ["", "## Steps", "", "Wall seconds and peak tree RSS (MB) while the step ran.", ""]
    header = "| phase | step | " + " | ".join(f"wall {s['label']}" for s in sizes)
    header += " | " + " | ".join(f"RSS {s['label']}" for s in sizes)
    header += " | RSS ratio |" if len(sizes) > 1 else " |"
    lines += [header, "|---|---|" + "---:|" * (2 * len(sizes) + (len(sizes) > 1))]
    for phase in ("pipeline", "increment", "retrain"):
        keys: list[str] = []
        for size in sizes:
            for step in size["phases"].get(phase, {}).get("steps", []):
                if step["step"] not in keys:
                    keys.append(step["step"])
        for key in keys:
            found = [
                next((s for s in size["phases"].get(phase, {}).get("steps", []) if s["step"] == key), {})
                for size in sizes
            ]
            row = f"| {phase} | {key} | " + " | ".join(seconds(s.get("wall_s")) for s in found)
            row += " | " + " | ".join(mb(s.get("peak_rss_bytes")) for s in found)
            if len(sizes) > 1:
                first, last = found[0].get("peak_rss_bytes"), found[-1].get("peak_rss_bytes")
                ratio = last / first if first and last else None
                over = " **over**" if ratio and ratio > MEMORY_GROWTH_MAX else ""
                row += " | - |" if ratio is None else f" | {ratio:.2f}{over} |"
            else:
                row += " |"
            lines.append(row)
    lines += [
        "",
        "## Training",
        "",
        "| rows | train rows | epochs | rows/s per epoch (median) | min | source |",
    ]
    lines.append("|---:|---:|---:|---:|---:|---|")
    for size in sizes:
        training = size.get("training") or {}
        lines.append(
            f"| {size['label']} | {training.get('train_rows') or '-'} | {training.get('epochs_run', '-')} "
            f"| {shown(training.get('rows_per_s_median'), 'rows/s')} "
            f"| {shown(training.get('rows_per_s_min'), 'rows/s')} "
            f"| {training.get('source') or training.get('error') or 'not recorded'} |"
        )
    failures = [size for size in sizes if size.get("failure")]
    if failures:
        lines += ["", "## Failures", ""]
        for size in failures:
            failure = size["failure"]
            step = f", step `{failure['step']}`" if failure.get("step") else ""
            lines.append(f"- {size['label']} rows, phase `{failure['phase']}`{step}:")
            lines += [
                "",
                "  ```",
                *("  " + line for line in (failure.get("error") or "").splitlines()[:16]),
                "  ```",
            ]
    if report.get("interrupted"):
        lines += ["", "Interrupted before every size finished."]
    return "\n".join(lines) + "\n"


# -- main


def interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def benchmark_spec(home: Path, online_ttl_days: int | None) -> Path:
    """The dataset spec of the run (`MLOPS_DATASET_SPEC`, else the shipped Adult spec), copied
    into the home with the benchmark's online window."""
    import yaml

    from mlops_platform.datasets.spec import load_spec, shipped_spec_path

    source = Path(os.environ.get("MLOPS_DATASET_SPEC") or shipped_spec_path())
    raw = yaml.safe_load(source.read_text())
    raw["source"]["path"] = str(load_spec(source).source.path)
    raw.setdefault("features", {})["online_ttl_days"] = online_ttl_days
    target = home / "benchmark_spec.yaml"
    target.write_text(yaml.safe_dump(raw, sort_keys=False))
    return target


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows",
        type=parse_rows,
        default=[1_000_000, 10_000_000],
        help="sizes, comma-separated (default 1M,10M)",
    )
    parser.add_argument("--days", type=int, default=10, help="days each size is landed as (default 10)")
    parser.add_argument(
        "--increment-rows", type=int, default=100_000, help="rows of the one-day increment (default 100000)"
    )
    parser.add_argument(
        "--online-ttl-days",
        type=lambda text: None if text == "none" else int(text),
        default=1,
        help="days of records the online store holds (features.online_ttl_days; 'none': all; default 1)",
    )
    parser.add_argument("--epochs", type=int, help="trained_model epochs (default: the spec's)")
    parser.add_argument("--batch-size", type=int, help="trained_model batch size (default: the spec's)")
    parser.add_argument(
        "--executor",
        choices=["in_process", "multiprocess"],
        help="MLOPS_EXECUTOR for the runs (default: as set in the environment, else in_process)",
    )
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="longest one phase may run, s (default 3600)"
    )
    parser.add_argument("--interval", type=float, default=0.2, help="RSS sampling interval, s (default 0.2)")
    parser.add_argument(
        "--heartbeat", type=float, default=30.0, help="progress line interval, s (default 30)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    parser.add_argument("--workdir", help="folder for the temporary data directories (default: the system's)")
    parser.add_argument("--logs", type=Path, help="folder for each phase's output (default: a temporary one)")
    parser.add_argument("--keep-homes", action="store_true", help="keep each size's data directory")
    parser.add_argument(
        "--stop-on-failure", action="store_true", help="skip the remaining sizes after a failure"
    )
    parser.add_argument("--verbose", action="store_true", help="echo every line the phases print")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.days < 1 or args.increment_rows < 1:
        raise SystemExit("--days and --increment-rows must be at least 1")
    if min(args.rows) < args.days:
        raise SystemExit(
            f"every size needs at least one row per day: {min(args.rows)} rows < {args.days} days"
        )
    if not (BIN / "dagster").exists() or not (BIN / "mlops").exists():
        raise SystemExit(f"no dagster or mlops beside {sys.executable}: run .venv/bin/python {__file__}")
    signal.signal(signal.SIGTERM, interrupted)  # `kill` stops the running phase's processes too
    progress = Progress()
    logs = args.logs or Path(tempfile.mkdtemp(prefix="mlops-scale-logs-", dir=args.workdir))
    logs.mkdir(parents=True, exist_ok=True)
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "benchmark": "scale: data_pipeline over N rows, a one-day increment on top, retrain_model",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "git": git_state(),
        "versions": package_versions(),
        "parameters": {
            "rows": args.rows,
            "days": args.days,
            "increment_rows": args.increment_rows,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "executor": args.executor or os.environ.get("MLOPS_EXECUTOR") or "in_process",
            "dataset_spec": os.environ.get("MLOPS_DATASET_SPEC") or "shipped adult.yaml",
            "online_ttl_days": args.online_ttl_days,
            "interval_s": args.interval,
            "timeout_s": args.timeout,
        },
        "targets": {
            "pipeline_max_s": PIPELINE_MAX_S,
            "pipeline_max_rss_bytes": PIPELINE_MAX_RSS,
            "increment_max_s": INCREMENT_MAX_S,
            "training_min_rows_per_s": TRAINING_MIN_ROWS_PER_S,
            "memory_growth_max": MEMORY_GROWTH_MAX,
            "stated_for_rows": [TARGET_BASE_ROWS, TARGET_ROWS],
        },
        "logs": str(logs),
        "sizes": [],
        "evaluation": [],
        "complete": False,
    }

    def write() -> None:
        report["evaluation"] = evaluate(report["sizes"])
        output.write_text(json.dumps(report, indent=2, default=str) + "\n")
        output.with_suffix(".md").write_text(markdown(report))

    progress.say(
        f"scale benchmark: {', '.join(rows_label(r) for r in args.rows)} rows; logs {logs}; results {output}"
    )
    try:
        for rows in args.rows:
            size = SizeRun(rows, args, progress, logs, write)
            report["sizes"].append(size.result)
            size.run()
            if size.result.get("failure") and args.stop_on_failure:
                break
        report["complete"] = all(not size.get("failure") for size in report["sizes"])
    except KeyboardInterrupt:
        report["interrupted"] = True
        progress.say("interrupted: the running phase was stopped")
    finally:
        write()
        progress.say(f"wrote {output} and {output.with_suffix('.md')}")
    print("\n" + markdown(report), flush=True)
    return 0 if report["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
