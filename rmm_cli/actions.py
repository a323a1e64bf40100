"""Remote actions other than scripts: services, processes, reboot, files; and past commands.

Each command is a thin use of `targets.act()`: the same selection, progress, outcome table and
exit status as `rmm run`.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path, PurePosixPath, PureWindowsPath

import click
from rich.markup import escape
from rich.table import Table

from rmm_cli.client import EXIT_USAGE, CliError, Connection
from rmm_cli.output import OUTPUT_OPTION, confirm_unless_yes, when
from rmm_cli.targets import (
    OK,
    Outcome,
    Run,
    RunOptions,
    Target,
    act,
    human_bytes,
    option_duration,
    printable,
    run_options,
    target_argument,
)
from rmm_common.durations import format_duration
from rmm_proto import commands_pb2

# The agent's default limit for a file in either direction; the file travels inside one
# command message (gRPC caps those at 16 MiB), so bigger files are refused before sending.
MAX_FILE_BYTES = 8 * 1024 * 1024


def cut(text: str, width: int) -> str:
    text = printable(text).replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


# ---- processes --------------------------------------------------------------------------------


def process_table(outcome: Outcome) -> Table:
    """Return the processes one agent listed, busiest first."""
    table = Table("PID", "NAME", "USER", "CPU", "RSS", "STARTED", "COMMAND")
    listed = outcome.info.result.processes.processes
    for process in sorted(listed, key=lambda p: (-p.cpu_ratio, p.pid)):
        table.add_row(
            str(process.pid),
            escape(cut(process.name, 40)),
            escape(cut(process.user, 20)) or "-",
            f"{process.cpu_ratio * 100:.1f}%",
            human_bytes(process.memory_rss_bytes),
            when(process.started_at),
            escape(cut(process.cmdline, 80)),
        )
    return table


@click.group()
def processes() -> None:
    """Processes on agents: list them, end them."""


@processes.command("list")
@target_argument
@click.option("--name", default="", help="Only processes whose name contains this.")
@click.option("--top", type=click.IntRange(min=0), default=0, help="Only the N busiest (by CPU).")
@run_options(detach=False)
@OUTPUT_OPTION
@click.pass_obj
def processes_list(
    conn: Connection, target: Target, name: str, top: int, options: RunOptions, output: str
) -> None:
    """List processes on every agent TARGET selects (one section per agent)."""
    message = commands_pb2.ListProcesses(name=name, limit=top)
    act(conn, target, "list_processes", message, options, output, sections=process_table)


@processes.command("kill")
@target_argument
@click.option("--pid", type=click.IntRange(min=1), help="End this process.")
@click.option("--name", default=None, help="End every process with exactly this name.")
@click.option("--force", is_flag=True, help="Kill at once (SIGKILL) instead of asking first.")
@run_options()
@OUTPUT_OPTION
@click.pass_obj
def processes_kill(
    conn: Connection,
    target: Target,
    pid: int | None,
    name: str | None,
    force: bool,
    options: RunOptions,
    output: str,
) -> None:
    """End a process (--pid) or every process of a name (--name) on the agents TARGET selects."""
    if (pid is None) == (name is None) or name == "":
        raise CliError("give exactly one of --pid N or --name NAME", EXIT_USAGE)
    message = commands_pb2.KillProcess(pid=pid or 0, name=name or "", force=force)
    act(conn, target, "kill_process", message, options, output)


# ---- services ---------------------------------------------------------------------------------

_STATE_STYLE = {"running": "green", "failed": "red", "stopped": "dim"}


def service_table(outcome: Outcome) -> Table:
    """Return the services one agent listed, by name."""
    table = Table("NAME", "STATE", "START", "DESCRIPTION")
    for service in sorted(outcome.info.result.services.services, key=lambda s: s.name):
        state = escape(printable(service.state) or "unknown")
        style = _STATE_STYLE.get(service.state)
        table.add_row(
            escape(cut(service.name, 60)),
            f"[{style}]{state}[/]" if style else state,
            escape(printable(service.start_mode)) or "-",
            escape(cut(service.description, 80)),
        )
    return table


@click.group()
def services() -> None:
    """Services on agents: list, start, stop, restart."""


@services.command("list")
@target_argument
@click.option("--name", default="", help="Only services whose name contains this.")
@run_options(detach=False)
@OUTPUT_OPTION
@click.pass_obj
def services_list(
    conn: Connection, target: Target, name: str, options: RunOptions, output: str
) -> None:
    """List services on every agent TARGET selects (one section per agent)."""
    act(
        conn,
        target,
        "list_services",
        commands_pb2.ListServices(name=name),
        options,
        output,
        sections=service_table,
    )


def _service_control(verb: str, operation: commands_pb2.ServiceOperation) -> None:
    @services.command(verb, help=f"{verb.capitalize()} service NAME on the agents TARGET selects.")
    @target_argument
    @click.argument("name")
    @run_options()
    @OUTPUT_OPTION
    @click.pass_obj
    def control(
        conn: Connection, target: Target, name: str, options: RunOptions, output: str
    ) -> None:
        message = commands_pb2.ServiceControl(name=name, operation=operation)
        act(conn, target, "service_control", message, options, output)


_service_control("start", commands_pb2.SERVICE_START)
_service_control("stop", commands_pb2.SERVICE_STOP)
_service_control("restart", commands_pb2.SERVICE_RESTART)


# ---- reboot -----------------------------------------------------------------------------------


@click.command("reboot")
@target_argument
@click.option(
    "--delay",
    default="0s",
    metavar="DURATION",
    show_default=True,
    help="Wait this long first, e.g. 5m.",
)
@click.option("--reason", default="", help="Shown to logged-in users.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask (needed without a terminal).")
@run_options()
@OUTPUT_OPTION
@click.pass_obj
def reboot(
    conn: Connection,
    target: Target,
    delay: str,
    reason: str,
    yes: bool,
    options: RunOptions,
    output: str,
) -> None:
    """Reboot the agents TARGET selects; the result names who was logged in."""
    delay_seconds = option_duration("--delay", delay)
    when_text = f"in {format_duration(delay_seconds)}" if delay_seconds else "now"
    confirm_unless_yes(
        yes,
        "rmm reboot asks before rebooting",
        f"Reboot every agent {target.text!r} selects, {when_text}?",
    )
    message = commands_pb2.Reboot(delay_seconds=delay_seconds, reason=reason)
    act(conn, target, "reboot", message, options, output)


# ---- files ------------------------------------------------------------------------------------


@click.group()
def files() -> None:
    """Copy small files (up to 8 MiB) to and from agents."""


def read_push_file(local: Path) -> bytes:
    """Return a file to push, refusing one over the limit before reading it."""
    limit = human_bytes(MAX_FILE_BYTES)
    too_big = (
        "rmm files push carries at most {limit} (the agent's limit; the file travels inside "
        "the command): for bigger files have the hosts download them, e.g. with rmm run"
    )
    try:
        size = local.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CliError(
                f"{local} is {human_bytes(size)}; {too_big.format(limit=limit)}", EXIT_USAGE
            )
        with local.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)  # it may have grown since stat()
    except OSError as exc:
        raise CliError(f"{local}: cannot read it: {exc.strerror}", EXIT_USAGE) from None
    if len(data) > MAX_FILE_BYTES:
        raise CliError(f"{local} is over {limit}; {too_big.format(limit=limit)}", EXIT_USAGE)
    return data


def parse_mode(text: str) -> int:
    """Return an octal file mode such as "0644" or "755"."""
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise CliError(f"--mode {text!r}: give octal permissions such as 0644 or 0755", EXIT_USAGE)
    return mode


def is_absolute_remote(path: str) -> bool:
    """Whether `path` is absolute on a POSIX host or a Windows one."""
    return PurePosixPath(path).is_absolute() or PureWindowsPath(path).is_absolute()


@files.command("push")
@target_argument
@click.argument("local", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.argument("remote_path")
@click.option("--mode", default="0644", show_default=True, help="Permissions of the new file.")
@click.option("--overwrite", is_flag=True, help="Replace an existing file (else it is an error).")
@run_options()
@OUTPUT_OPTION
@click.pass_obj
def files_push(
    conn: Connection,
    target: Target,
    local: Path,
    remote_path: str,
    mode: str,
    overwrite: bool,
    options: RunOptions,
    output: str,
) -> None:
    """Copy LOCAL to REMOTE_PATH (absolute) on the agents TARGET selects."""
    if not is_absolute_remote(remote_path):
        raise CliError(
            f"REMOTE_PATH {remote_path!r} must be absolute (e.g. /etc/app.conf or C:\\app\\x.cfg)",
            EXIT_USAGE,
        )
    permissions = parse_mode(mode)
    data = read_push_file(local)
    message = commands_pb2.PushFile(
        path=remote_path,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        mode=permissions,
        overwrite=overwrite,
    )
    act(conn, target, "push_file", message, options, output)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, fallback: str) -> str:
    """Return `text` usable as one file name; hostnames and paths come from the hosts."""
    name = _UNSAFE.sub("_", text).strip("._")
    return name[:100] or fallback


def remote_basename(path: str) -> str:
    """Return the last part of a POSIX or Windows path, safe as a local name."""
    parts = [part for part in re.split(r"[\\/]", path) if part]
    return safe_name(parts[-1] if parts else "", "file")


def write_atomically(dest: Path, data: bytes) -> None:
    """Write `dest` whole or not at all: a temporary file beside it, then a rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, dest)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_pulled(run: Run, remote_path: str, out: Path) -> None:
    """Write each pulled file after checking its sha256; mark an outcome failed if not written.

    One agent: `out` is the file (or an existing directory to put it in). Several: `out` is a
    directory and each file goes to out/<id>-<hostname>/<basename>: the start of the agent's id
    comes first, since the hostname is only what the agent says (two agents may say the same).
    """
    basename = remote_basename(remote_path)
    single = len(run.targets) == 1 and len(run.outcomes) == 1
    for outcome in sorted(run.outcomes, key=lambda o: (o.info.hostname, o.info.agent_id)):
        if outcome.info.status != OK:
            continue
        if single:
            dest = out / basename if out.is_dir() else out
        else:
            if out.exists() and not out.is_dir():
                outcome.local_error = f"--out {out} is a file; for several agents give a directory"
                continue
            short = safe_name(outcome.info.agent_id[:12], "agent")
            host = safe_name(outcome.info.hostname, "")
            dest = out / (f"{short}-{host}" if host else short) / basename
        pulled = outcome.info.result.file
        digest = hashlib.sha256(pulled.data).hexdigest()
        if not pulled.sha256 or digest != pulled.sha256.lower():
            outcome.local_error = (
                f"the data's sha256 {digest[:12]} does not match the agent's "
                f"{pulled.sha256[:12] or '(none)'}; {dest} not written"
            )
            continue
        try:
            write_atomically(dest, pulled.data)
        except OSError as exc:
            outcome.local_error = f"cannot write {dest}: {exc.strerror or exc}"
            continue
        outcome.note = f"saved to {dest} ({human_bytes(len(pulled.data))}, sha256 {digest[:12]})"


@files.command("pull")
@target_argument
@click.argument("remote_path")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="One agent: the local file. Several: a directory; files go to "
    "OUT/<id>-<hostname>/<name> (the id's first 12 digits).",
)
@run_options(detach=False)
@OUTPUT_OPTION
@click.pass_obj
def files_pull(
    conn: Connection,
    target: Target,
    remote_path: str,
    out: Path,
    options: RunOptions,
    output: str,
) -> None:
    """Copy REMOTE_PATH (at most 8 MiB) from the agents TARGET selects to --out."""
    if not is_absolute_remote(remote_path):
        raise CliError(f"REMOTE_PATH {remote_path!r} must be absolute", EXIT_USAGE)
    message = commands_pb2.PullFile(path=remote_path, max_bytes=MAX_FILE_BYTES)
    act(
        conn,
        target,
        "pull_file",
        message,
        options,
        output,
        after=lambda run: save_pulled(run, remote_path, out),
    )
