"""Command summaries: one line saying what a command does, worded alike by agent and server.

The agent logs it and asks a logged-in user's consent with it; the server shows it in run
summaries and the command history.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rmm_proto import commands_pb2

# What service_control's operations are called, in words and on the command lines of service
# managers (`systemctl restart`...).
SERVICE_VERBS = {
    commands_pb2.SERVICE_START: "start",
    commands_pb2.SERVICE_STOP: "stop",
    commands_pb2.SERVICE_RESTART: "restart",
}

# How much of an ad-hoc script's body describe() shows.
BODY_PREVIEW_CHARS = 60


def printable(text: str, limit: int = 200) -> str:
    """Return `text` as is when it is one plain line, else quoted with escapes, bounded.

    Names and paths come from the server and end up in logs and consent prompts: a newline or
    terminal escape in them must not be able to forge a line.
    """
    shown = text if text.isprintable() and text.strip() == text and text else repr(text)
    if len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    return shown


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
    operation = SERVICE_VERBS.get(request.operation, f"operation {request.operation} on")
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


def _install_updates(request: commands_pb2.InstallUpdates) -> str:
    ids = list(request.update_ids)
    shown = ", ".join(printable(update_id, 80) for update_id in ids[:5])
    if len(ids) > 5:
        shown += f" and {len(ids) - 5} more"
    only = f" with {printable(request.backend)}" if request.backend else ""
    return f"install {len(ids)} update(s){only}: {shown}"


def _driver_package(request: commands_pb2.DriverPackage) -> str:
    if request.operation == "rollback":
        return f"roll back driver {printable(request.kind)} {printable(request.package, 80)}"
    device = f" on device {printable(request.device, 80)}" if request.device else ""
    return (
        f"install driver package {printable(request.file_name, 80)} ({len(request.data)} bytes, "
        f"sha256 {printable(request.sha256[:16])}){device}"
    )


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
    "install_updates": _install_updates,
    "driver_package": _driver_package,
}
