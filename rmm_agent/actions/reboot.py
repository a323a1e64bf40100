"""reboot: restart the host, and confirm it once the agent runs again.

The RUNNING result goes out first; the reboot command starts a moment later. What is known
before the reboot (who was logged in, the boot time) is written to the state directory, and
the agent that starts after the reboot reads it back (pending_reboot) to send the final
SUCCEEDED result with the new boot time.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from rmm_agent.actions.base import ActionContext, ActionFailed, action
from rmm_agent.consent import clean
from rmm_common.files import write_private
from rmm_proto import commands_pb2

log = logging.getLogger(__name__)

PENDING_FILE = "reboot_pending.json"
# The least wait before the reboot command starts: time for the RUNNING result to get out.
MIN_DELAY_SECONDS = 2.0
# `systemctl reboot` and `shutdown` return as soon as the reboot is under way.
COMMAND_TIMEOUT_SECONDS = 120.0
# An agent still running this long after the reboot (and its own delay) was under way says the
# host did not restart: a shutdown stops services well within it. Without this a reboot that
# never happened (inhibited, cancelled with `shutdown -c`) would stay RUNNING for good.
RESTART_DEADLINE_SECONDS = 600.0
# Windows' shutdown.exe takes a comment of at most 512 characters.
MAX_WINDOWS_COMMENT = 512


def default_command(platform: str, delay_seconds: float, reason: str) -> tuple[list[str], bool]:
    """Return the OS's reboot command line, and whether that command itself waits the delay.

    A scheduled shutdown (`shutdown -r +MIN`, `shutdown /r /t S`) warns logged-in users and
    survives the agent stopping meanwhile; `shutdown` counts in whole minutes on Linux and
    macOS, so a delay is rounded up to the next minute there.
    """
    reason = clean(reason, None)  # it goes to every terminal (wall) or a dialog
    if platform.startswith("win"):
        argv = ["shutdown", "/r", "/t", str(math.ceil(max(delay_seconds, 0.0)))]
        if reason:
            argv += ["/c", reason[:MAX_WINDOWS_COMMENT]]
        return argv, True
    if delay_seconds <= 0:
        if platform == "darwin":
            return ["shutdown", "-r", "now", *([reason] if reason else [])], False
        return ["systemctl", "reboot"], False
    argv = ["shutdown", "-r", f"+{math.ceil(delay_seconds / 60)}"]
    if reason:
        # "--": a reason starting with "-" is no option (BSD getopt stops at the time anyway).
        argv += ["--", reason] if platform != "darwin" else [reason]
    return argv, True


def reboot_command(
    configured: list[str] | None, platform: str, delay_seconds: float, reason: str
) -> tuple[list[str], float]:
    """Return the reboot command line and how long to wait before starting it."""
    if configured:
        # The host owner's command knows nothing of the delay: the agent waits it out.
        return list(configured), max(delay_seconds, MIN_DELAY_SECONDS)
    argv, waits = default_command(platform, delay_seconds, reason)
    return argv, MIN_DELAY_SECONDS if waits else max(delay_seconds, MIN_DELAY_SECONDS)


def sessions_now(psutil_module: Any = psutil) -> list[commands_pb2.LoggedInUser]:
    """Return who is logged in now."""
    return [
        commands_pb2.LoggedInUser(
            name=user.name or "",
            terminal=user.terminal or "",
            host=user.host or "",
            started_at=float(user.started or 0.0),
        )
        for user in psutil_module.users()
    ]


@action
def run(request: commands_pb2.Reboot, context: ActionContext) -> commands_pb2.CommandResult:
    """Record the reboot, start it in the background and answer RUNNING."""
    if request.delay_seconds < 0 or not math.isfinite(request.delay_seconds):
        raise ActionFailed(f"reboot: delay_seconds must be 0 or more, not {request.delay_seconds}")
    argv, wait = reboot_command(
        context.config.reboot_command, sys.platform, request.delay_seconds, request.reason
    )
    result = commands_pb2.RebootResult(
        sessions=sessions_now(),
        requested_at=context.clock(),
        boot_time_before=psutil.boot_time(),
    )
    command_id = context.command.id
    record = {
        "command_id": command_id,
        "requested_at": result.requested_at,
        "boot_time_before": result.boot_time_before,
        "sessions": [
            {"name": s.name, "terminal": s.terminal, "host": s.host, "started_at": s.started_at}
            for s in result.sessions
        ],
        "command": argv,
    }
    path = context.state_dir / PENDING_FILE
    try:
        write_private(path, json.dumps(record, indent=2).encode("utf-8"))
    except OSError as exc:
        # Without the record the agent could never confirm the reboot: do not start it.
        raise ActionFailed(
            f"cannot record the pending reboot in {path}: {exc.strerror or exc}; not rebooting"
        ) from exc
    # A command that waits the delay itself (`shutdown -r +MIN` rounds up to a minute) returns
    # at once; the restart is due by the end of the delay.
    restart_within = RESTART_DEADLINE_SECONDS + math.ceil(max(request.delay_seconds, 0) / 60) * 60
    threading.Thread(
        target=_reboot_later,
        args=(
            argv,
            wait,
            restart_within,
            command_id,
            result,
            context.state_dir,
            context.send_later,
            context.clock,
            context.sleep,
        ),
        name=f"reboot {command_id}",
        # The agent may stop before the wait is over (it is being stopped for the reboot, or
        # by someone): it must not wait for this thread.
        daemon=True,
    ).start()
    log.info("reboot: command %s: running %s in %.0fs", command_id, " ".join(argv), wait)
    return commands_pb2.CommandResult(status=commands_pb2.COMMAND_RUNNING, reboot=result)


def _reboot_later(
    argv: list[str],
    wait: float,
    restart_within: float,
    command_id: str,
    result: commands_pb2.RebootResult,
    state_dir: Path,
    send_later: Callable[[commands_pb2.CommandResult], None],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> None:
    """Start the reboot command after `wait` seconds; report it FAILED if it fails, or if this
    agent is still running `restart_within` seconds after it succeeded."""
    sleep(wait)
    error = start_reboot(argv)
    if error is None:
        started = clock()
        sleep(restart_within)  # the reboot ends this thread with the agent
        pending = _read(state_dir / PENDING_FILE)
        if pending is None or pending["command_id"] != command_id:
            return  # confirmed or replaced meanwhile
        error = (
            f"the reboot command {' '.join(argv)} succeeded but the host had not restarted "
            f"{clock() - started:.0f}s later (the agent kept running): the reboot was "
            "cancelled or blocked on the host"
        )
    log.error("reboot: command %s: %s", command_id, error)
    clear_pending_reboot(state_dir, command_id)
    failed = commands_pb2.CommandResult(
        command_id=command_id,
        status=commands_pb2.COMMAND_FAILED,
        error=error,
        started_at=result.requested_at,
        finished_at=clock(),
        reboot=result,
    )
    try:
        send_later(failed)
    except Exception:
        log.exception("reboot: command %s: cannot send the failed result", command_id)


def start_reboot(argv: list[str]) -> str | None:
    """Run the reboot command; return None when it succeeded, else what went wrong."""
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=COMMAND_TIMEOUT_SECONDS
        )
    except FileNotFoundError:
        return f"the reboot command {argv[0]} is not installed on this host"
    except subprocess.TimeoutExpired:
        return f"the reboot command {' '.join(argv)} did not finish in {COMMAND_TIMEOUT_SECONDS:g}s"
    except OSError as exc:
        return f"cannot run the reboot command {' '.join(argv)}: {exc}"
    if done.returncode != 0:
        said = (done.stderr or done.stdout).decode("utf-8", "replace").strip()[:500]
        return (
            f"the reboot command {' '.join(argv)} exited {done.returncode}: {said or 'no output'}"
        )
    return None


def _read(path: Path) -> dict[str, Any] | None:
    """Read a pending reboot record; None when there is none. A damaged one is removed."""
    try:
        data = json.loads(path.read_bytes())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if not isinstance(data["command_id"], str) or not data["command_id"]:
            raise ValueError("command_id is not a non-empty string")
        float(data["requested_at"])
        float(data["boot_time_before"])
        for session in data["sessions"]:
            commands_pb2.LoggedInUser(**session)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.error("reboot: %s is damaged (%s); removed, the reboot cannot be confirmed", path, exc)
        path.unlink(missing_ok=True)
        return None
    return data


def pending_reboot(
    state_dir: Path, clock: Callable[[], float] = time.time
) -> commands_pb2.CommandResult | None:
    """Return the final result of a reboot asked for before this agent started, if any.

    Call it at start; once the result is delivered, clear_pending_reboot() removes the record.
    `clock` says when the agent is back.
    """
    data = _read(state_dir / PENDING_FILE)
    if data is None:
        return None
    now = clock()
    return commands_pb2.CommandResult(
        command_id=data["command_id"],
        status=commands_pb2.COMMAND_SUCCEEDED,
        started_at=float(data["requested_at"]),
        finished_at=now,
        reboot=commands_pb2.RebootResult(
            sessions=[commands_pb2.LoggedInUser(**session) for session in data["sessions"]],
            requested_at=float(data["requested_at"]),
            back_at=now,
            boot_time_before=float(data["boot_time_before"]),
            # Equal to boot_time_before when only the agent restarted.
            boot_time_after=psutil.boot_time(),
        ),
    )


def clear_pending_reboot(state_dir: Path, command_id: str) -> None:
    """Remove the pending reboot record of `command_id` (not a newer one for another command)."""
    path = state_dir / PENDING_FILE
    data = _read(path)
    if data is None:
        return
    if data["command_id"] != command_id:
        log.info("reboot: %s is for command %s, not %s; kept", path, data["command_id"], command_id)
        return
    path.unlink(missing_ok=True)
