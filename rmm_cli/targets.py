"""Which agents a remote action reaches (`--target`), and sending one action to them.

Every remote-action command (`rmm run`, `rmm services ...`, `rmm reboot`, ...) is a thin layer
over `act()`: parse the selection, send one RunCommand, follow its stream with a progress bar,
then show one outcome per agent and exit non-zero when any agent failed.
"""

from __future__ import annotations

import functools
import math
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import click
from google.protobuf.message import Message
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rmm_cli.client import EXIT_FAILED, EXIT_USAGE, CliError, Connection
from rmm_cli.output import emit_json, print_table
from rmm_common.agent_words import agent_label, parse_agent_word, printable_name
from rmm_common.durations import format_duration, parse_duration
from rmm_common.errors import InvalidArgument
from rmm_common.text import INVISIBLE_RE
from rmm_proto import commands_pb2, operator_pb2

# ---- selectors --------------------------------------------------------------------------------

SELECTOR_KEYS = ("all", "agent", "host", "client", "site", "tag", "os", "status")
OS_NAMES = ("linux", "windows", "macos")
STATUSES = ("online", "offline")
SELECTOR_HELP = (
    "Which agents: comma-separated terms that must all hold: all, agent=ID, host=NAME, "
    "client=NAME, site=NAME, tag=NAME, os=linux|windows|macos, status=online|offline. A bare "
    "word of hex digits is an agent id or the start of one and is matched against ids only; "
    "any other bare word is a hostname (a hex-looking hostname needs host=NAME). A hostname "
    "must name exactly one agent of the given client and site, else the candidates are listed; "
    "with agents of several clients it needs client=NAME (several bare words, agent= or host= "
    "terms: any of them)."
)
_KEY_LIST = ", ".join(SELECTOR_KEYS)


class SelectorError(InvalidArgument):
    """A `--target` text that does not parse; the message names the bad term and the fix."""


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed selection: what the operator typed and the selector sent to the server."""

    text: str
    selector: operator_pb2.TargetSelector


def parse_selector(text: str) -> operator_pb2.TargetSelector:
    """Return the TargetSelector for `text` such as "client=acme,os=linux" or "web-01"."""
    if not text.strip():
        raise SelectorError(
            f"the target is empty: give terms such as all, client=acme, web-01 (keys: {_KEY_LIST})"
        )
    selector = operator_pb2.TargetSelector()
    single: dict[str, str] = {}
    for raw in text.split(","):
        term = raw.strip()
        if not term:
            raise SelectorError(
                f"target {text!r} has an empty term: separate terms with single commas"
            )
        if "=" not in term:
            if term.lower() == "all":
                selector.all = True
            else:
                _add_agent_word(selector, text, term)
            continue
        key, _, value = (part.strip() for part in term.partition("="))
        key = key.lower()
        if key not in SELECTOR_KEYS:
            raise SelectorError(
                f"unknown key {key!r} in target term {term!r}; keys: {_KEY_LIST} "
                "(a bare word is an agent id, its start, or a hostname)"
            )
        if key == "all":
            raise SelectorError(f"target term {term!r}: write all on its own, without a value")
        if not value:
            raise SelectorError(f"target term {term!r} has no value: write {key}=VALUE")
        if key in ("agent", "host"):
            _add_agent_word(selector, text, f"{key}={value}")
            continue
        if key == "os":
            value = value.lower()
            if value not in OS_NAMES:
                raise SelectorError(
                    f"target term {term!r}: os must be one of {', '.join(OS_NAMES)}"
                )
        if key == "status":
            value = value.lower()
            if value not in STATUSES:
                raise SelectorError(
                    f"target term {term!r}: status must be one of {', '.join(STATUSES)}"
                )
        previous = single.get(key)
        if previous is not None and previous != value:
            # Every term must hold, so two values for one key could only ever match nothing.
            raise SelectorError(
                f"target gives {key} twice ({key}={previous} and {key}={value}), and every "
                f"term must hold: name one {key} per run"
            )
        single[key] = value
        setattr(selector, key, value)
    return selector


def _add_agent_word(selector: operator_pb2.TargetSelector, text: str, term: str) -> None:
    """Add one agent word, sent as an explicit `agent=ID` or `host=NAME` (the server's rules)."""
    try:
        word = parse_agent_word(term).term()
    except InvalidArgument as exc:
        raise SelectorError(f"target {text!r}: {exc}") from None
    if word not in selector.agents:
        selector.agents.append(word)


class TargetType(click.ParamType[Target, Any]):
    """A click parameter that parses a selection; a bad one is a usage error (exit 2)."""

    name = "TARGET"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Target:
        if isinstance(value, Target):
            return value
        try:
            return Target(str(value), parse_selector(str(value)))
        except SelectorError as exc:
            self.fail(str(exc), param, ctx)


TARGET = TargetType()

target_argument = click.argument("target", type=TARGET, metavar="TARGET")


# ---- dispatch options -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How a run is dispatched; zero means the server's default."""

    timeout_seconds: float = 0.0
    parallel: int = 0
    queue_offline: bool = False
    expires_in_seconds: float = 0.0
    detach: bool = False
    ticket: int = 0


def option_duration(option: str, text: str | None) -> float:
    """Return seconds for a duration option's value, or a usage error naming the option."""
    if text is None:
        return 0.0
    try:
        return parse_duration(text)
    except InvalidArgument as exc:
        raise CliError(f"{option}: {exc}", EXIT_USAGE) from None


def run_options(detach: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the dispatch options every remote action shares; the command gets `options`."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option(
                "--timeout",
                metavar="DURATION",
                help="How long each agent may take once started, e.g. "
                "60s (default: the script's or the server's).",
            ),
            click.option(
                "--parallel",
                type=click.IntRange(min=0),
                default=0,
                help="At most this many agents at once (default 0: all at once).",
            ),
            click.option(
                "--queue-offline",
                is_flag=True,
                help="Offline agents get it when they reconnect (until --expires); "
                "counted as fine.",
            ),
            click.option(
                "--expires",
                metavar="DURATION",
                help="With --queue-offline: how long it may wait, e.g. 24h (default 24h).",
            ),
            click.option(
                "--ticket",
                type=click.IntRange(min=1),
                default=None,
                help="The ticket this is done for: the run and its outcomes are written on it.",
            ),
        ]
        if detach:
            options.append(
                click.option(
                    "--detach",
                    is_flag=True,
                    help="Return once it is sent; follow with rmm commands list --run.",
                )
            )
        for option in reversed(options):
            function = option(function)
        original = function

        @functools.wraps(original)  # keeps the options click attached to the function
        def wrapper(**kwargs: Any) -> Any:
            kwargs["options"] = RunOptions(
                timeout_seconds=option_duration("--timeout", kwargs.pop("timeout")),
                parallel=kwargs.pop("parallel"),
                queue_offline=kwargs.pop("queue_offline"),
                expires_in_seconds=option_duration("--expires", kwargs.pop("expires")),
                detach=kwargs.pop("detach", False),
                ticket=kwargs.pop("ticket") or 0,
            )
            return original(**kwargs)

        return wrapper

    return decorate


# ---- outcomes ---------------------------------------------------------------------------------

S = commands_pb2
OK = S.COMMAND_SUCCEEDED
# Statuses the server reports while it still waits: in an outcome they mean it gave up waiting.
UNFINISHED = (S.COMMAND_SENT, S.COMMAND_RUNNING)
HEAD_LINES = 2
HEAD_WIDTH = 100
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-_])")


def status_name(status: int) -> str:
    """Return "succeeded", "timed_out", ... for a CommandStatus."""
    return S.CommandStatus.Name(status).removeprefix("COMMAND_").lower()


def printable(text: str) -> str:
    """Return `text` safe for a terminal: no escape sequences or control characters.

    Output comes from managed hosts; an escape sequence in it could rewrite the operator's
    terminal, and a bidi override or zero-width character (rmm_common.text's class) could make
    it read as something else: each becomes U+FFFD; a line or paragraph separator becomes the
    newline it is to some readers. Lone surrogates cannot be encoded, so they become "?".
    """
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = _ANSI.sub("", text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    "))
    return INVISIBLE_RE.sub(_shown_char, text)


def _shown_char(found: re.Match[str]) -> str:
    return "\n" if found.group() in "\n\u2028\u2029" else "\ufffd"


def head(text: str, lines: int = HEAD_LINES, width: int = HEAD_WIDTH) -> str:
    """Return the first non-blank lines of `text`, each cut to `width`, marking what is left out."""
    kept = [line.rstrip() for line in printable(text).split("\n") if line.strip()]
    shown = [line if len(line) <= width else line[: width - 1] + "…" for line in kept[:lines]]
    if len(kept) > lines:
        shown[-1] += f" … (+{len(kept) - lines} lines)"
    return "\n".join(shown)


def human_bytes(size: float) -> str:
    """Return a size as "512 B", "1.5 KiB", "8.0 MiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _process_label(process: commands_pb2.ProcessInfo) -> str:
    return f"{process.name} ({process.pid})"


def session_label(user: commands_pb2.LoggedInUser) -> str:
    """Return "alice on pts/0 from 10.0.0.5" for a logged-in session."""
    text = user.name or "?"
    if user.terminal:
        text += f" on {user.terminal}"
    if user.host:
        text += f" from {user.host}"
    return text


def result_summary(result: commands_pb2.CommandResult) -> str:
    """Return one line saying what a successful action did."""
    kind = result.WhichOneof("result")
    if kind == "script":
        return result.script.stdout
    if kind == "processes":
        return f"{len(result.processes.processes)} processes"
    if kind == "services":
        return f"{len(result.services.services)} services"
    if kind == "kill":
        parts = []
        if result.kill.killed:
            parts.append("ended " + ", ".join(_process_label(p) for p in result.kill.killed))
        parts.extend(result.kill.errors)
        return "; ".join(parts) or "no process matched"
    if kind == "service":
        service = result.service.service
        line = f"{service.name}: {service.state or 'unknown'}"
        if service.start_mode:
            line += f" ({service.start_mode})"
        return line + (f"; {result.service.output}" if result.service.output.strip() else "")
    if kind == "reboot":
        reboot = result.reboot
        sessions = ", ".join(session_label(u) for u in reboot.sessions) or "nobody"
        line = f"logged in: {sessions}"
        if reboot.back_at and reboot.requested_at:
            line = f"back after {format_duration(reboot.back_at - reboot.requested_at)}; " + line
        return line
    if kind == "file":
        file = result.file
        return f"{file.path} ({human_bytes(file.size)}, sha256 {file.sha256[:12]})"
    if kind == "collect":
        return f"report {result.collect.sequence} sent"
    return ""


def message_data(message: Message) -> dict[str, Any]:
    """Return a message as JSON-ready data: every field, 64-bit numbers as numbers.

    Unlike MessageToDict, uint64 sizes stay numbers and bytes fields are left out (a pulled
    file's bytes are written to disk, not printed).
    """
    data: dict[str, Any] = {}
    for descriptor in message.DESCRIPTOR.fields:
        value = getattr(message, descriptor.name)
        if descriptor.type == descriptor.TYPE_BYTES:
            continue
        if descriptor.message_type is not None and descriptor.message_type.GetOptions().map_entry:
            data[descriptor.name] = dict(value)
        elif descriptor.is_repeated:
            data[descriptor.name] = [
                message_data(item) if descriptor.message_type is not None else item
                for item in value
            ]
        elif descriptor.message_type is not None:
            data[descriptor.name] = message_data(value)
        elif descriptor.enum_type is not None:
            data[descriptor.name] = descriptor.enum_type.values_by_number[value].name
        elif isinstance(value, float) and not math.isfinite(value):
            data[descriptor.name] = None
        else:
            data[descriptor.name] = value
    return data


def result_data(result: commands_pb2.CommandResult) -> dict[str, Any] | None:
    """Return an action's result as JSON-ready data, keyed by its kind ("script", ...)."""
    kind = result.WhichOneof("result")
    if kind is None:
        return None
    return {kind: message_data(getattr(result, kind))}


@dataclass(slots=True)
class Outcome:
    """One agent's final outcome, and what this command line did with it afterwards."""

    info: operator_pb2.CommandInfo
    queue_offline: bool = False
    note: str = ""  # what this side did with the result, shown instead of it (a pulled file)
    local_error: str = ""  # a failure on this side after the agent succeeded

    @property
    def status(self) -> str:
        return "failed" if self.local_error else status_name(self.info.status)

    @property
    def ok(self) -> bool:
        """Whether this agent counts as done right (QUEUED only when queueing was asked for)."""
        if self.local_error:
            return False
        status = self.info.status
        return status == OK or (status == S.COMMAND_QUEUED and self.queue_offline)

    @property
    def error(self) -> str:
        return self.local_error or self.info.error or self.info.result.error

    @property
    def exit_code(self) -> int | None:
        result = self.info.result
        return result.script.exit_code if result.WhichOneof("result") == "script" else None

    @property
    def duration_seconds(self) -> float | None:
        result = self.info.result
        if result.started_at and result.finished_at:
            return max(0.0, result.finished_at - result.started_at)
        if self.info.sent_at and self.info.finished_at:
            return max(0.0, self.info.finished_at - self.info.sent_at)
        return None

    def reason(self) -> str:
        """Return why this agent is not fine, in a few words: "exit 3", "offline ..."."""
        status = self.info.status
        exit_code = self.exit_code
        script = self.info.result.script
        if self.local_error:
            return self.local_error
        if status == S.COMMAND_FAILED and exit_code:
            return f"killed by signal {-exit_code}" if exit_code < 0 else f"exit {exit_code}"
        if status == S.COMMAND_TIMED_OUT or script.timed_out:
            return "timed out" + (f": {self.error}" if self.error else "")
        if status == S.COMMAND_QUEUED:
            return "offline, queued (pass --queue-offline to count that as fine)"
        if status in UNFINISHED:
            return f"{status_name(status)}, {self.error or 'no final result'}"
        words = {
            S.COMMAND_FAILED: "failed",
            S.COMMAND_REFUSED: "refused",
            S.COMMAND_DECLINED: "declined by the logged-in user",
            S.COMMAND_EXPIRED: "expired before it reached the agent",
            S.COMMAND_CANCELLED: "cancelled",
        }
        if status == S.COMMAND_CANCELLED and self.error:
            return self.error  # the server's own reason, e.g. "offline since ..."
        word = words.get(status, "no outcome")
        return f"{word}: {self.error}" if self.error else word

    def head(self, lines: int = HEAD_LINES) -> str:
        """Return the start of what the agent said: stdout, or on failure stderr or the error."""
        result = self.info.result
        if not self.ok:
            if result.WhichOneof("result") == "script":
                for text in (result.script.stderr, result.script.stdout):
                    if text.strip():
                        return head(text, lines)
            return head(self.reason(), lines)
        text = result_summary(result) if self.info.status == OK else "queued until it reconnects"
        return head(self.note or text, lines)

    def to_json(self) -> dict[str, Any]:
        """Return the outcome as JSON-ready data with full output."""
        info = self.info
        result = info.result
        script = result.script if result.WhichOneof("result") == "script" else None
        return {
            "command_id": info.id,
            "run_id": info.run_id or None,
            "agent_id": info.agent_id,
            "hostname": info.hostname,
            "action": info.action or None,
            "summary": info.summary or None,
            "status": self.status,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "duration_seconds": self.duration_seconds,
            "error": self.error or None,
            "stdout": script.stdout if script else None,
            "stderr": script.stderr if script else None,
            "stdout_truncated": script.stdout_truncated if script else None,
            "stderr_truncated": script.stderr_truncated if script else None,
            "duplicate": result.duplicate,
            "operator": info.operator or None,
            "issued_at": info.issued_at or None,
            "sent_at": info.sent_at or None,
            "finished_at": info.finished_at or None,
            "result": result_data(result),
            "local": self.note or None,
        }


def sort_outcomes(outcomes: Iterable[Outcome]) -> list[Outcome]:
    """Failures first, then by hostname."""
    return sorted(outcomes, key=lambda o: (o.ok, o.info.hostname, o.info.agent_id))


def agents(count: int) -> str:
    """Return "1 agent" or "N agents"."""
    return f"{count} agent" if count == 1 else f"{count} agents"


def agent_names(outcomes: Iterable[Outcome]) -> dict[str, str]:
    """Return a name per agent id: its reported hostname with its short id (agent_label)."""
    return {o.info.agent_id: agent_label(o.info.hostname, o.info.agent_id) for o in outcomes}


def failure_summary(outcomes: list[Outcome], shown: int = 10) -> str:
    """Return "1 of 20 agents failed: web-07 (exit 3)", or "" when none failed."""
    failed = [o for o in sort_outcomes(outcomes) if not o.ok]
    if not failed:
        return ""
    name = agent_names(outcomes)
    names = ", ".join(
        f"{name[o.info.agent_id]} ({printable(o.reason())[:120]})" for o in failed[:shown]
    )
    if len(failed) > shown:
        names += f", and {len(failed) - shown} more"
    return f"{len(failed)} of {agents(len(outcomes))} failed: {names}"


STATUS_STYLE = {
    "succeeded": "green",
    "queued": "yellow",
    "sent": "yellow",
    "running": "yellow",
}


def status_cell(outcome: Outcome) -> str:
    """Return the status for a table, colored; an agent the server could not reach is "offline"."""
    label = outcome.status
    if label == "cancelled" and outcome.error.startswith("offline"):
        label = "offline"
    return f"[{STATUS_STYLE.get(label, 'red')}]{label}[/]"


def outcome_table(outcomes: list[Outcome]) -> Table:
    """Return one row per agent: host, id, status, exit code, duration, head of the output."""
    table = Table("HOST", "AGENT", "STATUS", "EXIT", "TIME", "OUTPUT")
    lines = HEAD_LINES if len(outcomes) <= 10 else 1  # a big fleet: one line per agent
    for outcome in sort_outcomes(outcomes):
        duration = outcome.duration_seconds
        exit_code = outcome.exit_code
        table.add_row(
            escape(printable_name(outcome.info.hostname) or "-"),
            outcome.info.agent_id[:12],
            status_cell(outcome),
            "-" if exit_code is None else str(exit_code),
            "-" if duration is None else format_duration(duration),
            escape(outcome.head(lines)),
        )
    return table


# ---- running ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    """A run as the stream told it: who it reached and each agent's outcome."""

    run_id: str = ""
    targets: list[operator_pb2.RunTarget] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)


def build_request(
    target: Target, action: str, message: Message, options: RunOptions
) -> operator_pb2.RunCommandRequest:
    """Return the RunCommandRequest that sends `message` (the `action` oneof field)."""
    request = operator_pb2.RunCommandRequest(
        target=target.selector,
        timeout_seconds=options.timeout_seconds,
        queue_offline=options.queue_offline,
        expires_in_seconds=options.expires_in_seconds,
        parallel=options.parallel,
        detach=options.detach,
        ticket=options.ticket,
    )
    getattr(request, action).CopyFrom(message)
    return request


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed[/]"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def follow(
    events: Iterable[operator_pb2.RunEvent],
    options: RunOptions,
    show_progress: bool,
    label: str = "run",
) -> Run:
    """Collect a run from its event stream, with a progress bar on stderr if asked."""
    run = Run()
    progress: Progress | None = None
    task = None
    seen: set[str] = set()  # agent ids: an agent the server did not reach has no command id
    failed = 0
    try:
        for event in events:
            kind = event.WhichOneof("event")
            if kind == "started":
                run.run_id = event.started.run_id
                run.targets = list(event.started.targets)
                if show_progress and not options.detach:
                    progress = _progress()
                    progress.start()
                    task = progress.add_task(label, total=len(run.targets), failed=0)
            elif kind == "outcome":
                outcome = Outcome(event.outcome, queue_offline=options.queue_offline)
                if outcome.info.agent_id in seen:
                    continue  # one outcome per agent; a repeat would count it twice
                seen.add(outcome.info.agent_id)
                run.outcomes.append(outcome)
                failed += not outcome.ok
                if progress is not None and task is not None:
                    progress.update(task, advance=1, failed=failed)
    except KeyboardInterrupt:
        if not run.run_id:
            raise
        raise CliError(
            f"interrupted; run {run.run_id} goes on at the server: see its outcomes with "
            f"rmm commands list --run {run.run_id}",
            130,
        ) from None
    finally:
        if progress is not None:
            progress.stop()
    if not run.run_id and not options.detach:
        raise CliError("the server ended the run without saying which agents it reached")
    if not options.detach:
        for missing in (t for t in run.targets if t.agent_id not in seen):
            # The stream promises one outcome per target; say so plainly if one never came.
            run.outcomes.append(
                Outcome(
                    operator_pb2.CommandInfo(
                        id=missing.command_id,
                        run_id=run.run_id,
                        agent_id=missing.agent_id,
                        hostname=missing.hostname,
                        error="the server reported no outcome; see "
                        + (
                            f"rmm commands show {missing.command_id}"
                            if missing.command_id
                            else f"rmm commands list --run {run.run_id}"
                        ),
                    ),
                    queue_offline=options.queue_offline,
                )
            )
    return run


def dispatch(
    conn: Connection,
    target: Target,
    action: str,
    message: Message,
    options: RunOptions,
    label: str = "run",
) -> Run:
    """Send one action to the selection and wait for every outcome (or only for dispatch)."""
    request = build_request(target, action, message, options)
    stream = conn.stream(conn.stub().RunCommand, request)
    return follow(stream, options, show_progress=sys.stderr.isatty(), label=label)


def show_detached(run: Run, output: str) -> None:
    """Show who a detached run reached and how to follow it."""
    rows = [
        {
            "agent_id": t.agent_id,
            "hostname": t.hostname,
            "command_id": t.command_id or None,  # none: offline and not queued
            "online": t.online,
        }
        for t in run.targets
    ]
    if output == "json":
        emit_json({"run_id": run.run_id, "targets": rows})
        return
    table = Table("HOST", "AGENT", "COMMAND", "STATE")
    for t in sorted(run.targets, key=lambda t: t.hostname):
        table.add_row(
            escape(printable_name(t.hostname)),
            t.agent_id[:12],
            t.command_id or "-",
            "sent" if t.online else ("queued" if t.command_id else "[red]offline, not sent[/]"),
        )
    print_table(table)
    click.echo(
        f"run {run.run_id}: sent to {agents(len(run.targets))}; follow it with "
        f"rmm commands list --run {run.run_id}",
        err=True,
    )


Sections = Callable[[Outcome], Table | None]


def show_outcomes(outcomes: list[Outcome], output: str, sections: Sections | None = None) -> None:
    """Print the outcomes (a row per agent, or a section per agent), then exit 1 on failure.

    With `sections`, a single agent's items are one table and several agents get one titled
    section each; a failed agent's section says why.
    """
    ordered = sort_outcomes(outcomes)
    if output == "json":
        emit_json([o.to_json() for o in ordered])
    elif sections is None:
        print_table(outcome_table(ordered))
    elif len(ordered) == 1:
        table = sections(ordered[0]) if ordered[0].ok else None
        if table is not None:
            print_table(table)
    else:
        for outcome in sorted(ordered, key=lambda o: (o.info.hostname, o.info.agent_id)):
            title = agent_label(outcome.info.hostname, outcome.info.agent_id)
            table = sections(outcome) if outcome.ok else None
            if table is None:
                click.echo(f"== {title}: {printable(outcome.reason())}")
            else:
                click.echo(f"== {title}")
                print_table(table)
    summary = failure_summary(ordered)
    if summary:
        raise CliError(summary, EXIT_FAILED)


def act(
    conn: Connection,
    target: Target,
    action: str,
    message: Message,
    options: RunOptions,
    output: str,
    sections: Sections | None = None,
    after: Callable[[Run], None] | None = None,
) -> None:
    """Send one action to a selection and show every agent's outcome; the shared command body.

    `after` runs once the outcomes are in (e.g. writing pulled files) and may mark outcomes
    as failed locally.
    """
    started = time.monotonic()
    run = dispatch(conn, target, action, message, options, label=action.replace("_", " "))
    if options.detach:
        show_detached(run, output)
        return
    if after is not None:
        after(run)
    if output != "json" and sys.stderr.isatty():
        click.echo(
            f"run {run.run_id}: {agents(len(run.outcomes))} in "
            f"{format_duration(time.monotonic() - started)}",
            err=True,
        )
    show_outcomes(run.outcomes, output, sections)
