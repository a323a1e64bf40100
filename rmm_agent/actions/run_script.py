"""run_script: run a bash, sh, PowerShell or Python script, bounded in output and in time."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import psutil

from rmm_agent.actions.base import ActionContext, ActionFailed, Which, action
from rmm_common.command_summary import printable
from rmm_common.script_env import env_problem, scrubbed
from rmm_proto import commands_pb2

log = logging.getLogger(__name__)

SHELLS = ("bash", "sh", "powershell", "python")
_SUFFIXES = {"bash": ".sh", "sh": ".sh", "powershell": ".ps1", "python": ".py"}

# Windows process creation flags (subprocess defines them on Windows only).
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000

# After the script itself has ended, how long its output pipes may stay open: a process it
# left running in the background (`daemon &`) holds them, and must not hold the result too.
PIPE_GRACE_SECONDS = 2.0
# The most a request may keep of each stream, whatever it asks: the result must fit a gRPC
# message (4 MiB by default) and the agent's memory.
MAX_OUTPUT_LIMIT = 4 * 1024 * 1024
_CHUNK = 65536


def shell_command(
    shell: str,
    script: Path,
    *,
    platform: str = sys.platform,
    which: Which = shutil.which,
    python: str = sys.executable,
) -> list[str]:
    """Return the command line that runs `script` with `shell` on `platform` (args not added).

    Raise ActionFailed naming the shell when it is unknown or not available on this host.
    """
    windows = platform.startswith("win")
    if shell == "python":
        if not python:
            raise ActionFailed(
                "shell python: this agent cannot tell which Python runs it (sys.executable is "
                "empty); use another shell"
            )
        # -E: no PYTHON* variable counts, -s: no user site directory (whose .pth files run
        # code, found through HOME); rmm_common.script_env scrubs the environment too.
        return [python, "-E", "-s", str(script)]
    if shell in ("bash", "sh"):
        if windows:
            raise ActionFailed(f"shell {shell} does not run on Windows; use powershell or python")
        found = which(shell)
        if found is None:
            raise ActionFailed(
                f"shell {shell} is not installed on this host (not found on PATH); install it "
                "or use another shell"
            )
        return [found, str(script)]
    if shell == "powershell":
        if windows:
            return [
                "powershell.exe",
                "-NoProfile",
                "-NonInteractive",
                "-ExecutionPolicy",
                "Bypass",
                "-File",
                str(script),
            ]
        found = which("pwsh")
        if found is None:
            raise ActionFailed(
                "shell powershell needs pwsh (PowerShell 7) on this host, and it is not "
                "installed (not found on PATH); install it or use another shell"
            )
        # No -ExecutionPolicy: execution policies exist on Windows only.
        return [found, "-NoProfile", "-NonInteractive", "-File", str(script)]
    raise ActionFailed(f"unknown shell {printable(shell)}; this agent runs {', '.join(SHELLS)}")


def script_bytes(shell: str, body: str) -> bytes:
    """Return the script file's contents."""
    # Windows PowerShell 5.1 reads a UTF-8 file without a byte order mark as the ANSI code
    # page; with the mark both it and pwsh read UTF-8.
    return body.encode("utf-8-sig" if shell == "powershell" else "utf-8")


def popen_options(platform: str = sys.platform) -> dict[str, Any]:
    """Return the Popen arguments that put the script and its children in a group of their own."""
    if platform.startswith("win"):
        return {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}
    # A new session: the script's process group is its pid, and the group can be killed whole.
    return {"start_new_session": True}


def script_environment(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """Return the agent's environment with the request's variables added, scrubbed.

    A request that sets an interpreter-startup or loader variable (rmm_common.script_env) is
    refused whole; the same variables in the agent's own environment are dropped, so a script
    never inherits them however the agent was started.
    """
    problems = [
        problem for key, value in extra.items() if (problem := env_problem(key, value)) is not None
    ]
    if problems:
        raise ActionFailed("; ".join(problems), commands_pb2.COMMAND_REFUSED)
    merged = {**base, **extra}
    clean = scrubbed(merged)
    if len(clean) != len(merged):
        # Names only: values may be secrets, and the names say what to remove from the unit.
        dropped = sorted(set(merged) - set(clean))
        log.debug("run_script: dropped from the script's environment: %s", ", ".join(dropped))
    return clean


def exit_code(returncode: int) -> int:
    """Return the returncode as the signed 32-bit number ScriptResult carries."""
    # Windows exit codes are unsigned 32-bit (0xC0000005 for an access violation); shown
    # signed, as .NET shows them, they fit the int32 field.
    if returncode >= 2**31:
        return returncode - 2**32
    return returncode


def describe_exit(returncode: int, platform: str = sys.platform) -> str:
    """Say how a script ended, for the result's error."""
    if returncode < 0 and not platform.startswith("win"):
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"ended by signal {-returncode} ({name})"
    return f"exit code {returncode}"


class _Capture(threading.Thread):
    """Read one output stream to its end, keeping its first `limit` bytes.

    Reading on past the limit (and dropping it) keeps the pipe from filling: a child writing
    into a full pipe would block and never end.
    """

    def __init__(self, stream: IO[bytes], limit: int, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._stream = stream
        self._limit = limit
        self.kept = bytearray()
        self.truncated = False

    def run(self) -> None:
        fd = self._stream.fileno()
        try:
            while chunk := os.read(fd, _CHUNK):
                room = self._limit - len(self.kept)
                if len(chunk) > room:
                    self.truncated = True
                if room > 0:
                    self.kept += chunk[:room]
        except OSError as exc:
            log.warning("run_script: reading the script's %s failed: %s", self.name, exc)
        finally:
            self._stream.close()

    def text(self) -> str:
        """Return what was kept as text, invalid UTF-8 replaced, at most `limit` bytes long."""
        text, cut = output_text(bytes(self.kept), self._limit)
        self.truncated = self.truncated or cut
        return text


def output_text(data: bytes, limit: int) -> tuple[str, bool]:
    """Return `data` as text whose UTF-8 is at most `limit` bytes, and whether it was cut.

    Each invalid byte becomes U+FFFD, three bytes in UTF-8: binary output would otherwise
    triple in size, past the cap that keeps a result inside one gRPC message.
    """
    text = data.decode("utf-8", "replace")
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text, False
    # Cut on a character boundary: "ignore" drops only the partial character at the end.
    return encoded[:limit].decode("utf-8", "ignore"), True


def kill_tree(child: subprocess.Popen[bytes], platform: str = sys.platform) -> None:
    """Kill the script, its process group and every descendant that left the group."""
    try:
        descendants = psutil.Process(child.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    if not platform.startswith("win"):
        # ProcessLookupError: the group has ended already.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
    for proc in descendants:
        with contextlib.suppress(psutil.Error):  # gone already
            proc.kill()
    child.kill()


@action
def run(request: commands_pb2.RunScript, context: ActionContext) -> commands_pb2.CommandResult:
    """Run the script until it ends or the deadline passes."""
    limit = min(request.output_limit_bytes or context.config.script_output_limit, MAX_OUTPUT_LIMIT)
    env = script_environment(os.environ, request.env)
    if request.working_directory and not os.path.isdir(request.working_directory):
        raise ActionFailed(
            f"working directory {printable(request.working_directory)} does not exist or is "
            "not a directory"
        )
    if context.remaining() <= 0:
        raise ActionFailed(
            "the command's timeout passed before the script could start",
            commands_pb2.COMMAND_TIMED_OUT,
        )
    # mkdtemp makes the directory 0700: other users may not read or swap the script.
    scratch = Path(tempfile.mkdtemp(prefix="rmm-script-"))
    try:
        script = scratch / f"script{_SUFFIXES.get(request.shell, '')}"
        argv = [*shell_command(request.shell, script), *request.args]
        script.write_bytes(script_bytes(request.shell, request.body))
        return _run(argv, env, request.working_directory or str(scratch), limit, context)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run(
    argv: list[str], env: dict[str, str], cwd: str, limit: int, context: ActionContext
) -> commands_pb2.CommandResult:
    """Start `argv`, capture its output and wait for it within the deadline."""
    started = time.monotonic()
    try:
        child = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **popen_options(),
        )
    except (OSError, ValueError) as exc:
        raise ActionFailed(f"cannot start {argv[0]}: {exc}") from exc
    assert child.stdout is not None and child.stderr is not None
    captures = [
        _Capture(child.stdout, limit, "stdout"),
        _Capture(child.stderr, limit, "stderr"),
    ]
    for capture in captures:
        capture.start()
    timed_out = False
    try:
        child.wait(timeout=context.remaining())
    except subprocess.TimeoutExpired:
        timed_out = True
        ran_for = time.monotonic() - started
        kill_tree(child)
        child.wait()
    grace_until = time.monotonic() + PIPE_GRACE_SECONDS
    for capture in captures:
        capture.join(max(0.0, grace_until - time.monotonic()))
        if capture.is_alive():
            log.warning(
                "run_script: command %s: a process the script left running still holds its "
                "%s; output written after the script ended is not in the result",
                context.command.id,
                capture.name,
            )
    stdout, stderr = captures
    result = commands_pb2.ScriptResult(
        exit_code=exit_code(child.returncode),
        stdout=stdout.text(),
        stderr=stderr.text(),
        stdout_truncated=stdout.truncated,
        stderr_truncated=stderr.truncated,
        timed_out=timed_out,
    )
    if timed_out:
        raise ActionFailed(
            f"timed out after {ran_for:.1f}s; the script and its child processes were killed",
            commands_pb2.COMMAND_TIMED_OUT,
            script=result,
        )
    if child.returncode != 0:
        raise ActionFailed(describe_exit(child.returncode), script=result)
    return commands_pb2.CommandResult(status=commands_pb2.COMMAND_SUCCEEDED, script=result)
