"""What a patch backend is, what it reports, and how an install is run and checked."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

log = logging.getLogger(__name__)

# Every classification an update can have: a bounded label set, exported even at zero.
SECURITY = "security"
CRITICAL = "critical"
BUGFIX = "bugfix"
FEATURE = "feature"
DRIVER = "driver"
FIRMWARE = "firmware"
THIRD_PARTY = "third-party"
CLASSIFICATIONS = (SECURITY, CRITICAL, BUGFIX, FEATURE, DRIVER, FIRMWARE, THIRD_PARTY)
# A distribution's package manager tells security fixes from the rest, which are bug fixes in
# a stable release (Debian's stable-updates, RHEL's bugfix advisories).
PACKAGE_CLASSIFICATIONS = (SECURITY, BUGFIX)

# What an install did to each update it was asked for.
INSTALLED = "installed"
FAILED = "failed"  # with the package manager's own message
SKIPPED = "skipped"  # not pending on this host (unknown id, already current)
LOCKED = "locked"  # another package manager run holds the lock: retry later in the window
INTERRUPTED = "interrupted"  # killed or out of time mid-install: the host may be half-done
INSTALL_STATUSES = (INSTALLED, FAILED, SKIPPED, LOCKED, INTERRUPTED)


@dataclass(frozen=True, slots=True)
class PendingUpdate:
    """One update the host could install."""

    id: str  # "<backend>:<key>", stable across scans (apt:openssl, winget:Git.Git)
    name: str
    current: str | None  # installed version, None where the backend does not say
    available: str
    classification: str  # one of CLASSIFICATIONS
    backend: str
    source: str = ""  # repository, origin or catalog it comes from
    severity: str = ""  # the vendor's word (Critical, Important, ...), "" where unknown
    # When the update was published (seconds since the epoch), where the backend knows it.
    published: float | None = None
    size_bytes: int | None = None
    reboot_required: bool = False
    # The hardware a driver or firmware update is for (Windows Update's DriverHardwareID,
    # fwupd's device GUIDs): a server approval rule may pin them. Empty for software.
    hardware_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the update as a JSON-ready dict (hardware_ids only when there are some)."""
        extra: dict[str, Any] = (
            {"hardware_ids": list(self.hardware_ids)} if self.hardware_ids else {}
        )
        return {
            "id": self.id,
            "name": self.name,
            "current": self.current,
            "available": self.available,
            "classification": self.classification,
            "backend": self.backend,
            "source": self.source,
            "severity": self.severity,
            "published": self.published,
            "size_bytes": self.size_bytes,
            "reboot_required": self.reboot_required,
            **extra,
        }


@dataclass(frozen=True, slots=True)
class InstallOutcome:
    """What became of one update an install was asked for."""

    id: str
    status: str  # one of INSTALL_STATUSES
    message: str = ""
    version: str | None = None  # the version the rescan found installed
    reboot_required: bool = False


def sort_updates(updates: Iterable[PendingUpdate]) -> list[PendingUpdate]:
    """Sort updates by name, then available version, so that the list's order is stable."""
    return sorted(updates, key=lambda u: (u.name, u.available, u.id, u.source))


def update_id(backend: str, key: str) -> str:
    """Return the id of `key` (a package name, a KB's UpdateID...) in `backend`."""
    return f"{backend}:{key}"


class UpdateSource(Protocol):
    """A package manager's pending updates, as the patches collector reads them."""

    name: str
    # Every classification this backend can report: each is exported, at zero too.
    classifications: tuple[str, ...]

    def available(self) -> bool:
        """Tell whether this backend's package manager exists on this host."""
        ...

    def stamp(self) -> object:
        """Return a cheap value that changes when the answer may change, or None if unknown."""
        ...

    def lists_updated_at(self) -> float | None:
        """Return when the update metadata was last refreshed (epoch seconds), if known."""
        ...

    def read_updates(self) -> list[PendingUpdate]:
        """Read every pending update from what the host already knows, without a download."""
        ...


class PatchBackend(UpdateSource, Protocol):
    """A package manager that lists pending updates and installs them."""

    def install(self, ids: Sequence[str], timeout: float) -> list[InstallOutcome]:
        """Install the updates named by `ids` within `timeout` seconds; answer for each."""
        ...


# Runs argv within timeout seconds and returns (exit status, stdout, stderr); raises
# ProcessTimedOut at the timeout and ProgramMissing when argv[0] cannot be started.
ProcessRunner = Callable[[Sequence[str], float], tuple[int, str, str]]
Which = Callable[[str], str | None]
Clock = Callable[[], float]

# How long a program found (or not) on PATH is believed: see CachedWhich.
WHICH_TTL_SECONDS = 60.0


class CachedWhich:
    """shutil.which, each answer kept `ttl` seconds for the same PATH.

    The patches collector asks every backend whether it is available on every collection (each
    cycle, in the background): seven backends' programs searched along PATH cost 0.17 ms of CPU a
    cycle (bench/README.md, agent_footprint). A package manager installed or removed is seen
    within `ttl`; a changed PATH at once.
    """

    def __init__(self, ttl: float = WHICH_TTL_SECONDS, clock: Clock = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._found: dict[tuple[str, str], tuple[float, str | None]] = {}

    def __call__(self, program: str) -> str | None:
        key = (os.environ.get("PATH", os.defpath), program)
        now = self._clock()
        known = self._found.get(key)
        if known is not None and now - known[0] < self._ttl:
            return known[1]
        found = shutil.which(program)
        self._found[key] = (now, found)
        return found


# The backends' default: one cache for the process (PATH is the process's).
cached_which = CachedWhich()


class PatchError(RuntimeError):
    """A package manager's query failed: the message names the command and what it said."""


class ProgramMissing(PatchError):
    """The package manager's program is not on this host."""


class ProcessTimedOut(PatchError):
    """A command ran out of time and was killed with its whole process group."""

    def __init__(self, argv: Sequence[str], timeout: float, stdout: str, stderr: str) -> None:
        super().__init__(f"{' '.join(argv)}: killed after {timeout:g}s (timeout)")
        self.stdout = stdout
        self.stderr = stderr


# How long a command asked to stop (SIGTERM) may take before it is killed: apt and dpkg
# finish the package they are unpacking and record it, which a SIGKILL would not let them.
TERM_GRACE_SECONDS = 5.0
# Windows process creation flags (subprocess defines them on Windows only).
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000


def _group_options() -> dict[str, Any]:
    """Return the Popen arguments that give the command a process group of its own."""
    if sys.platform.startswith("win"):
        return {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}
    return {"start_new_session": True}


def _signal_group(child: subprocess.Popen[bytes], sig: int) -> None:
    """Send `sig` to the child's whole process group (its installer's children too)."""
    if sys.platform.startswith("win"):
        child.kill()
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", "replace")


def run_process(argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
    """Run `argv` in a process group of its own; end the whole group at the timeout."""
    try:
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **_group_options(),
        )
    except FileNotFoundError as exc:
        raise ProgramMissing(f"{argv[0]}: not found on this host (install it or fix PATH)") from exc
    # Imported here: the collectors package imports this one (its patches collector).
    from rmm_agent.collectors.base import track, untrack  # noqa: PLC0415

    track(child)  # a stopping agent ends it too
    try:
        stdout, stderr = child.communicate(timeout=max(0.0, timeout))
    except subprocess.TimeoutExpired:
        _signal_group(child, signal.SIGTERM)
        try:
            stdout, stderr = child.communicate(timeout=TERM_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(child, getattr(signal, "SIGKILL", signal.SIGTERM))
            try:
                stdout, stderr = child.communicate(timeout=TERM_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                # Something outside the group holds the pipes: give up reading them.
                stdout, stderr = b"", b""
        raise ProcessTimedOut(argv, timeout, _text(stdout), _text(stderr)) from None
    finally:
        untrack(child)
    return child.returncode, _text(stdout), _text(stderr)


def run_checked(runner: ProcessRunner, argv: Sequence[str], timeout: float) -> str:
    """Run `argv` and return its stdout; raise PatchError naming it when it exits non-zero."""
    rc, out, err = runner(argv, timeout)
    if rc != 0:
        raise PatchError(f"{' '.join(argv)}: exited {rc}: {tail(err or out)}")
    return out


def tail(text: str, limit: int = 500) -> str:
    """Return the last `limit` characters of a command's output, stripped."""
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


# How long a query (a scan, a version lookup) may take: apt's simulation of a large upgrade
# takes tens of seconds on a busy host.
QUERY_TIMEOUT_SECONDS = 180.0


@dataclass(slots=True)
class InstallStep:
    """One command of an install and the updates it is for."""

    argv: list[str]
    updates: list[PendingUpdate]


class CommandBackend:
    """A backend driving a command-line package manager: install, then scan again to check.

    Subclasses name the manager, read its pending updates and build its install commands; the
    install flow here (lock check, timeout, failure reading, rescan) is shared by all of them.
    """

    name: str = ""
    classifications: tuple[str, ...] = PACKAGE_CLASSIFICATIONS
    program: ClassVar[str] = ""  # the executable available() looks for
    platforms: ClassVar[tuple[str, ...]] = ("linux",)  # sys.platform prefixes it runs on
    # Exit statuses that mean "another install holds the lock" (Windows Installer's 1618...).
    lock_exit_codes: ClassVar[frozenset[int]] = frozenset()
    # Keep some of an install's time for the rescan that checks it.
    rescan_reserve_seconds: ClassVar[float] = 60.0

    def __init__(
        self,
        *,
        runner: ProcessRunner = run_process,
        which: Which | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._runner = runner
        self._which: Which = which or cached_which
        self._clock = clock

    # -- detection ------------------------------------------------------------------------

    def available(self) -> bool:
        """Tell whether the package manager's program is on PATH."""
        return self._which(self.program) is not None

    def stamp(self) -> object:
        """Return None: only time tells that this manager's answer changed."""
        return None

    def lists_updated_at(self) -> float | None:
        """Return None: this manager does not say when its metadata was refreshed."""
        return None

    def read_updates(self) -> list[PendingUpdate]:
        """Read every pending update."""
        raise NotImplementedError

    def query(self, argv: Sequence[str], timeout: float = QUERY_TIMEOUT_SECONDS) -> str:
        """Run a query and return its stdout; raise PatchError naming it on failure."""
        return run_checked(self._runner, argv, timeout)

    # -- install hooks ----------------------------------------------------------------------

    def lock_holder(self) -> str | None:
        """Say who holds the package manager's lock, or None when it is free (or unknown)."""
        return None

    def install_steps(self, updates: Sequence[PendingUpdate]) -> list[InstallStep]:
        """Return the commands that install `updates` (one for all, or one per update)."""
        raise NotImplementedError

    def is_lock_message(self, text: str) -> bool:
        """Tell whether a failed command's output says that another run holds the lock."""
        return False

    def failure_messages(self, step: InstallStep, stdout: str, stderr: str) -> dict[str, str]:
        """Return each update's own error in a failed step's output, where the manager says."""
        return {}

    def exit_meaning(self, rc: int) -> str:
        """Return what an install's exit status means where the manager documents it."""
        return ""

    def step_outcomes(self, step: InstallStep, stdout: str) -> dict[str, InstallOutcome]:
        """Return each update's outcome as a step that exited 0 reports it, where it does."""
        return {}

    def installed_versions(self, updates: Sequence[PendingUpdate]) -> dict[str, str | None]:
        """Return the version now installed per update id, where it can be read cheaply."""
        return {}

    # -- the install flow -------------------------------------------------------------------

    def install(self, ids: Sequence[str], timeout: float) -> list[InstallOutcome]:
        """Install the updates named by `ids`, then scan again and answer for each."""
        deadline = self._clock() + timeout
        pending = {u.id: u for u in self.read_updates()}
        outcomes: dict[str, InstallOutcome] = {}
        wanted: list[PendingUpdate] = []
        for uid in dict.fromkeys(ids):  # each once, in the order asked
            if uid in pending:
                wanted.append(pending[uid])
            else:
                outcomes[uid] = InstallOutcome(
                    uid, SKIPPED, f"{uid} is not pending on this host ({self.name})"
                )
        if wanted:
            outcomes.update(self._install_pending(wanted, deadline))
        return [outcomes[uid] for uid in dict.fromkeys(ids)]

    def _install_pending(
        self, wanted: list[PendingUpdate], deadline: float
    ) -> dict[str, InstallOutcome]:
        """Run the install steps of `wanted`, then check each against a rescan."""
        holder = self.lock_holder()
        if holder is not None:
            return {u.id: InstallOutcome(u.id, LOCKED, holder) for u in wanted}
        said: dict[str, InstallOutcome] = {}
        for step in self.install_steps(wanted):
            said.update(self._run_step(step, deadline))
        try:
            still = {u.id: u for u in self.read_updates()}
            versions = self.installed_versions(wanted)
        except PatchError as exc:
            message = f"the rescan after the install failed, so it is unverified: {exc}"
            return {u.id: said.get(u.id) or InstallOutcome(u.id, FAILED, message) for u in wanted}
        return {u.id: self._verified(u, said.get(u.id), still, versions) for u in wanted}

    def _run_step(self, step: InstallStep, deadline: float) -> dict[str, InstallOutcome]:
        """Run one install command; return the outcomes it decides alone (lock, failure...)."""
        ids = [u.id for u in step.updates]
        remaining = deadline - self._clock()
        budget = remaining - min(self.rescan_reserve_seconds, remaining / 4)
        if budget <= 0:
            message = "no time left in the install's timeout to start it"
            return {uid: InstallOutcome(uid, SKIPPED, message) for uid in ids}
        command = " ".join(step.argv)
        try:
            rc, out, err = self._runner(step.argv, budget)
        except ProcessTimedOut as exc:
            message = f"{exc}; output: {tail(exc.stderr or exc.stdout, 300)}"
            return {uid: InstallOutcome(uid, INTERRUPTED, message) for uid in ids}
        except ProgramMissing as exc:
            return {uid: InstallOutcome(uid, FAILED, str(exc)) for uid in ids}
        if rc == 0:
            return self.step_outcomes(step, out)
        if rc < 0:
            message = f"{command}: ended by signal {-rc} mid-install: {tail(err or out, 300)}"
            return {uid: InstallOutcome(uid, INTERRUPTED, message) for uid in ids}
        if rc in self.lock_exit_codes or self.is_lock_message(out + "\n" + err):
            message = f"{self.name} is locked by another run: {tail(err or out, 300)}"
            return {uid: InstallOutcome(uid, LOCKED, message) for uid in ids}
        own = self.failure_messages(step, out, err)
        meaning = self.exit_meaning(rc)
        general = f"{command}: exited {rc}{f' ({meaning})' if meaning else ''}: {tail(err or out)}"
        return {uid: InstallOutcome(uid, FAILED, own.get(uid, general)) for uid in ids}

    def _verified(
        self,
        update: PendingUpdate,
        said: InstallOutcome | None,
        still: Mapping[str, PendingUpdate],
        versions: Mapping[str, str | None],
    ) -> InstallOutcome:
        """Decide one update's outcome from what the command said and what the rescan found."""
        found = versions.get(update.id)
        now = still.get(update.id)
        pending_same = now is not None and now.available == update.available
        if said is not None and said.status in (LOCKED, SKIPPED):
            return said
        if not pending_same and (found is None or found != update.current):
            # The rescan no longer offers it: installed, even if the command went on to fail.
            version = found if found is not None else update.available
            reboot = update.reboot_required or (said is not None and said.reboot_required)
            return InstallOutcome(update.id, INSTALLED, "", version, reboot)
        if said is not None and said.status != INSTALLED:
            return InstallOutcome(said.id, said.status, said.message, found)
        return InstallOutcome(
            update.id,
            FAILED,
            f"{self.name} reported success but {update.name} {update.available} is still "
            f"pending (installed: {found or update.current or 'unknown'})",
            found,
        )
