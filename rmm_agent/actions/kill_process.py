"""kill_process: end a process by pid, or every process of one name; never the agent's own."""

from __future__ import annotations

import os
import time

import psutil

from rmm_agent.actions.base import ActionContext, ActionFailed, action, succeeded
from rmm_agent.actions.list_processes import process_info
from rmm_common.command_summary import printable
from rmm_proto import commands_pb2

# How long a process asked to end (SIGTERM, or TerminateProcess) has before it is killed.
TERMINATE_GRACE_SECONDS = 5.0
# How long a killed process has to disappear before it is reported as still running.
KILL_WAIT_SECONDS = 2.0
_POLL_SECONDS = 0.05


def protected_pids() -> dict[int, str]:
    """Return the pids no remote command may end, with the reason for each."""
    protected = {0: "the system idle process", 1: "the init process"}
    agent = psutil.Process(os.getpid())
    protected[agent.pid] = "the agent itself"
    # Its parents: the service manager or launcher that restarts it, the update launcher.
    for parent in agent.parents():
        protected.setdefault(parent.pid, "a parent of the agent")
    return protected


def find_targets(pid: int, name: str) -> list[psutil.Process]:
    """Return the process with `pid`, or every process named exactly `name`."""
    if pid:
        try:
            proc = psutil.Process(pid)
        except psutil.NoSuchProcess:
            raise ActionFailed(f"no process with pid {pid}") from None
        if name:
            # A pid and a name: the name guards against the pid having been reused since the
            # operator looked.
            try:
                actual = proc.name()
            except psutil.Error as exc:
                raise ActionFailed(f"pid {pid}: cannot read its name to check it: {exc}") from None
            if actual != name:
                raise ActionFailed(
                    f"pid {pid} is named {printable(actual)}, not {printable(name)}; nothing killed"
                )
        return [proc]
    if not name:
        raise ActionFailed("kill_process needs a pid or a name; it got neither")
    targets = [p for p in psutil.process_iter(["name"]) if p.info.get("name") == name]
    if not targets:
        raise ActionFailed(f"no process named {printable(name)}")
    return targets


def ended(proc: psutil.Process) -> bool:
    """Say whether a process is gone (a zombie is: it only waits for its parent to reap it)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_ended(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to `timeout` seconds for `procs` to end; return those still running."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if not ended(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
        alive = [p for p in alive if not ended(p)]
    return alive


def _label(proc: psutil.Process, info: commands_pb2.ProcessInfo | None) -> str:
    name = info.name if info is not None and info.name else "?"
    return f"pid {proc.pid} ({printable(name)})"


@action
def run(request: commands_pb2.KillProcess, context: ActionContext) -> commands_pb2.CommandResult:
    """End the targets: ask first (unless forced), then kill those that did not listen."""
    targets = find_targets(request.pid, request.name)
    protected = protected_pids()
    errors: list[str] = []
    infos: dict[int, commands_pb2.ProcessInfo] = {}
    signalled: list[psutil.Process] = []
    for proc in targets:
        try:
            # Described before it ends: afterwards there is nothing left to read.
            infos[proc.pid] = process_info(proc, 0.0)
        except psutil.NoSuchProcess:
            continue  # ended on its own meanwhile
        if proc.pid in protected:
            errors.append(f"{_label(proc, infos[proc.pid])}: refused: it is {protected[proc.pid]}")
            continue
        try:
            if request.force:
                proc.kill()
            else:
                proc.terminate()
        except psutil.NoSuchProcess:
            pass  # ended meanwhile: what was asked is done
        except psutil.AccessDenied as exc:
            errors.append(f"{_label(proc, infos[proc.pid])}: access denied: {exc}")
            continue
        signalled.append(proc)
    grace = 0.0 if request.force else min(TERMINATE_GRACE_SECONDS, context.remaining())
    alive = wait_ended(signalled, grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
        except psutil.AccessDenied as exc:
            errors.append(f"{_label(proc, infos[proc.pid])}: access denied: {exc}")
    still = wait_ended(alive, KILL_WAIT_SECONDS)
    for proc in still:
        label = _label(proc, infos[proc.pid])
        if not any(error.startswith(f"{label}:") for error in errors):
            errors.append(f"{label}: still running after it was killed")
    still_pids = {p.pid for p in still}
    killed = [infos[p.pid] for p in signalled if p.pid not in still_pids]
    result = commands_pb2.KillResult(killed=killed, errors=errors)
    if errors:
        raise ActionFailed("; ".join(errors), kill=result)
    if not killed:
        what = f"pid {request.pid}" if request.pid else f"named {printable(request.name)}"
        raise ActionFailed(f"no process {what} was left to end", kill=result)
    return succeeded(kill=result)
