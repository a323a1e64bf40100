"""Read PromQL out of Grafana dashboards, and metric names out of PromQL and exposition text."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Names Prometheus itself attaches to every scrape target or alerting rule.
PROMETHEUS_BUILTINS = frozenset(
    {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS", "ALERTS_FOR_STATE"}
)

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
# An identifier not glued to a number (5m, 1e3) and not a label after a dot.
_IDENT = re.compile(r"(?<![\w.:])[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = frozenset(
    {
        "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
        "group_left", "group_right", "inf", "nan",
    }
)  # fmt: skip
_VARIABLE = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{|\s)")
_TYPE = re.compile(r"^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)")


def metric_names(expr: str) -> set[str]:
    """Return the metric names a PromQL expression selects (functions and labels excluded)."""
    text = _STRING.sub('""', expr)
    previous = None
    while previous != text:  # innermost first, so nested braces and brackets both go
        previous = text
        text = _BRACES.sub(" ", text)
        text = _BRACKETS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        if word.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue  # an operator keyword, or a function / aggregation call
        names.add(word)
    return names


def exposition_names(text: str) -> set[str]:
    """Return every series name a /metrics page can be queried by.

    Samples name themselves; a `# TYPE` line stands for a family declared but without samples
    yet (a labelled counter nobody incremented): its name as written, or for a histogram or
    summary its `_bucket`, `_sum` and `_count` series (the bare name is never a series).
    """
    names: set[str] = set()
    for line in text.splitlines():
        if type_match := _TYPE.match(line):
            family, kind = type_match.groups()
            if kind == "histogram":
                names.update(family + suffix for suffix in ("_bucket", "_sum", "_count"))
            elif kind == "summary":
                names.update(family + suffix for suffix in ("", "_sum", "_count"))
            else:
                names.add(family)
        elif not line.startswith("#") and (sample := _SAMPLE.match(line)):
            names.add(sample.group(1))
    return names


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace Grafana variables ($name, ${name}, ${name:fmt}, [[name]]); fail on unknown ones."""

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise KeyError(f"no test value for Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def _split_last_argument(inner: str) -> tuple[str, str | None]:
    """Split 'selector, label' at the last comma outside braces and strings."""
    depth, cut, quoted = 0, -1, False
    for index, char in enumerate(inner):
        if char == '"' and (index == 0 or inner[index - 1] != "\\"):
            quoted = not quoted
        elif not quoted and char in "{(":
            depth += 1
        elif not quoted and char in "})":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            cut = index
    if cut < 0:
        return inner.strip(), None
    return inner[:cut].strip(), inner[cut + 1 :].strip()


def variable_expression(query: str) -> str | None:
    """Return the PromQL inside a Grafana Prometheus variable query, or None if it has none."""
    query = query.strip()
    call = re.fullmatch(r"(label_values|query_result|metrics|label_names)\s*\((.*)\)", query, re.S)
    if call is None:
        return query or None
    function, inner = call.groups()
    if function == "query_result":
        return inner.strip()
    if function == "label_values":
        selector, label = _split_last_argument(inner)
        return selector if label is not None else None
    return None  # metrics(regex), label_names(): no expression


@dataclass(frozen=True)
class DashboardQuery:
    """One PromQL expression found in a dashboard, and where."""

    dashboard: str
    where: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard}: {self.where}: {self.expr}"


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_queries(path: Path) -> list[DashboardQuery]:
    """Return every PromQL expression of a dashboard: panel targets and variable queries."""
    dashboard = json.loads(path.read_text())
    found: list[DashboardQuery] = []
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                where = f"panel {panel.get('title')!r} target {target.get('refId')}"
                found.append(DashboardQuery(path.name, where, target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        for source in {text, variable.get("definition") or text}:
            expr = variable_expression(source)
            if expr:
                found.append(DashboardQuery(path.name, f"variable ${variable['name']}", expr))
    return found
