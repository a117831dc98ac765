"""`mlops`: the platform's command line (demo, simulate-batches, status)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from mlops_platform.settings import Settings


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
    from mlops_platform.lib.landing import Shift, simulate_batches

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
    from mlflow import MlflowClient

    name = settings.load_spec().registered_model_name
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
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

    from mlops_platform.lib.landing import Shift
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from mlops_platform.demo import DemoOptions, run_demo

    return run_demo(
        DemoOptions(
            batches=args.batches, drifted_days=args.drifted_days, rate=args.rate, wait_seconds=args.wait
        )
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
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
        "--wait", type=float, default=900.0, help="longest wait for any one step of the platform (s)"
    )
    demo.set_defaults(func=_cmd_demo)

    sim = sub.add_parser("simulate-batches", help="write the next daily landing files from the demo source")
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
        help="override simulation.sampling: slices of the shuffled source (sequential), rows drawn "
        "with replacement and numeric values jittered (resample), or slices while the source "
        "lasts (auto)",
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
        "serve", help="the model server and local canary gateway (KServe V1/V2 protocols, Prometheus metrics)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=2, help="uvicorn worker processes (default 2)")
    which = serve.add_mutually_exclusive_group()
    which.add_argument("--version", help="registry version to roll out at start")
    which.add_argument("--alias", help="registry alias to roll out at start (default: champion, if any)")
    serve.add_argument(
        "--reset", action="store_true", help="drop the traffic state of the last run instead of resuming it"
    )
    serve.set_defaults(func=_cmd_serve)

    traffic = sub.add_parser(
        "simulate-traffic", help="send real requests to the model server from held-out rows"
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

    status = sub.add_parser("status", help="what has landed and what the warehouse holds")
    status.set_defaults(func=_cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    try:
        code = args.func(args)
    except (ValueError, FileNotFoundError, LookupError) as exc:
        print(f"mlops {args.command}: {exc}", file=sys.stderr)
        return 2
    if args.command == "demo":
        print(f"\ndone in {time.monotonic() - started:.0f} s (DAGSTER_HOME={os.environ.get('DAGSTER_HOME')})")
    return code


if __name__ == "__main__":
    sys.exit(main())
