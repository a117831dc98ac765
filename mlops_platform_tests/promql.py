"""Metric names in PromQL expressions, in a text exposition, and in `deploy/prometheus`'s rules;
promtool, or a skip (a failure when MLOPS_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = REPO_ROOT / "deploy" / "prometheus"
DASHBOARD_DIR = REPO_ROOT / "deploy" / "grafana"

# identifiers that never name a metric
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
# keywords followed by a parenthesized list of label names (group_left and group_right may not be)
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
AGGREGATIONS = {
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
}

_TOKEN = re.compile(
    r"""
      (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<variable>\$\{[^}]*\}|\$\w+)
    | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![\w:]))
    | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<open>[(\[{])
    | (?P<close>[)\]}])
    | (?P<operator>=~|!~|!=|==|<=|>=|[-+*/%^<>=@,])
    | (?P<space>\s+|\#[^\n]*)
    """,
    re.VERBOSE,
)


def tokens(expr: str) -> list[tuple[str, str]]:
    """(kind, text) of each token, blanks and comments left out; ValueError on anything else."""
    found, position = [], 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"cannot read PromQL at {position}: {expr[position : position + 30]!r}")
        if match.lastgroup != "space":
            found.append((str(match.lastgroup), match.group()))
        position = match.end()
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: not functions, aggregations, keywords, label names
    (in `{}`, `by`/`without`/`on`/`ignoring`/`group_left`/`group_right` lists), string literals,
    durations, numbers or Grafana variables."""
    names: set[str] = set()
    found = tokens(expr)
    i = 0
    while i < len(found):
        kind, text = found[i]
        following = found[i + 1][1] if i + 1 < len(found) else None
        if kind == "open" and text in "{[":  # label matchers, ranges, subqueries: no metric names
            i = _closing(found, i) + 1
            continue
        if kind == "name":
            lowered = text.lower()
            if lowered in LABEL_LISTS:
                i = _closing(found, i + 1) + 1 if following == "(" else i + 1
                continue
            if lowered in KEYWORDS or following == "(" or (text in AGGREGATIONS and following in LABEL_LISTS):
                i += 1
                continue
            names.add(text)
        i += 1
    return names


def _closing(found: list[tuple[str, str]], start: int) -> int:
    """Index of the bracket that closes the one at `start`."""
    depth = 0
    for i in range(start, len(found)):
        kind = found[i][0]
        depth += kind == "open"
        depth -= kind == "close"
        if depth == 0:
            return i
    raise ValueError(f"unbalanced brackets in {' '.join(text for _, text in found)}")


def exposition_names(text: str) -> set[str]:
    """The sample names of a Prometheus text exposition (`_total`, `_bucket`, `_sum`, `_count`
    as PromQL sees them)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def rules() -> list[dict]:
    """Every rule of every group in `deploy/prometheus/*.yml`."""
    return [
        rule
        for path in rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def recording_rules() -> dict[str, str]:
    """Recorded name -> expression."""
    return {rule["record"]: rule["expr"] for rule in rules() if "record" in rule}


def available_names(exported: set[str]) -> set[str]:
    """`exported`, and each recording rule whose expression uses only names available (the rules
    it builds on included)."""
    available, recorded = set(exported), recording_rules()
    grew = True
    while grew:
        grew = False
        for name, expr in recorded.items():
            if name not in available and metric_names(expr) <= available:
                available.add(name)
                grew = True
    return available


def dashboard_panels(path: Path) -> list[dict]:
    """The panels of a dashboard, those nested in rows included."""
    import json

    panels = []
    for panel in json.loads(path.read_text())["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def require_promtool() -> str:
    """promtool's path; skips the test without it, or fails it when MLOPS_REQUIRE_SERVICES=1."""
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is not installed (Debian: apt-get install prometheus)"
        if os.environ.get("MLOPS_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " and MLOPS_REQUIRE_SERVICES=1")
        pytest.skip(message)
    return found
