"""What consent does the same on every OS: sessions, texts, terminals, dialogs' children.

`ConsentOS` is the way of an OS with no module of its own (any POSIX system: terminals, zenity
or kdialog); consent_linux.py, consent_macos.py and consent_windows.py refine it.
"""

from __future__ import annotations

import logging
import math
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from rmm_agent.collectors import base as collectors_base
from rmm_agent.config import CONSENT_PLACEHOLDERS, AgentConfig
from rmm_common.text import visible_lines
from rmm_proto import commands_pb2

# One logger for all of consent's modules: log lines name it as they did before the split.
log = logging.getLogger("rmm_agent.consent")

TITLE = "Remote action"
# A terminal that takes no output for this long (flow-controlled, hung) is given up on.
TTY_WRITE_SECONDS = 2.0
# A notification program still running after this is stuck: it is ended.
NOTIFY_SECONDS = 15.0
# Between SIGTERM and SIGKILL when a dialog must go (runuser passes SIGTERM on to its child).
_KILL_GRACE_SECONDS = 2.0
_POLL_SECONDS = 0.05
_LIMIT = 300  # characters of operator-supplied text shown
LOCAL_X_DISPLAY = re.compile(r"^:\d+(\.\d+)?$")
_TERMINAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9/._-]*$")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(CONSENT_PLACEHOLDERS) + r")\}")

Verdict = Literal["yes", "no", "timeout", "error"]
# Reads a dialog's exit status and output.
VerdictReader = Callable[[int, bytes], Verdict]
# A dialog's command line, how to read its outcome, and its name for messages.
Dialog = tuple[list[str], VerdictReader, str]


@dataclass(slots=True)
class Session:
    """One logged-in user session."""

    user: str
    terminal: str  # e.g. "pts/0", "tty1", "console", "" when none
    tty_path: str  # "/dev/pts/0", or "" when the session has no terminal to write to
    # X11 display (":0") or Wayland socket ("wayland-0") of a graphical session, else "".
    display: str
    uid: int | None


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asks for a remote action and for what, as its signed command says: the operator,
    the MSP running the server, and the ticket (or patch window) it is done for."""

    operator: str
    msp: str = ""  # "" from a server older than Command.msp: the prompt names no MSP
    ticket: int = 0  # 0: no ticket
    maintenance_window: str = ""  # the patch window that sent it, "" when none did

    @classmethod
    def of(cls, command: commands_pb2.Command) -> Requester:
        """Return the requester a (verified) command names."""
        return cls(command.operator, command.msp, command.ticket, command.maintenance_window)

    @classmethod
    def given(cls, operator: Requester | str) -> Requester:
        """Return `operator` as a requester: an operator's name alone asks for nothing more."""
        return operator if isinstance(operator, Requester) else cls(operator)


@dataclass(slots=True)
class ConsentAnswer:
    """What asking the logged-in users came to."""

    approved: bool
    by: str  # the user who answered ("" when nobody did)
    reason: str  # "approved by alice", "no answer within 60s", "no logged-in user to ask"...


@dataclass(slots=True)
class ConsentSettings:
    """The host owner's consent settings (agent configuration keys consent_*)."""

    timeout_seconds: float = 120.0
    contact: str = ""  # e.g. "call Example MSP at 555-0100"
    ask_command: list[str] | None = None  # replaces zenity / kdialog / osascript / WTS
    notify_command: list[str] | None = None  # replaces terminal and desktop notices

    @classmethod
    def from_config(cls, config: AgentConfig) -> ConsentSettings:
        """Return the consent settings of an agent configuration."""
        return cls(
            timeout_seconds=config.consent_timeout_seconds,
            contact=config.consent_contact,
            ask_command=config.consent_ask_command,
            notify_command=config.consent_notify_command,
        )


# ---- who is logged in ----


def session_of(user: str, terminal: str, host: str) -> Session:
    """Return the Session of one utmp entry (terminal "pts/0" or ":0", host "" or ":0")."""
    uid = _uid_of(user)
    display = ""
    for candidate in (terminal, host):
        if LOCAL_X_DISPLAY.match(candidate):
            display = candidate
            break
    tty_path = ""
    # "console" on macOS is the login window's device, not a screen anyone reads.
    if (
        os.name == "posix"
        and _TERMINAL.match(terminal)
        and ".." not in terminal
        and terminal != "console"
    ):
        tty_path = f"/dev/{terminal}"
    return Session(user, terminal, tty_path, display, uid)


def _uid_of(user: str) -> int | None:
    if os.name != "posix":
        return None
    import pwd  # noqa: PLC0415 - POSIX only

    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def unique(
    sessions: list[Session], by_display: bool = False, by_user: bool = False
) -> list[Session]:
    """Return `sessions` without repeats (same terminal; same user and display; same user)."""
    seen: set[tuple[str, ...]] = set()
    out = []
    for session in sessions:
        if by_user:
            key: tuple[str, ...] = (session.user,)
        elif by_display:
            key = (session.user, session.display)
        else:
            key = (session.user, session.terminal, session.tty_path, session.display)
        if key not in seen:
            seen.add(key)
            out.append(session)
    return out


def runs_as_other(session: Session, euid: int) -> bool:
    """Return whether a root agent must switch to `session`'s user to reach it."""
    return session.uid is not None and session.uid != euid and euid == 0


# ---- what they are told ----


def clean(text: str, limit: int | None = _LIMIT) -> str:
    """Return `text` on one line without control characters, at most `limit` characters
    (None: any length).

    Operator names, the MSP's name and action descriptions come from the network: a newline
    or an escape sequence must not forge a line on someone's terminal or dialog, and a bidi
    override must not make a name read as another. Line breaks and tabs become spaces; every
    other invisible character is shown as its escape (rmm_common.text: ESC as `\\x1b`,
    U+202E as `\\u202e`), so the reader sees that something odd is there.
    """
    escaped = " ".join(visible_lines(text).split())
    # What text.py leaves and a dialog would still not draw (unassigned code points...).
    shown = "".join(c if c.isprintable() else " " for c in escaped)
    if limit is not None and len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    return shown


def who(requester: Requester | str) -> str:
    """Return how the user is told who acts (the operator, the policy rule or the patch window
    that did, of which MSP) and for what: a ticket, a maintenance window, or no ticket."""
    requester = Requester.given(requester)
    name = clean(requester.operator, 120)
    if name.startswith("policy:"):
        name = f"an automatic rule ({name.removeprefix('policy:')})"
    elif name.startswith("patching:"):
        name = "scheduled patching"
    msp = clean(requester.msp, 100)
    of = f" of {msp}" if msp else ""
    return f"{name or 'an unnamed operator'}{of} (via remote management, {reference(requester)})"


def reference(requester: Requester) -> str:
    """Return what the action is done for: "ticket 42", "maintenance window W", "no ticket"."""
    if requester.ticket:
        return f"ticket {requester.ticket}"
    if requester.maintenance_window:
        return f"maintenance window {clean(requester.maintenance_window, 100)}"
    return "no ticket"


def fill(
    template: Sequence[str],
    session: Session,
    message: str,
    timeout: float,
    requester: Requester | None = None,
) -> list[str]:
    """Return a consent_*_command with its placeholders replaced (each argument stays one)."""
    asked = requester or Requester("")
    values = {
        "title": TITLE,
        "message": message,
        "timeout": str(max(1, math.ceil(timeout))),
        "user": session.user,
        "display": session.display,
        "tty": session.tty_path,
        "operator": clean(asked.operator, 120),
        "msp": clean(asked.msp, 100),
        "ticket": reference(asked),
    }
    return [_PLACEHOLDER.sub(lambda m: values[m.group(1)], arg) for arg in template]


def terminal_text(lines: list[str]) -> bytes:
    """Return a wall-style message for a terminal (CR LF: the terminal may be in raw mode)."""
    stamp = time.strftime("%H:%M")
    body = "\r\n".join([f"\a*** {TITLE} on this computer ({stamp}) ***", *lines])
    return f"\r\n{body}\r\n".encode()


def write_terminal(path: str, data: bytes, timeout: float) -> bool:
    """Write `data` to the terminal at `path` without ever blocking longer than `timeout`.

    Opened non-blocking: a terminal whose output is stopped (Ctrl-S) or whose reader hangs
    fills up, and then the rest is given up instead of holding the agent.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        log.warning("consent: cannot open terminal %s: %s", path, exc.strerror or exc)
        return False
    try:
        if not os.isatty(fd):
            log.warning("consent: %s is not a terminal: nothing written", path)
            return False
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning(
                        "consent: terminal %s took no output for %gs (stopped or hung): "
                        "the notice is cut short",
                        path,
                        timeout,
                    )
                    return False
                select.select([], [fd], [], min(remaining, 0.1))
        return True
    except OSError as exc:
        log.warning("consent: cannot write to terminal %s: %s", path, exc.strerror or exc)
        return False
    finally:
        os.close(fd)


# ---- children: started in their own process group, tracked, ended with the agent ----


@dataclass(slots=True)
class Asking:
    """One open dialog: whom it asks, its process, how to read its answer, its name."""

    session: Session
    child: subprocess.Popen[bytes]
    read: VerdictReader
    program: str


def start(argv: list[str], what: str) -> subprocess.Popen[bytes] | None:
    """Start `argv` in its own process group, tracked; None (logged) when it cannot start."""
    try:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Its own process group, so that ending it also ends what it started.
            start_new_session=os.name == "posix",
        )
    except OSError as exc:
        log.warning("consent: cannot run %s (%s): %s", what, argv[0], exc.strerror or exc)
        return None
    # Tracked with the collectors' commands: a stopping agent ends an open dialog too.
    collectors_base.track(child)
    return child


def end(child: subprocess.Popen[bytes]) -> None:
    """End `child` and its process group if still running; release its pipes."""
    try:
        # Only while unreaped: its pid (the group id) cannot have been reused yet.
        if child.poll() is None:
            _signal(child, kill=False)
            try:
                child.wait(_KILL_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                _signal(child, kill=True)
                child.wait()
    finally:
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
        collectors_base.untrack(child)


def _signal(child: subprocess.Popen[bytes], kill: bool) -> None:
    try:
        if os.name == "posix":
            os.killpg(child.pid, signal.SIGKILL if kill else signal.SIGTERM)
        elif kill:
            child.kill()
        else:
            child.terminate()
    except (ProcessLookupError, PermissionError):
        pass  # already gone


def run_program(argv: list[str], session: Session | None, what: str) -> bool:
    """Run a notification program to its end (bounded); return whether it succeeded."""
    child = start(argv, what)
    if child is None:
        return False
    try:
        try:
            _, stderr = child.communicate(timeout=NOTIFY_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("consent: %s did not finish within %gs: ended", what, NOTIFY_SECONDS)
            return False
        if child.returncode != 0:
            log.warning(
                "consent: %s for %s exited %s: %s",
                what,
                session.user if session else "the logged-in users",
                child.returncode,
                stderr.decode("utf-8", "replace").strip()[:300],
            )
        return child.returncode == 0
    finally:
        end(child)


def race(asking: list[Asking], timeout: float) -> ConsentAnswer:
    """Wait for the first yes or no among the open dialogs, up to `timeout`."""
    deadline = time.monotonic() + timeout
    pending = list(asking)
    failures: list[str] = []
    timed_out = False
    while pending:
        for item in list(pending):
            status = item.child.poll()
            if status is None:
                continue
            pending.remove(item)
            stdout, stderr = item.child.communicate()
            verdict = item.read(status, stdout)
            user = item.session.user
            if verdict == "yes":
                return ConsentAnswer(True, user, f"approved by {user}")
            if verdict == "no":
                return ConsentAnswer(False, user, f"declined by {user}")
            if verdict == "timeout":
                timed_out = True
            else:
                detail = stderr.decode("utf-8", "replace").strip().splitlines()
                failures.append(
                    f"{item.program} for {user} exited {status}"
                    + (f" ({detail[-1][:200]})" if detail else "")
                )
                log.warning("consent: %s", failures[-1])
        if not pending:
            break
        if time.monotonic() >= deadline:
            timed_out = True
            break
        time.sleep(_POLL_SECONDS)
    if failures and not timed_out:
        return ConsentAnswer(False, "", "no answer: " + "; ".join(failures))
    return ConsentAnswer(False, "", f"no answer within {timeout:g}s")


def exit_verdict(timeout_status: int | None) -> VerdictReader:
    """Read a dialog's exit status: 0 yes, 1 no, `timeout_status` its own timeout."""

    def read(status: int, stdout: bytes) -> Verdict:
        if status == 0:
            return "yes"
        if status == 1:
            return "no"
        return "timeout" if status == timeout_status else "error"

    return read


# ---- the OS ways: this default, refined per OS in consent_<os>.py ----


class WindowsApi(Protocol):
    """The Windows calls consent needs (consent_windows.WindowsConsole, or a stand-in)."""

    def console_session(self) -> int | None:
        """Return the id of the session at the physical console, None when there is none."""
        ...

    def user_of(self, session_id: int) -> str:
        """Return the user logged in to `session_id` ("" at the logon screen)."""
        ...

    def send(
        self, session_id: int, title: str, text: str, style: int, timeout: float, wait: bool
    ) -> int:
        """Show a message box in `session_id`; return the button pressed."""
        ...


@dataclass(slots=True)
class Host:
    """What an OS way uses of this computer, each replaceable in tests."""

    which: Callable[[str], str | None]  # finds a program
    euid: int  # the agent's effective user (-1 where there is none)
    tty_timeout: float = TTY_WRITE_SECONDS
    windows: WindowsApi | None = None  # the Windows API, loaded on first use on Windows


class ConsentOS:
    """Reach the users of one OS; this default fits any POSIX system: terminals, zenity, kdialog."""

    def __init__(self, host: Host) -> None:
        """Use `host`'s programs, user and Windows API."""
        self.host = host

    @staticmethod
    def find_displays(sessions: list[Session]) -> None:
        """Give sessions the graphical displays utmp does not name (none known here)."""

    @staticmethod
    def as_user(session: Session, argv: list[str], euid: int) -> list[str]:
        """Return the command line running `argv` as `session`'s user (here: `argv` itself)."""
        return argv

    @staticmethod
    def can_ask(session: Session) -> bool:
        """Return whether `session` has a screen where a dialog can ask."""
        return bool(session.display)

    def command(self, session: Session, argv: list[str]) -> list[str]:
        """Return `argv` run as the session's user, in reach of its display and bus."""
        return self.as_user(session, argv, self.host.euid)

    def notify(self, sessions: list[Session], lines: list[str], timeout: float) -> list[str]:
        """Tell each session the notice `lines`; return the users told."""
        return [s.user for s in unique(sessions) if self.notify_session(s, lines)]

    def notify_session(self, session: Session, lines: list[str]) -> bool:
        """Write the notice to `session`'s terminal; return whether it was told."""
        if not session.tty_path:
            return False
        return write_terminal(session.tty_path, terminal_text(lines), self.host.tty_timeout)

    def ask_directly(self, lines: list[str], timeout: float) -> ConsentAnswer | None:
        """Return the answer of an OS that asks without listing sessions; None: ask sessions."""
        return None

    def dialog(self, session: Session, message: str, timeout: float) -> Dialog | None:
        """Return the dialog asking `session`: zenity, else kdialog; None when neither is here."""
        zenity = self.host.which("zenity")
        if zenity is not None:
            argv = [
                zenity,
                "--question",
                "--title",
                TITLE,
                "--text",
                message,
                "--no-markup",
                "--ok-label",
                "Allow",
                "--cancel-label",
                "Deny",
                "--timeout",
                str(max(1, math.ceil(timeout))),
            ]
            return argv, exit_verdict(timeout_status=5), "zenity"
        kdialog = self.host.which("kdialog")
        if kdialog is not None:
            # kdialog has no timeout of its own: the agent ends it at the deadline.
            argv = [
                kdialog,
                "--title",
                TITLE,
                "--yes-label",
                "Allow",
                "--no-label",
                "Deny",
                "--yesno",
                message,
            ]
            return argv, exit_verdict(timeout_status=None), "kdialog"
        log.warning(
            "consent: neither zenity nor kdialog is installed: %s on %s cannot be asked",
            session.user,
            session.display,
        )
        return None
