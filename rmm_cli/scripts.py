"""`rmm scripts`: the server's script library, the scripts `rmm run --library NAME` runs."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table
from rich.text import Text

from rmm_cli.client import Connection
from rmm_cli.output import OUTPUT_OPTION, emit_json, print_table
from rmm_common.durations import format_duration
from rmm_proto import operator_pb2


@click.group()
def scripts() -> None:
    """The server's script library: what `rmm run --library NAME` can run."""


def param_row(param: operator_pb2.ScriptParam) -> dict[str, Any]:
    """Return one declared parameter as JSON-ready data (only the keys it has)."""
    row: dict[str, Any] = {
        "name": param.name,
        "type": param.type,
        "required": param.required,
        "env": f"RMM_PARAM_{param.name.upper()}",
    }
    if param.description:
        row["description"] = param.description
    if param.has_default:
        row["default"] = param.default
    if param.choices:
        row["choices"] = list(param.choices)
    if param.roots:
        row["roots"] = list(param.roots)
    for key in ("pattern", "minimum", "maximum"):
        if getattr(param, key):
            row[key] = getattr(param, key)
    return row


def param_usage(param: dict[str, Any]) -> str:
    """One line saying what a parameter takes, e.g. `int 1..100, default 10`."""
    what = str(param["type"])
    if "choices" in param:
        what += " (" + "|".join(param["choices"]) + ")"
    if "minimum" in param or "maximum" in param:
        what += f" {param.get('minimum', '')}..{param.get('maximum', '')}"
    if "roots" in param:
        what += " under " + ", ".join(param["roots"])
    if "pattern" in param:
        what += f" matching {param['pattern']!r}"
    if param["required"]:
        what += ", required"
    elif "default" in param:
        what += f", default {param['default']!r}"
    if "description" in param:
        what += f": {param['description']}"
    return what


def script_row(script: operator_pb2.ScriptInfo) -> dict[str, Any]:
    """Return a library script's header (and body, if the server sent one) as JSON-ready data."""
    row: dict[str, Any] = {
        "name": script.name,
        "description": script.description,
        "shell": script.shells[0] if script.shells else "",
        "shells": list(script.shells),
        "timeout_seconds": script.default_timeout_seconds,
        "min_role": script.min_role,
        "path": script.path,
        "params": [param_row(param) for param in script.params],
    }
    if script.body:
        row["body"] = script.body
    return row


@scripts.command("list")
@OUTPUT_OPTION
@click.pass_obj
def scripts_list(conn: Connection, output: str) -> None:
    """List the library's scripts: name, shell, timeout, least role, description."""
    response = conn.call(conn.stub().ListScripts, operator_pb2.ListScriptsRequest())
    if output == "json":
        emit_json([script_row(script) for script in response.scripts])
        return
    table = Table("NAME", "SHELL", "TIMEOUT", "MIN ROLE", "DESCRIPTION")
    for script in response.scripts:
        row = script_row(script)
        # Text(), not markup: a description such as "[PATH]" must print as written.
        table.add_row(
            row["name"],
            row["shell"],
            format_duration(row["timeout_seconds"]),
            row["min_role"],
            Text(row["description"]),
        )
    print_table(table)
    if not response.scripts:
        click.echo("the server's script library is empty", err=True)


@scripts.command("show")
@click.argument("name")
@OUTPUT_OPTION
@click.pass_obj
def scripts_show(conn: Connection, name: str, output: str) -> None:
    """Show one script: its header's fields, then its body."""
    script = conn.call(conn.stub().GetScript, operator_pb2.GetScriptRequest(name=name))
    row = script_row(script)
    if output == "json":
        emit_json(row)
        return
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for key, value in (
        ("name", row["name"]),
        ("description", row["description"]),
        ("shells", ", ".join(row["shells"])),
        ("timeout", format_duration(row["timeout_seconds"])),
        ("min role", row["min_role"]),
        ("path", row["path"]),
        *((f"--param {p['name']}", param_usage(p)) for p in row["params"]),
    ):
        facts.add_row(key, Text(value))
    print_table(facts)
    click.echo()
    # The body exactly as the agent would receive it, never through rich.
    click.echo(script.body, nl=not script.body.endswith("\n"))
