"""How `rmm` commands print: tables for people, JSON for scripts, relative times.

rich is imported by the functions that draw with it, not here: JSON output and `--help` never
load it (about 80 ms of start-up).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from rmm_cli.client import EXIT_USAGE, CliError
from rmm_common import json_text
from rmm_common.durations import format_duration
from rmm_common.json_text import list_item_text

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


def emit_json_rows(pages: Iterable[Iterable[Any]]) -> None:
    """Print rows as one JSON list, byte for byte as emit_json(list) would, a page at a time:
    the first rows are out while later pages are still being fetched, and no page is held
    twice (as data and as text)."""
    started = False
    for page in pages:
        text = ",\n".join(list_item_text(row) for row in page)
        if not text:
            continue
        click.echo(("[\n" if not started else ",\n") + text, nl=False)
        started = True
    click.echo("\n]" if started else "[]")


def emit_json_texts(pages: Iterable[bytes]) -> None:
    """Print pages of rows already in JSON text (each row an indented list item, rows joined by
    ",\n", as emit_json_rows makes a page) as one JSON list, byte for byte as emit_json(list)
    would: copied to stdout as they come, never decoded."""
    sys.stdout.flush()  # whatever was printed as text before goes first
    out = sys.stdout.buffer
    started = False
    for text in pages:
        if not text:
            continue
        out.write(b",\n" if started else b"[\n")
        out.write(text)
        started = True
    out.write(b"\n]\n" if started else b"[]\n")
    out.flush()


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


# NaN and infinities as null: the one shared with the server's agent rows.
finite_or_none = json_text.finite_or_none


def sample_value(value: float) -> float | str:
    """Return a sample's value for JSON: NaN and infinities as Prometheus writes them."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def iso(ts: float) -> str:
    """Return a unix time as local ISO 8601 with its offset, to the second."""
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")
