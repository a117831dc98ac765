"""`mlops`: the platform's command line (init, check-spec, demo, simulate-batches, serve,
simulate-traffic, approve, reject, trace, audit, reproduce, status)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import yaml

from mlops_platform.lib.model_registry import mlflow_client
from mlops_platform.logs import configure_cli, log_error
from mlops_platform.settings import ENVIRONMENT, Settings


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows every option's default (unless its text already says it) or that it is
    required, and keeps the epilog's lines as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required and action.option_strings:
            return f"{text} (required)"
        if "default" in text or action.default is argparse.SUPPRESS or action.required:
            return text
        if not action.option_strings and action.nargs != "?":
            return text  # a required positional argument has no default
        if action.nargs == 0 and action.const is True:  # a store_true flag
            return f"{text} (default: off)"
        if action.default in (None, []):
            return f"{text} (default: none)"
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming the flag, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (YAML and validation errors span several)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (argparse names the flag on error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _cmd_simulate_batches(args: argparse.Namespace) -> int:
    from mlops_platform.datasets.simulation import Shift
    from mlops_platform.lib.landing import simulate_batches

    settings = Settings.from_env()
    spec = settings.load_spec()
    if args.labels:
        return _deliver_labels(settings)
    shifts = [Shift.parse(text) for text in args.shift]
    written = simulate_batches(
        spec,
        settings.landing_dir,
        days=args.days,
        shifts=shifts,
        reference=args.reference,
        rows_per_day=args.rows_per_day,
        sampling=args.sampling,
    )
    for path in written:
        print(f"landed {path}")
    if shifts:
        print("shifted: " + ", ".join(args.shift))
    return 0


def _deliver_labels(settings: Settings) -> int:
    from mlops_platform.lib.ground_truth import deliver_labels
    from mlops_platform.lib.inference_records import read_new_records

    logged, _ = read_new_records(settings.inference_log_dir, {})
    request_ids = logged["request_id"].tolist() if len(logged) else []
    written = deliver_labels(settings.load_spec(), request_ids, settings.ground_truth_dir)
    print(f"delivered labels: {written}" if written else "no served request is waiting for a label")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from mlops_platform.lib import warehouse
    from mlops_platform.lib.landing import landed_days

    settings = Settings.from_env()
    days = landed_days(settings.landing_dir)
    print(f"data directory   {settings.home}")
    print(f"dataset spec     {settings.dataset_spec_path}")
    print(f"landing files    {len(days)}" + (f" ({days[0]} .. {days[-1]})" if days else ""))
    if settings.warehouse_path.exists():
        tables = warehouse.query(
            settings.warehouse_path,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1",
        )["table_name"]
        for table in tables:
            rows = warehouse.query(settings.warehouse_path, f'SELECT count(*) AS n FROM "{table}"')["n"].iloc[
                0
            ]
            print(f"  {table:<22} {rows:>8} rows")
    _print_registry(settings)
    return 0


def _print_registry(settings: Settings) -> None:
    name = settings.load_spec().registered_model_name
    client = mlflow_client(settings.tracking_uri)
    versions = client.search_model_versions(f"name='{name}'") if client.search_registered_models() else []
    print(f"registered model {name}: {len(versions)} version(s)")
    for found in sorted(versions, key=lambda v: int(v.version)):
        v = client.get_model_version(name, found.version)  # search results carry no aliases
        aliases = ", ".join(v.aliases) or "-"
        print(f"  v{v.version:<4} aliases {aliases:<22} roc_auc {v.tags.get('metric.roc_auc', '?')}")


def _cmd_serve(args: argparse.Namespace) -> int:
    from mlops_platform.serving.server import run_server

    run_server(
        Settings.from_env(),
        host=args.host,
        port=args.port,
        workers=args.workers,
        version=args.version,
        alias=args.alias,
        reset=args.reset,
    )
    return 0


def _cmd_simulate_traffic(args: argparse.Namespace) -> int:
    import json

    from mlops_platform.datasets.simulation import Shift
    from mlops_platform.lib.traffic import held_out_instances, send_traffic

    settings = Settings.from_env()
    spec = settings.load_spec()
    shifts = [Shift.parse(text) for text in args.shift]
    instances = held_out_instances(spec, args.rows, shifts)
    url = args.url or settings.serving_url
    print(
        f"sending {args.rate:g} requests/s for {args.duration:g} s to {url} "
        f"({len(instances)} held-out rows{', shifted: ' + ', '.join(args.shift) if shifts else ''})",
        flush=True,
    )
    summary = send_traffic(
        url, spec.registered_model_name, instances, args.rate, args.duration, args.concurrency
    ).summary()
    print(json.dumps(summary, indent=2))
    return 0 if summary["statuses"].get("200", 0) == summary["sent"] else 1


def _cmd_init(args: argparse.Namespace) -> int:
    from mlops_platform.datasets.inference import write_spec

    output, inferred = write_spec(
        Path(args.csv),
        args.label,
        Path(args.output) if args.output else None,
        force=args.force,
        positive_class=args.positive_class,
        sensitive=args.sensitive,
        name=args.name,
    )
    found = [
        f"{inferred.rows:,} rows",
        f"label {inferred.label} (positive class {inferred.positive_class!r})",
        f"{len(inferred.numeric)} numeric and {len(inferred.categorical)} categorical features",
    ]
    if inferred.id_column:
        found.append(f"id {inferred.id_column}")
    if inferred.timestamp_column:
        found.append(f"timestamp {inferred.timestamp_column}")
    print(f"wrote {output}: " + ", ".join(found))
    print(f"next: review it, `mlops check-spec {output}`, then MLOPS_DATASET_SPEC={output.resolve()}")
    return 0


def _cmd_check_spec(args: argparse.Namespace) -> int:
    from mlops_platform.datasets.check import check_spec

    path = Path(args.path) if args.path else Settings.from_env().dataset_spec_path
    if path.is_dir():
        raise ValueError(f"{path} is a folder: name the spec file (a .yaml) in it")
    problems = check_spec(path, args.sample_rows)
    for problem in problems:
        print(problem)
    if problems:
        return 2
    print(f"ok: {path} fits its source (header and the first {args.sample_rows:,} rows)")
    return 0


def _cmd_decide(args: argparse.Namespace) -> int:
    from mlops_platform.governance.approvals import record_decision

    made, where = record_decision(Settings.from_env(), args.version, args.decision, args.by, args.reason)
    print(f"v{args.version} {made.decision} by {made.by} at {made.at}; recorded in {where}")
    return 0


def _cmd_trace(args: argparse.Namespace) -> int:
    import json

    from mlops_platform.governance.trace import render, trace

    found = trace(Settings.from_env(), args.request_id)
    print(json.dumps(found, indent=2, default=str) if args.json else render(found))
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from mlops_platform.governance.audit import as_json, audit, render

    events = audit(Settings.from_env(), args.model)
    print(as_json(events) if args.json else render(events))
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from mlops_platform.governance.reproduce import run_reproduce

    return run_reproduce(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from mlops_platform.demo import DemoOptions, run_demo

    return run_demo(
        DemoOptions(
            batches=args.batches, drifted_days=args.drifted_days, rate=args.rate, wait_seconds=args.wait
        )
    )


def build_parser() -> argparse.ArgumentParser:
    width = max(len(name) for name, _, _ in ENVIRONMENT)
    parser = _Parser(
        prog="mlops",
        description=__doc__,
        formatter_class=_HelpFormatter,
        epilog="environment variables:\n"
        + "\n".join(
            f"  {name:<{width}}  {meaning} ({default})".replace("`", "")
            for name, default, meaning in ENVIRONMENT
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = sub.add_parser(
        "init",
        formatter_class=_HelpFormatter,
        help="infer a commented dataset spec from your CSV: types, ranges, domains, sizes for its rows",
        description="Infer a complete, commented dataset spec from a CSV (bring your own dataset).\n"
        "Header names must be lower-case SQL identifiers; only empty cells count as missing.",
    )
    init.add_argument(
        "csv", metavar="DATA.csv", help="the CSV (.csv, .csv.gz or .csv.bz2), UTF-8, with a header"
    )
    init.add_argument("--label", required=True, metavar="COLUMN", help="the column to predict (two values)")
    init.add_argument(
        "--positive-class",
        metavar="VALUE",
        help="the label value that is the positive class (default: 1 of 0/1, yes of yes/no, ...; "
        "else the minority class)",
    )
    init.add_argument(
        "--sensitive",
        action="append",
        default=[],
        metavar="COLUMN",
        help="a column the fairness report groups by (numeric ones get bins at quantiles); repeat the "
        "flag for more: --sensitive sex --sensitive age",
    )
    init.add_argument(
        "--name", help="the dataset's name, a lower-case identifier (default: the file name's stem)"
    )
    init.add_argument(
        "-o",
        "--output",
        metavar="SPEC.yaml",
        help="where to write the spec (default: <stem>.yaml beside the CSV; source.path is written "
        "relative to it)",
    )
    init.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    init.set_defaults(func=_cmd_init)

    check = sub.add_parser(
        "check-spec",
        formatter_class=_HelpFormatter,
        help="check a dataset spec against its source data, listing every problem at once",
        description="Check a spec against its source's header and first rows: missing and undeclared\n"
        "columns, types, empty cells, ranges, domains. Exit 0 when clean, 2 with the problems.",
    )
    check.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="the spec (default: MLOPS_DATASET_SPEC, else the shipped adult.yaml)",
    )
    check.add_argument(
        "--sample-rows", type=_positive_int, default=10_000, metavar="N", help="rows of the source read"
    )
    check.set_defaults(func=_cmd_check_spec)

    demo = sub.add_parser(
        "demo",
        formatter_class=_HelpFormatter,
        help="the whole lifecycle on embedded defaults: data, v1, serving, drift, retrain, canary to v2",
    )
    demo.add_argument(
        "--batches", type=int, default=3, help="daily batches landed before the first model (default 3)"
    )
    demo.add_argument(
        "--drifted-days", type=int, default=3, help="days landed with the spec's demo_drift (default 3)"
    )
    demo.add_argument("--rate", type=float, default=100.0, help="client requests per second (default 100)")
    demo.add_argument(
        "--wait", type=float, default=900.0, help="longest wait for any one step of the platform, seconds"
    )
    demo.set_defaults(func=_cmd_demo)

    sim = sub.add_parser(
        "simulate-batches",
        formatter_class=_HelpFormatter,
        help="write the next daily landing files from the demo source",
    )
    sim.add_argument("--days", type=int, default=1, help="how many days to land (default 1)")
    sim.add_argument("--reference", action="store_true", help="land the whole reference period instead")
    sim.add_argument(
        "--rows-per-day",
        type=_positive_int,
        metavar="N",
        help="rows per landed day (default: the spec's simulation.rows_per_day); may exceed the "
        "source: days the source cannot hold are drawn from it with replacement",
    )
    sim.add_argument(
        "--sampling",
        choices=["auto", "sequential", "resample"],
        help="override simulation.sampling (default: the spec's): slices of the shuffled source "
        "(sequential), rows drawn with replacement and numeric values jittered (resample), or slices "
        "while the source lasts (auto)",
    )
    sim.add_argument(
        "--labels",
        action="store_true",
        help="instead: deliver the ground truth of requests served so far (for live_performance)",
    )
    sim.add_argument(
        "--shift",
        action="append",
        default=[],
        metavar="COLUMN=CHANGE",
        help="shift a column: NUM=+15, NUM=-5, CAT=VALUE or CAT=VALUE:0.8 (repeatable)",
    )
    sim.set_defaults(func=_cmd_simulate_batches)

    serve = sub.add_parser(
        "serve",
        formatter_class=_HelpFormatter,
        help="the model server and local canary gateway (KServe V1/V2 protocols, Prometheus metrics)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on")
    serve.add_argument("--workers", type=int, default=2, help="uvicorn worker processes (default 2)")
    which = serve.add_mutually_exclusive_group()
    which.add_argument("--version", help="registry version to roll out at start (default: see --alias)")
    which.add_argument("--alias", help="registry alias to roll out at start (default: champion, if any)")
    serve.add_argument(
        "--reset", action="store_true", help="drop the traffic state of the last run instead of resuming it"
    )
    serve.set_defaults(func=_cmd_serve)

    traffic = sub.add_parser(
        "simulate-traffic",
        formatter_class=_HelpFormatter,
        help="send real requests to the model server from held-out rows",
    )
    traffic.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    traffic.add_argument("--duration", type=float, default=30.0, help="seconds (default 30)")
    traffic.add_argument("--url", help="server URL (default MLOPS_SERVING_URL, http://127.0.0.1:8080)")
    traffic.add_argument("--rows", type=int, default=5000, help="held-out rows to draw from (default 5000)")
    traffic.add_argument("--concurrency", type=int, default=4, help="client threads (default 4)")
    traffic.add_argument(
        "--shift",
        action="append",
        default=[],
        metavar="COLUMN=CHANGE",
        help="shift a column like simulate-batches: NUM=+15, CAT=VALUE[:FRACTION] (repeatable)",
    )
    traffic.set_defaults(func=_cmd_simulate_traffic)

    for decision, verb in (("approved", "approve"), ("rejected", "reject")):
        decide = sub.add_parser(
            verb,
            formatter_class=_HelpFormatter,
            help=f"{verb} a registered version for production (the spec's deployment.require_approval)",
            description=f"Record that a person {decision} a model version, on the MLflow model version "
            "(approval.* tags)\nand in the Dagster instance; a deploy_model run waiting for it goes on "
            "(approved) or fails (rejected).",
        )
        decide.add_argument("version", metavar="VERSION", help="the registered version number")
        decide.add_argument("--by", required=True, metavar="NAME", help="who decides")
        decide.add_argument("--reason", required=True, metavar="TEXT", help="why, in one line")
        decide.set_defaults(func=_cmd_decide, decision=decision)

    trace_cmd = sub.add_parser(
        "trace",
        formatter_class=_HelpFormatter,
        help="one served prediction's history: inputs, model version, gates, approval, runs, landed data",
        description="From a request id (the x-request-id of a response, or the server log) to the whole\n"
        "chain: the logged inputs and output, the model version and its stable/canary role, its\n"
        "MLflow run, metrics, gates and approval, the Dagster run that trained it, and the training\n"
        "set's data version with the landed days and their landing files' sha256.",
    )
    trace_cmd.add_argument("request_id", metavar="REQUEST_ID", help="the request's x-request-id")
    trace_cmd.add_argument("--json", action="store_true", help="print JSON instead of text")
    trace_cmd.set_defaults(func=_cmd_trace)

    audit_cmd = sub.add_parser(
        "audit",
        formatter_class=_HelpFormatter,
        help="every registration, gate verdict, approval, rollout step, promotion and rollback, in order",
        description="The audit trail of a model, oldest first, with each event's actor (sensor, schedule,\n"
        "user) and reason, read from the MLflow registry and the Dagster instance (DAGSTER_HOME,\n"
        "else $MLOPS_HOME/dagster).",
    )
    audit_cmd.add_argument("--model", metavar="NAME", help="registered model (default: the spec's)")
    audit_cmd.add_argument("--json", action="store_true", help="print JSON instead of text")
    audit_cmd.set_defaults(func=_cmd_audit)

    reproduce = sub.add_parser(
        "reproduce",
        formatter_class=_HelpFormatter,
        help="rebuild a registered version from its landing files and compare its test metrics",
        description="Check the version's landing files against their recorded sha256, rebuild its\n"
        "training set in a scratch data directory with the real data pipeline, retrain on CPU with\n"
        "the recorded parameters and seed, and compare every test metric (tolerance 1e-6).\n"
        "Exit code 0: reproduced; 1: a metric differs; 2: it could not be reproduced.",
    )
    reproduce.add_argument("version", metavar="VERSION", help="the registered version number, e.g. 3")
    reproduce.add_argument("--json", action="store_true", help="print JSON instead of text")
    reproduce.add_argument(
        "--workdir",
        type=Path,
        metavar="DIR",
        help="keep the scratch data directory in this new or empty folder (default: a temporary one)",
    )
    reproduce.set_defaults(func=_cmd_reproduce)

    status = sub.add_parser(
        "status", formatter_class=_HelpFormatter, help="what has landed and what the warehouse holds"
    )
    status.set_defaults(func=_cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keeps stdout to our lines
    try:
        configure_cli()
        code = args.func(args)
    except (ValueError, OSError, LookupError, yaml.YAMLError) as exc:
        log_error(args.command, _one_line(exc))
        return 2
    if args.command == "demo":
        print(f"\ndone in {time.monotonic() - started:.0f} s (DAGSTER_HOME={os.environ.get('DAGSTER_HOME')})")
    return code


def read_env_file(path: Path) -> None:
    """Set the variables of a `.env` file that are not set yet, as dg and dagster commands read
    the one in the folder they run in (the repository root's puts the data in `.mlops/`)."""
    if path.is_file():
        from dotenv import load_dotenv

        load_dotenv(path, override=False)


def run() -> NoReturn:
    """The `mlops` command: `main` with the current folder's `.env` read first."""
    read_env_file(Path.cwd() / ".env")
    sys.exit(main())


if __name__ == "__main__":
    run()
