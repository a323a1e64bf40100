"""How `rmm` commands print: tables for people, JSON for scripts, relative times.

rich is imported by the functions that draw with it, not here: JSON output and `--help` never
load it (about 80 ms of start-up).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from rmm_cli.client import EXIT_USAGE, CliError
from rmm_common.durations import format_duration

if TYPE_CHECKING:
    from rich.table import Table

OUTPUT_OPTION = click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for scripts.",
)


def emit_json(data: Any) -> None:
    """Print `data` as JSON on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, allow_nan=False, default=str))


# json.dumps with indent runs the pure-Python encoder: a generator per nested value and a new
# encoder per call made 10,000 agents' JSON cost ~0.5 s. This writes the same text (indent 2,
# sorted keys, ASCII, no NaN, default=str) with one function call per value; what it does not
# handle itself (a dict with keys other than strings) goes to json.dumps.
_INDENT = "  "
_encode_str = json.encoder.encode_basestring_ascii


def _float_text(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
    return float.__repr__(value)


# Exact types only (a subclass, an IntEnum say, takes the general path): one lookup per value.
_SCALARS: dict[type, Callable[[Any], str]] = {
    str: _encode_str,
    int: int.__repr__,
    float: _float_text,
    bool: lambda value: "true" if value else "false",
    type(None): lambda _value: "null",
}
_KEYS: dict[str, str] = {}  # a key's text with its ": ", the same keys on every row


def _json_text(value: Any, level: int) -> str:
    """Return `value` as json.dumps(value, indent=2, sort_keys=True, allow_nan=False,
    default=str) writes it when nested `level` deep."""
    scalar = _SCALARS.get(type(value))
    if scalar is not None:
        return scalar(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        if not all(isinstance(key, str) for key in value):
            text = json.dumps(value, indent=2, sort_keys=True, allow_nan=False, default=str)
            return text.replace("\n", "\n" + _INDENT * level)
        parts = []
        for key in sorted(value):
            item = value[key]
            prefix = _KEYS.get(key)
            if prefix is None:
                prefix = f"{_encode_str(key)}: "
                if len(_KEYS) < 1000:  # bounded: nested maps (labels) bring keys of their own
                    _KEYS[key] = prefix
            scalar = _SCALARS.get(type(item))
            parts.append(prefix + (scalar(item) if scalar else _json_text(item, level + 1)))
        inner = "\n" + _INDENT * (level + 1)
        return "{" + inner + ("," + inner).join(parts) + "\n" + _INDENT * level + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        inner = "\n" + _INDENT * (level + 1)
        items = [_json_text(item, level + 1) for item in value]
        return "[" + inner + ("," + inner).join(items) + "\n" + _INDENT * level + "]"
    if isinstance(value, str):  # subclasses of the scalars, as json.dumps writes them
        return str(_encode_str(value))
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _float_text(value)
    return str(_encode_str(str(value)))  # default=str


def emit_json_rows(pages: Iterable[Iterable[Any]]) -> None:
    """Print rows as one JSON list, byte for byte as emit_json(list) would, a page at a time:
    the first rows are out while later pages are still being fetched, and no page is held
    twice (as data and as text)."""
    started = False
    for page in pages:
        text = ",\n".join(_INDENT + _json_text(row, 1) for row in page)
        if not text:
            continue
        click.echo(("[\n" if not started else ",\n") + text, nl=False)
        started = True
    click.echo("\n]" if started else "[]")


def confirm_unless_yes(yes: bool, asks_before: str, question: str) -> None:
    """Ask `question` on the terminal unless --yes; without a terminal, --yes is required.

    `asks_before` completes "rmm ... asks before ...", e.g. "rmm reboot asks before rebooting".
    """
    if yes:
        return
    if not sys.stdin.isatty():
        raise CliError(f"{asks_before} and there is no terminal to ask on: pass --yes", EXIT_USAGE)
    click.confirm(question, abort=True)


def emit(output: str, data: Any, line: str) -> None:
    """Print `data` as JSON for scripts, or one line for people."""
    if output == "json":
        emit_json(data)
    else:
        click.echo(line)


def shown(text: str) -> str:
    """Return agent-supplied text for a rich table cell: control characters and terminal escapes
    shown as escapes, and brackets that rich would read as markup escaped."""
    from rich.markup import escape  # noqa: PLC0415

    from rmm_common.logs import agent_text  # noqa: PLC0415 - logging, for tables only

    return escape(agent_text(text))


def print_table(table: Table) -> None:
    """Print a rich table, at full width when stdout is not a terminal."""
    from rich.console import Console  # noqa: PLC0415

    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)


def print_plain_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print rows as plain columns padded to their widest cell: fast for thousands of rows."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
    click.echo("\n".join(lines))


def when(ts: float, now: float | None = None) -> str:
    """Return a short relative time for a unix timestamp ("-" for none)."""
    if not ts:
        return "-"
    delta = (now or time.time()) - ts
    if delta >= 0:
        return f"{format_duration(delta)} ago"
    return f"in {format_duration(-delta)}"


def ratio(value: float) -> str:
    """Return a 0..1 ratio as a percentage ("-" when unknown)."""
    return "-" if math.isnan(value) else f"{value * 100:.0f}%"


def finite_or_none(value: float) -> float | None:
    """Return JSON-safe numbers: NaN and infinities become null."""
    return value if math.isfinite(value) else None


def sample_value(value: float) -> float | str:
    """Return a sample's value for JSON: NaN and infinities as Prometheus writes them."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def iso(ts: float) -> str:
    """Return a unix time as local ISO 8601 with its offset, to the second."""
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")
