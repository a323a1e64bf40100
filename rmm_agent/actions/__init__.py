"""Remote actions: what the agent does when a verified command arrives.

`execute()` runs one command: it refuses what the host's configuration forbids, dispatches to
the action's module (one per field of Command's `action` oneof, each with a
`run(request, context) -> CommandResult`) and never raises. `describe()` says in one line what
a command will do, for logs, history and consent prompts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rmm_agent.actions import (
    collect_now,
    kill_process,
    list_processes,
    list_services,
    pull_file,
    push_file,
    reboot,
    run_script,
    service_control,
)
from rmm_agent.actions.base import ActionContext, ActionFailed, printable
from rmm_agent.actions.reboot import clear_pending_reboot, pending_reboot
from rmm_agent.actions.services_common import VERBS
from rmm_agent.config import AgentConfig
from rmm_proto import commands_pb2

__all__ = [
    "ACTIONS",
    "INTERACTIVE",
    "ActionContext",
    "ActionFailed",
    "ActionFn",
    "clear_pending_reboot",
    "describe",
    "execute",
    "pending_reboot",
    "refusal",
]

log = logging.getLogger(__name__)

# Each takes its own request message (RunScript for run_script...): typed loosely here.
ActionFn = Callable[[Any, ActionContext], commands_pb2.CommandResult]

ACTIONS: dict[str, ActionFn] = {
    "run_script": run_script.run,
    "list_processes": list_processes.run,
    "kill_process": kill_process.run,
    "list_services": list_services.run,
    "service_control": service_control.run,
    "reboot": reboot.run,
    "push_file": push_file.run,
    "pull_file": pull_file.run,
    "collect_now": collect_now.run,
}

# Actions that change the host or read its files: in "ask" consent mode a logged-in user must
# approve them. Listing and collecting only read what the reports show anyway.
INTERACTIVE = frozenset(
    {"run_script", "kill_process", "service_control", "reboot", "push_file", "pull_file"}
)

# How much of an ad-hoc script's body describe() shows.
BODY_PREVIEW_CHARS = 60


def refusal(command: commands_pb2.Command, config: AgentConfig) -> str | None:
    """Return why this host's configuration forbids the command, or None when it allows it.

    execute() checks it too; a caller may check it first, so as not to ask a user to approve
    what would be refused anyway.
    """
    which = command.WhichOneof("action")
    if which is None:
        return (
            "the command carries no action this agent knows; the server may be newer than the "
            "agent: update the agent"
        )
    if which in config.forbid_actions:
        return f"this host's agent configuration forbids {which} (forbid_actions)"
    if which == "run_script":
        if config.scripts == "none":
            return "this host's agent configuration forbids scripts (scripts: none)"
        script = command.run_script
        if config.scripts == "library" and not script.library_name:
            return (
                "this host's agent configuration allows only the server's library scripts "
                "(scripts: library); this ad-hoc script was refused"
            )
        if config.scripts == "library":
            # Arguments reach the script, which checks them itself (a policy's remediation
            # passes some); environment variables other than its RMM_PARAM_* parameters
            # (PATH...) and a working directory change what everything in it does instead.
            extras = [name for name in sorted(script.env) if not name.startswith("RMM_PARAM_")]
            if extras or script.working_directory:
                given = [
                    *(f"env {printable(name, 60)}" for name in extras[:5]),
                    *(["a working directory"] if script.working_directory else []),
                ]
                return (
                    "this host's agent configuration allows only the server's library scripts "
                    "as their headers declare them (scripts: library); this run also sets "
                    f"{', '.join(given)} and was refused"
                )
    return None


def execute(command: commands_pb2.Command, context: ActionContext) -> commands_pb2.CommandResult:
    """Run one verified command and return its result; never raise.

    The result always carries the command id and when the action started and finished.
    """
    started_at = context.clock()
    which = command.WhichOneof("action")
    reason = refusal(command, context.config)
    if reason is not None:
        result = commands_pb2.CommandResult(status=commands_pb2.COMMAND_REFUSED, error=reason)
    else:
        assert which is not None  # refusal() refuses a command without an action
        try:
            result = ACTIONS[which](getattr(command, which), context)
        except ActionFailed as failure:
            result = failure.result()
        except Exception as exc:
            log.exception("action %s of command %s failed unexpectedly", which, command.id)
            result = commands_pb2.CommandResult(
                status=commands_pb2.COMMAND_FAILED,
                error=f"{which} failed unexpectedly in the agent: {type(exc).__name__}: {exc}",
            )
    result.command_id = command.id
    result.started_at = started_at
    result.finished_at = context.clock()
    return result


def describe(command: commands_pb2.Command) -> str:
    """Say in one line what the command does, for a log, the history or a consent prompt."""
    which = command.WhichOneof("action")
    if which is None:
        return "no action this agent knows"
    return _DESCRIBERS[which](getattr(command, which))


def _quoted(text: str, limit: int = 200) -> str:
    """Return `text` quoted, its control characters escaped (repr), bounded."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _args(args: Any) -> str:
    if not args:
        return ""
    shown = repr(list(args))
    return f" with args {shown if len(shown) <= 200 else shown[:198] + '…]'}"


def _inputs(request: commands_pb2.RunScript) -> str:
    """Say what the run sets besides the script: args, params, env, working directory."""
    text = _args(request.args)
    if request.params:
        text += f" with params {_mapping(request.params)}"
    # The parameters' own RMM_PARAM_* variables are said once, as params, above.
    env = {k: v for k, v in request.env.items() if not k.startswith("RMM_PARAM_")}
    if env:
        text += f" with env {_mapping(env)}"
    if request.working_directory:
        text += f" in {_quoted(request.working_directory)}"
    return text


def _mapping(values: Any) -> str:
    shown = " ".join(f"{k}={v}" for k, v in sorted(values.items()))
    return _quoted(shown)


def _run_script(request: commands_pb2.RunScript) -> str:
    shell = printable(request.shell, 20)
    if request.library_name:
        return f"run script {_quoted(request.library_name)} ({shell}){_inputs(request)}"
    lines = request.body.strip().splitlines()
    first = lines[0].strip() if lines else ""
    preview = first[:BODY_PREVIEW_CHARS]
    if len(lines) > 1 or len(first) > BODY_PREVIEW_CHARS:
        preview += "…"
    return f"run ad-hoc {shell} script {_quoted(preview)}{_inputs(request)}"


def _list_processes(request: commands_pb2.ListProcesses) -> str:
    text = "list processes"
    if request.name:
        text += f" named like {_quoted(request.name)}"
    if request.limit:
        text += f" (top {request.limit} by CPU)"
    return text


def _kill_process(request: commands_pb2.KillProcess) -> str:
    force = " at once (force)" if request.force else ""
    if request.pid:
        named = f" ({printable(request.name)})" if request.name else ""
        return f"kill process {request.pid}{named}{force}"
    return f"kill every process named {_quoted(request.name)}{force}"


def _list_services(request: commands_pb2.ListServices) -> str:
    if request.name:
        return f"list services named like {_quoted(request.name)}"
    return "list services"


def _service_control(request: commands_pb2.ServiceControl) -> str:
    operation = VERBS.get(request.operation, f"operation {request.operation} on")
    return f"{operation} service {printable(request.name)}"


def _reboot(request: commands_pb2.Reboot) -> str:
    when = f"in {request.delay_seconds:g}s" if request.delay_seconds > 0 else "now"
    reason = f": {printable(request.reason)}" if request.reason else ""
    return f"reboot {when}{reason}"


def _push_file(request: commands_pb2.PushFile) -> str:
    replace = ", replacing an existing file" if request.overwrite else ""
    return f"push file {printable(request.path)} ({len(request.data)} bytes{replace})"


def _pull_file(request: commands_pb2.PullFile) -> str:
    return f"pull file {printable(request.path)}"


def _collect_now(request: commands_pb2.CollectNow) -> str:
    return "collect and send a report now"


_DESCRIBERS: dict[str, Callable[[Any], str]] = {
    "run_script": _run_script,
    "list_processes": _list_processes,
    "kill_process": _kill_process,
    "list_services": _list_services,
    "service_control": _service_control,
    "reboot": _reboot,
    "push_file": _push_file,
    "pull_file": _pull_file,
    "collect_now": _collect_now,
}
