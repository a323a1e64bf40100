"""The agent's launcher: run the current agent archive, swap in updates, roll back failed ones.

Standard library only, and run as a plain file copied to `<state>/agent/launcher.py`, so that an
update replaces the agent but never the process that supervises it. The agent (the child) asks
for an update by downloading and verifying it, writing `update.json` and exiting with
EXIT_UPDATE_READY; the launcher keeps the old archive as `previous.pyz`, starts the new one, and
waits for `confirmed-<version>`, which the new agent writes once the server acknowledged one of its
reports. Without it in time, or when the new agent keeps exiting, the old archive comes back and
the version is recorded in `rejected.json` so that it is not tried again.

State layout under `<state>/agent/` (see docs/self-update.md):
  current.pyz, previous.pyz, incoming/<version>.pyz[.part], update.json (the agent's request),
  trial.json (an update on trial), confirmed-<version>, rejected.json, status.json (last outcome).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

LAUNCHER_ENV = "RMM_AGENT_LAUNCHER"  # set for the child: "1" is this launcher's protocol
LAUNCHER_PROTOCOL = "1"
EXIT_UPDATE_READY = 10  # the child downloaded an update and asks to be swapped
EXIT_USAGE = 2
# The agent's own codes for "starting again will not help": bad usage or configuration (2),
# refused by the server (3).
PERMANENT_EXIT_CODES = frozenset({2, 3})
DEFAULT_CONFIRM_TIMEOUT = 120.0
STABLE_AFTER_SECONDS = 60.0  # a child that ran this long resets the restart back-off

log = logging.getLogger("rmm_agent.launcher")


def under_launcher(environ: Mapping[str, str]) -> bool:
    """Tell whether this process is a launcher's child (it set LAUNCHER_ENV to its protocol)."""
    return environ.get(LAUNCHER_ENV) == LAUNCHER_PROTOCOL


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the launcher and the agent keep archives and update state."""

    root: Path

    @classmethod
    def of(cls, state_dir: Path) -> Layout:
        """Return the layout inside an agent state directory."""
        return cls(state_dir / "agent")

    @property
    def current(self) -> Path:
        return self.root / "current.pyz"

    @property
    def previous(self) -> Path:
        return self.root / "previous.pyz"

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def update_request(self) -> Path:
        return self.root / "update.json"

    @property
    def trial(self) -> Path:
        return self.root / "trial.json"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected.json"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def launcher(self) -> Path:
        return self.root / "launcher.py"

    def incoming_archive(self, version: str) -> Path:
        return self.incoming / f"{version}.pyz"

    def confirmation(self, version: str) -> Path:
        return self.root / f"confirmed-{version}"


def read_json(path: Path) -> dict[str, Any] | None:
    """Return the JSON object in `path`, or None when it is missing or damaged (logged)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.error("ignoring %s: %s", path, exc)
        return None
    if not isinstance(data, dict):
        log.error("ignoring %s: not a JSON object", path)
        return None
    return data


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write `data` to `path` atomically and durably."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_rejected(layout: Layout) -> dict[str, Any]:
    """Return {version: why} for every version rolled back here."""
    return read_json(layout.rejected) or {}


def file_sha256(path: Path) -> str:
    """Return the hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


class Child(Protocol):
    """A running agent process."""

    def wait(self, timeout: float) -> int | None:
        """Wait up to `timeout` seconds; return the exit code, or None if still running."""

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM)."""

    def kill(self) -> None:
        """Stop it now."""


Spawn = Callable[[Sequence[str], Mapping[str, str]], Child]


class PopenChild:
    """A real child process."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.process = subprocess.Popen(list(argv), env=dict(env))

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()


@dataclass(slots=True)
class Trial:
    """An update that runs but has not confirmed yet."""

    from_version: str
    to_version: str
    deadline: float
    exits: int = 0


_STOPPED = -1000  # _watch(): the launcher was told to stop
_ROLLED_BACK = -1001  # _watch(): the trial failed and the previous archive is back


class Launcher:
    """Supervise the agent archive: restart it, apply updates, roll back failures."""

    def __init__(
        self,
        layout: Layout,
        command: Callable[[Path], Sequence[str]],
        spawn: Spawn,
        env: Mapping[str, str],
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] | None = None,
        confirm_timeout: float = DEFAULT_CONFIRM_TIMEOUT,
        max_trial_exits: int = 3,
        stop_grace: float = 10.0,
        trial_poll: float = 0.5,
        idle_poll: float = 5.0,
        max_backoff: float = 60.0,
    ) -> None:
        self.layout = layout
        self.command = command
        self.spawn = spawn
        self.env = {**env, LAUNCHER_ENV: LAUNCHER_PROTOCOL}
        self.clock = clock
        self.wall_clock = wall_clock
        self._stop_event = threading.Event()
        self.sleep = sleep or self._stop_event.wait
        self.confirm_timeout = confirm_timeout
        self.max_trial_exits = max_trial_exits
        self.stop_grace = stop_grace
        self.trial_poll = trial_poll
        self.idle_poll = idle_poll
        self.max_backoff = max_backoff
        self.trial: Trial | None = None
        self.child: Child | None = None
        self.stop_requested = False

    def request_stop(self) -> None:
        """Stop the child and then the launcher (safe from a signal handler)."""
        self.stop_requested = True
        self._stop_event.set()
        if self.child is not None:
            self.child.terminate()

    def run(self) -> int:
        """Supervise until told to stop (0) or the agent exits for good (its code)."""
        self._recover()
        backoff = 0.0
        while not self.stop_requested:
            started = self.clock()
            self.child = self.spawn(self.command(self.layout.current), self.env)
            code = self._watch(self.child)
            self.child = None
            if code == _STOPPED or self.stop_requested:
                break
            if code == _ROLLED_BACK:
                continue
            if code == EXIT_UPDATE_READY and self._apply_update_request():
                continue
            if self.trial is not None:
                self.trial.exits += 1
                if code in PERMANENT_EXIT_CODES or self.trial.exits >= self.max_trial_exits:
                    self._rollback(
                        f"it exited with code {code} ({self.trial.exits} times) before reporting"
                    )
                    continue
                log.warning(
                    "agent %s exited with code %d on trial; starting it again",
                    self.trial.to_version,
                    code,
                )
                self.sleep(1.0)
                continue
            if code in PERMANENT_EXIT_CODES:
                log.error("the agent exited with code %d; starting it again will not help", code)
                return code
            ran = self.clock() - started
            stable = ran >= STABLE_AFTER_SECONDS
            backoff = 1.0 if stable else min(self.max_backoff, backoff * 2 or 1.0)
            log.warning(
                "the agent exited with code %d after %.0fs; starting it again in %gs",
                code,
                ran,
                backoff,
            )
            self.sleep(backoff)
        log.info("launcher stopped")
        return 0

    def _watch(self, child: Child) -> int:
        code: int | None = None
        while True:
            trial = self.trial
            if not self.stop_requested:
                code = child.wait(self.trial_poll if trial is not None else self.idle_poll)
            if self.stop_requested:
                self._stop_child(child)
                return _STOPPED
            if trial is not None:
                if self.layout.confirmation(trial.to_version).exists():
                    self._confirm(trial)
                elif code is None and self.clock() >= trial.deadline:
                    self._stop_child(child)
                    self._rollback(f"it did not report within {self.confirm_timeout:g}s")
                    return _ROLLED_BACK
            if code is not None:
                return code

    def _stop_child(self, child: Child) -> None:
        child.terminate()
        if child.wait(self.stop_grace) is None:
            log.warning("the agent did not stop within %gs of SIGTERM; killing it", self.stop_grace)
            child.kill()
            child.wait(self.stop_grace)

    def _recover(self) -> None:
        """Finish what a launcher that died mid-update left behind."""
        layout = self.layout
        layout.incoming.mkdir(parents=True, exist_ok=True)
        trial = read_json(layout.trial)
        if trial is not None:
            to_version = str(trial.get("to", ""))
            incoming = layout.incoming_archive(to_version)
            if to_version and incoming.exists():
                if layout.current.exists():  # the swap never started: forget it
                    log.warning("an update to %s was interrupted before the swap", to_version)
                    incoming.unlink()
                    layout.trial.unlink()
                    trial = None
                else:  # the old archive is previous.pyz already: finish the swap
                    os.replace(incoming, layout.current)
        if not layout.current.exists():
            if not layout.previous.exists():
                raise FileNotFoundError(
                    f"{layout.current} does not exist: install the agent with "
                    f"`python3 rmm-agent.pyz launch --state-dir {layout.root.parent}`"
                )
            log.warning("%s is missing: restoring %s", layout.current, layout.previous)
            os.replace(layout.previous, layout.current)
            layout.trial.unlink(missing_ok=True)
            trial = None
        if trial is not None:
            self.trial = Trial(
                str(trial.get("from", "")),
                str(trial.get("to", "")),
                self.clock() + self.confirm_timeout,
            )
            log.info(
                "agent %s is still on trial: it has %gs to report",
                self.trial.to_version,
                self.confirm_timeout,
            )

    def _apply_update_request(self) -> bool:
        """Swap in the update the agent asked for; say whether it is now on trial."""
        layout = self.layout
        request = read_json(layout.update_request)
        layout.update_request.unlink(missing_ok=True)
        if request is None:
            log.error("the agent exited to update but %s is missing", layout.update_request)
            return False
        if self.trial is not None:
            log.error(
                "agent %s asked for another update before it confirmed; ignored",
                self.trial.to_version,
            )
            return False
        from_version = str(request.get("from", ""))
        to_version = str(request.get("to", ""))
        sha256 = str(request.get("sha256", ""))
        archive = layout.incoming_archive(to_version)
        if not to_version or "/" in to_version or to_version.startswith("."):
            log.error("%s names no usable version: %r", layout.update_request, to_version)
            return False
        if to_version in read_rejected(layout):
            log.warning("agent %s was rolled back here before; not trying it again", to_version)
            archive.unlink(missing_ok=True)
            return False
        try:
            actual = file_sha256(archive)
        except OSError as exc:
            log.error("cannot read the downloaded agent %s at %s: %s", to_version, archive, exc)
            return False
        if actual != sha256:
            log.error(
                "%s has sha256 %s, the agent verified %s: damaged on disk; not applied",
                archive,
                actual,
                sha256,
            )
            archive.unlink(missing_ok=True)
            return False
        write_json(layout.trial, {"from": from_version, "to": to_version})
        os.replace(layout.current, layout.previous)
        os.replace(archive, layout.current)
        layout.confirmation(to_version).unlink(missing_ok=True)
        self.trial = Trial(from_version, to_version, self.clock() + self.confirm_timeout)
        log.info(
            "updating the agent from %s to %s; it must report within %gs or %s comes back",
            from_version,
            to_version,
            self.confirm_timeout,
            from_version,
        )
        return True

    def _confirm(self, trial: Trial) -> None:
        self._write_status("updated", trial, "")
        self.layout.trial.unlink(missing_ok=True)
        self.trial = None
        log.info(
            "agent %s reported: the update from %s is done", trial.to_version, trial.from_version
        )

    def _rollback(self, reason: str) -> None:
        trial = self.trial
        assert trial is not None
        layout = self.layout
        if layout.previous.exists():
            os.replace(layout.previous, layout.current)
        else:
            log.error(
                "cannot roll back: %s is missing; keeping %s", layout.previous, trial.to_version
            )
        rejected = read_rejected(layout)
        rejected[trial.to_version] = {
            "from": trial.from_version,
            "reason": reason,
            "at": self.wall_clock(),
        }
        write_json(layout.rejected, rejected)
        self._write_status("rolled_back", trial, reason)
        layout.trial.unlink(missing_ok=True)
        self.trial = None
        log.error(
            "agent %s rolled back to %s: %s; it will not be tried again here (remove it from %s "
            "to allow it)",
            trial.to_version,
            trial.from_version,
            reason,
            layout.rejected,
        )

    def _write_status(self, state: str, trial: Trial, reason: str) -> None:
        write_json(
            self.layout.status,
            {
                "state": state,
                "from": trial.from_version,
                "to": trial.to_version,
                "reason": reason,
                "at": self.wall_clock(),
            },
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the launcher from the command line."""
    # Here, not at the top: the running agent imports this module for its constants, and
    # argparse would stay in its memory for nothing.
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="rmm-agent-launcher",
        description="Run the RMM agent archive, apply updates it downloads, roll back failures.",
    )
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument(
        "--python", default=sys.executable, help="Interpreter for the agent archive."
    )
    parser.add_argument(
        "--confirm-timeout",
        type=float,
        default=DEFAULT_CONFIRM_TIMEOUT,
        help="Seconds a new agent has to report before it is rolled back.",
    )
    parser.add_argument("run_args", nargs="*", help="Passed to `rmm-agent run` (after --).")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s rmm-agent-launcher: %(message)s"
    )
    layout = Layout.of(args.state_dir)
    state_dir = str(args.state_dir)

    def command(archive: Path) -> list[str]:
        return [args.python, str(archive), "run", "--state-dir", state_dir, *args.run_args]

    launcher = Launcher(
        layout, command, PopenChild, os.environ, confirm_timeout=args.confirm_timeout
    )

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: stopping the agent", signal.Signals(signum).name)
        launcher.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return launcher.run()
    except OSError as exc:
        log.error("%s", exc)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
