"""Gauges in Prometheus' text format, one file per writer, for a scrape to pick up.

The pattern of node_exporter's textfile collector: a process that is not scraped (a Dagster
sensor or asset) writes `<name>.prom` atomically into a folder, and whatever is scraped reads the
folder's `*.prom` files. The model server appends them to its `/metrics`; on Kubernetes,
node_exporter's `--collector.textfile.directory` (or a sidecar) reads the same folder.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEXTFILE_FOLDER = "metrics"  # under MLOPS_HOME
DRIFT_FILE = "drift.prom"


def textfile_dir(home: Path) -> Path:
    """The folder of `*.prom` files under a data directory (`MLOPS_HOME/metrics`)."""
    return Path(home) / TEXTFILE_FOLDER


@dataclass(frozen=True)
class Gauge:
    """One gauge sample with its family's name and help."""

    name: str
    documentation: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


class _Gauges:
    """A collector of fixed samples (no multiprocess values: a writer may run under a server's
    `PROMETHEUS_MULTIPROC_DIR`)."""

    def __init__(self, gauges: Sequence[Gauge]) -> None:
        self.gauges = gauges

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        families: dict[str, GaugeMetricFamily] = {}
        for gauge in self.gauges:
            family = families.get(gauge.name)
            if family is None:
                family = families[gauge.name] = GaugeMetricFamily(
                    gauge.name, gauge.documentation, labels=sorted(gauge.labels)
                )
            family.add_metric([gauge.labels[k] for k in sorted(gauge.labels)], gauge.value)
        yield from families.values()


def write_gauges(path: Path, gauges: Sequence[Gauge]) -> Path:
    """Replace the text file `path` (ending in `.prom`) with `gauges`, in one rename: a scrape
    never reads half a file."""
    from prometheus_client import CollectorRegistry, write_to_textfile

    path = Path(path)
    if path.suffix != ".prom":
        raise ValueError(f"a metrics text file must end in .prom to be read, got {path}")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Gauges(gauges))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
    return path


def drift_gauges(
    model_name: str,
    drift_share: float,
    drifted_features: int,
    limit: float,
    measured_at: float | None = None,
) -> list[Gauge]:
    """The gauges of one drift measurement of `model_name`'s served traffic."""
    labels = {"model_name": model_name}
    return [
        Gauge("mlops_drift_share", "Share of the features that drifted", drift_share, labels),
        Gauge("mlops_drifted_features", "Features that drifted", drifted_features, labels),
        Gauge("mlops_drift_share_limit", "The spec's gates.max_drift_share", limit, labels),
        Gauge(
            "mlops_drift_measured_timestamp_seconds",
            "Unix time of the last drift measurement",
            time.time() if measured_at is None else measured_at,
            labels,
        ),
    ]


def write_drift_gauges(
    home: Path,
    model_name: str,
    drift_share: float,
    drifted_features: int,
    limit: float,
    measured_at: float | None = None,
) -> Path:
    """Write one drift measurement to `MLOPS_HOME/metrics/drift.prom`; the file's path."""
    return write_gauges(
        textfile_dir(home) / DRIFT_FILE,
        drift_gauges(model_name, drift_share, drifted_features, limit, measured_at),
    )


def read_textfiles(directory: Path) -> tuple[list[Any], list[str]]:
    """The metric families of the `*.prom` files in `directory` (families of one name merged
    across files), and a message per file that could not be read, which is left out."""
    from prometheus_client.parser import text_string_to_metric_families

    merged: dict[str, Any] = {}
    problems: list[str] = []
    paths = sorted(Path(directory).glob("*.prom")) if Path(directory).is_dir() else []
    for path in paths:
        try:
            families = list(text_string_to_metric_families(path.read_text()))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: {exc}")
            continue
        for family in families:
            known = merged.get(family.name)
            if known is None:
                merged[family.name] = family
            elif known.type == family.type:
                known.samples.extend(family.samples)
            else:
                problems.append(f"{path}: {family.name} is a {family.type} here, a {known.type} before")
    return list(merged.values()), problems
