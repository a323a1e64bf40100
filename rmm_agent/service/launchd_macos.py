"""The agent as a launchd daemon on macOS: a plist in /Library/LaunchDaemons, bootstrapped."""

from __future__ import annotations

import contextlib
import plistlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rmm_agent.service.base import CommandRunner, ServiceError, ServiceSpec

LABEL = "com.rmm.agent"
DEFAULT_DAEMON_DIR = Path("/Library/LaunchDaemons")
STATIC_PROGRAM = (
    "/usr/local/bin/rmm-agent",
    "run",
    "--state-dir",
    "/Library/Application Support/rmm-agent",
)
LOG_PATH = "/Library/Logs/rmm-agent.log"
# launchd's restart back-off: at most one start per this many seconds.
THROTTLE_SECONDS = 10


def render_plist(program_arguments: Sequence[str], log_path: str = LOG_PATH) -> str:
    """Return the daemon's plist: run at boot, restarted when it exits with a failure."""
    if not program_arguments:
        raise ServiceError("the daemon needs a command to run (empty ProgramArguments)")
    plist = {
        "Label": LABEL,
        "ProgramArguments": list(program_arguments),
        "RunAtLoad": True,
        # Restart after a crash or a failing exit, not after a clean stop.
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": THROTTLE_SECONDS,
        "ProcessType": "Standard",
        # SIGTERM, then this long before SIGKILL: time to stop a running action cleanly.
        "ExitTimeOut": 60,
        "EnvironmentVariables": {
            "PYTHONUNBUFFERED": "1",
            "SHIV_ROOT": "/Library/Caches/rmm-agent",
        },
        "StandardOutPath": log_path,
        "StandardErrorPath": log_path,
    }
    return plistlib.dumps(plist, sort_keys=False).decode()


def render_static_plist() -> str:
    """Return deploy/macos/com.rmm.agent.plist: the daemon for a standard install path."""
    return render_plist(STATIC_PROGRAM)


@dataclass
class LaunchdBackend:
    """Install the plist into `daemon_dir` and bootstrap it into launchd's system domain."""

    runner: CommandRunner
    daemon_dir: Path = DEFAULT_DAEMON_DIR
    launchctl: str = "launchctl"

    @property
    def plist_path(self) -> Path:
        return self.daemon_dir / f"{LABEL}.plist"

    def install(self, spec: ServiceSpec, start: bool = True) -> list[str]:
        """Write the plist (root-owned, 0644 as launchd demands) and bootstrap it."""
        try:
            spec.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.daemon_dir.mkdir(parents=True, exist_ok=True)
            self.plist_path.write_text(render_plist(spec.run_argv()))
            self.plist_path.chmod(0o644)
        except OSError as exc:
            raise ServiceError(
                f"cannot write {self.plist_path}: {exc.strerror} (run with sudo, or pass "
                "--unit-dir)"
            ) from None
        done = [f"wrote {self.plist_path}"]
        if start:
            # A daemon loaded by an earlier install would make bootstrap fail; usually none is.
            with contextlib.suppress(ServiceError):
                self.runner([self.launchctl, "bootout", f"system/{LABEL}"])
            for command in (
                [self.launchctl, "enable", f"system/{LABEL}"],
                [self.launchctl, "bootstrap", "system", str(self.plist_path)],
            ):
                self.runner(command)
                done.append(" ".join(command))
        return done

    def uninstall(self) -> list[str]:
        """Boot the daemon out of launchd and remove its plist."""
        if not self.plist_path.exists():
            return [f"no plist at {self.plist_path}: nothing to remove"]
        command = [self.launchctl, "bootout", f"system/{LABEL}"]
        # Not loaded (never started, or booted out already): removing the file is enough.
        with contextlib.suppress(ServiceError):
            self.runner(command)
        try:
            self.plist_path.unlink()
        except OSError as exc:
            raise ServiceError(f"cannot remove {self.plist_path}: {exc.strerror}") from None
        return [" ".join(command), f"removed {self.plist_path}"]


def backend(runner: CommandRunner, unit_dir: Path | None = None) -> LaunchdBackend:
    """Return this host's backend: the plist into `unit_dir` (default /Library/LaunchDaemons)."""
    return LaunchdBackend(runner, unit_dir or DEFAULT_DAEMON_DIR)
