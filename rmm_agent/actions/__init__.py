"""Remote actions: what the agent does when a verified command arrives.

`execute()` runs one command: it refuses what the host's configuration forbids, dispatches to
the action's module (one per field of Command's `action` oneof, each with a
`run(request, context) -> CommandResult`) and never raises. What a command will do, in one line
for logs and consent prompts, is rmm_common.command_summary.describe(): the server words it alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rmm_agent.actions import (
    collect_now,
    driver_package,
    install_updates,
    kill_process,
    list_processes,
    list_services,
    pull_file,
    push_file,
    reboot,
    run_script,
    service_control,
)
from rmm_agent.actions.base import ActionContext, ActionFailed
from rmm_agent.actions.reboot import clear_pending_reboot, pending_reboot
from rmm_agent.config import AgentConfig
from rmm_common.command_summary import printable
from rmm_proto import commands_pb2

__all__ = [
    "ACTIONS",
    "INTERACTIVE",
    "ActionContext",
    "ActionFailed",
    "ActionFn",
    "clear_pending_reboot",
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
    "install_updates": install_updates.run,
    "driver_package": driver_package.run,
}

# Actions that change the host or read its files: in "ask" consent mode a logged-in user must
# approve them. Listing and collecting only read what the reports show anyway.
INTERACTIVE = frozenset(
    {
        "run_script",
        "kill_process",
        "service_control",
        "reboot",
        "push_file",
        "pull_file",
        "driver_package",
    }
)


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
