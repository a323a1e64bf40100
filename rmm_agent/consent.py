"""Consent: show the people at a managed computer who acts on it, and optionally ask them first.

Remote-support scams work because nobody at the screen sees who is connected; an RMM should
make that visible. `Consent.notify` tells every logged-in user who acts and what (terminals like
`wall`, desktop notifications, Windows message boxes); `Consent.ask` shows a yes/no dialog and
waits for an answer up to a timeout. docs/consent.md says what users see on each OS.
"""

from __future__ import annotations

import html
import logging
import math
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psutil

from rmm_agent.collectors import base as collectors_base
from rmm_agent.config import CONSENT_PLACEHOLDERS, AgentConfig

log = logging.getLogger(__name__)

TITLE = "Remote action"
# A terminal that takes no output for this long (flow-controlled, hung) is given up on.
TTY_WRITE_SECONDS = 2.0
# A notification program still running after this is stuck: it is ended.
NOTIFY_SECONDS = 15.0
# Between SIGTERM and SIGKILL when a dialog must go (runuser passes SIGTERM on to its child).
_KILL_GRACE_SECONDS = 2.0
_POLL_SECONDS = 0.05
_LIMIT = 300  # characters of operator-supplied text shown
_LOCAL_X_DISPLAY = re.compile(r"^:\d+(\.\d+)?$")
_WAYLAND_DISPLAY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$|^/[A-Za-z0-9._/-]+$")
_TERMINAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9/._-]*$")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(CONSENT_PLACEHOLDERS) + r")\}")

# Windows (winuser.h, wtsapi32.h).
MB_OK = 0x0
MB_YESNO = 0x4
MB_ICONQUESTION = 0x20
MB_ICONINFORMATION = 0x40
MB_DEFBUTTON2 = 0x100  # "No" is the default: a blind Enter must not approve
MB_SYSTEMMODAL = 0x1000
MB_SETFOREGROUND = 0x10000
IDYES = 6
IDNO = 7
IDTIMEOUT = 32000
WTS_CURRENT_SERVER_HANDLE = 0
WTS_USER_NAME = 5  # WTS_INFO_CLASS.WTSUserName
NO_CONSOLE_SESSION = 0xFFFFFFFF

Verdict = Literal["yes", "no", "timeout", "error"]


@dataclass(slots=True)
class Session:
    """One logged-in user session."""

    user: str
    terminal: str  # e.g. "pts/0", "tty1", "console", "" when none
    tty_path: str  # "/dev/pts/0", or "" when the session has no terminal to write to
    # X11 display (":0") or Wayland socket ("wayland-0") of a graphical session, else "".
    display: str
    uid: int | None


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


def logged_in_sessions() -> list[Session]:
    """Return the sessions of the users logged in now (utmp), with graphical displays found.

    No session at all is a normal answer (a server nobody is logged in to).
    """
    sessions = [session_of(u.name, u.terminal or "", u.host or "") for u in psutil.users()]
    if sys.platform.startswith("linux") and sessions:
        uids = {s.uid for s in sessions if s.uid is not None}
        add_displays(sessions, displays_by_uid(Path("/proc"), uids))
    return sessions


def session_of(user: str, terminal: str, host: str) -> Session:
    """Return the Session of one utmp entry (terminal "pts/0" or ":0", host "" or ":0")."""
    uid = _uid_of(user)
    display = ""
    for candidate in (terminal, host):
        if _LOCAL_X_DISPLAY.match(candidate):
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


def displays_by_uid(proc: Path, uids: set[int]) -> dict[int, str]:
    """Return a local display of each of `uids` that has a graphical session.

    Read from the environment of the user's processes (/proc/<pid>/environ, readable as root):
    a local X display (":0", XWayland included) is preferred to a Wayland socket. A forwarded
    display ("localhost:10.0" from ssh -X) is someone else's screen and is ignored.
    """
    x11: dict[int, str] = {}
    wayland: dict[int, str] = {}
    try:
        entries = list(proc.iterdir())
    except OSError as exc:
        log.warning("consent: cannot list %s to find graphical sessions: %s", proc, exc)
        return {}
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            uid = entry.stat().st_uid
            if uid not in uids or uid in x11:
                continue
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # the process ended, or it is not ours to read
        for item in environ.split(b"\0"):
            name, _, raw = item.partition(b"=")
            value = raw.decode("utf-8", "replace")
            if name == b"DISPLAY" and _LOCAL_X_DISPLAY.match(value):
                x11[uid] = value
            elif name == b"WAYLAND_DISPLAY" and _WAYLAND_DISPLAY.match(value):
                wayland.setdefault(uid, value)
    return {**wayland, **x11}


def add_displays(sessions: list[Session], displays: dict[int, str]) -> None:
    """Give each user's graphical display to their seat session (not a pts), or add one."""
    for uid, display in displays.items():
        own = [s for s in sessions if s.uid == uid]
        if not own or any(s.display for s in own):
            continue
        seat = [s for s in own if not s.terminal.startswith("pts/")]
        if seat:
            seat[0].display = display
        else:
            sessions.append(Session(own[0].user, "", "", display, uid))


# ---- what they are told ----


def clean(text: str, limit: int | None = _LIMIT) -> str:
    """Return `text` on one line without control characters, at most `limit` characters
    (None: any length).

    Operator names and action descriptions come from the network: a newline or an escape
    sequence must not forge a line on someone's terminal or dialog.
    """
    shown = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if limit is not None and len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    return shown


def who(operator: str) -> str:
    """Return how the user is told who acts: the operator, or the policy rule that did."""
    name = clean(operator, 120)
    if name.startswith("policy:"):
        return f"an automatic rule ({name.removeprefix('policy:')}) (via remote management)"
    return f"{name or 'an unnamed operator'} (via remote management)"


def _duration(seconds: float) -> str:
    whole = math.ceil(seconds)
    if whole >= 120 and whole % 60 == 0:
        return f"{whole // 60} minutes"
    return f"{whole} seconds"


class Consent:
    """Tell or ask the users logged in to this computer about a remote action."""

    def __init__(
        self,
        settings: ConsentSettings,
        sessions: Callable[[], list[Session]] = logged_in_sessions,
        *,
        which: Callable[[str], str | None] = shutil.which,
        platform: str = sys.platform,
        tty_timeout: float = TTY_WRITE_SECONDS,
        windows: WindowsConsole | None = None,
    ) -> None:
        """`which` finds programs and `platform` picks the OS way (both replaceable in tests);
        `windows` is the Windows API (loaded on first use on Windows)."""
        self.settings = settings
        self._sessions = sessions
        self._which = which
        self._platform = platform
        self._tty_timeout = tty_timeout
        self._windows = windows
        self._euid: int = getattr(os, "geteuid", lambda: -1)()

    # ---- texts ----

    def _contact_line(self, asking: bool) -> str:
        contact = clean(self.settings.contact, 160).rstrip(".")
        if asking:
            return f"If you did not expect this, answer No{' and ' + contact if contact else ''}."
        return f"If you did not expect this, {contact or 'tell your IT support'}."

    def notice(self, operator: str, action: str) -> list[str]:
        """Return the lines of a notification: who, what, and what to do if unexpected."""
        return [
            f"{who(operator)} is acting on this computer: {clean(action).rstrip('.')}.",
            self._contact_line(asking=False),
        ]

    def question(self, operator: str, action: str, timeout: float) -> list[str]:
        """Return the lines of a consent question."""
        return [
            f"{who(operator)} asks to act on this computer: {clean(action).rstrip('.')}.",
            f"Allow it? Without an answer within {_duration(timeout)} it is not done.",
            self._contact_line(asking=True),
        ]

    # ---- notify ----

    def notify(self, operator: str, action: str) -> list[str]:
        """Tell the logged-in users who acts and what; return who was told. Never raises."""
        try:
            lines = self.notice(operator, action)
            sessions = self._list()
            if not sessions:
                log.info("consent: nobody is logged in to tell about %s", clean(action))
                return []
            if self.settings.notify_command:
                told = [s.user for s in _unique(sessions) if self._notify_custom(s, lines)]
            elif self._platform == "win32":
                told = self._notify_windows(sessions, lines)
            else:
                told = [s.user for s in _unique(sessions) if self._notify_posix(s, lines)]
            return list(dict.fromkeys(told))
        except Exception:
            log.exception("consent: telling the logged-in users failed")
            return []

    def _list(self) -> list[Session]:
        try:
            return self._sessions()
        except Exception:
            # psutil or /proc failing must not stop the action's audit trail: nobody is told.
            log.exception("consent: cannot list the logged-in users")
            return []

    def _notify_custom(self, session: Session, lines: list[str]) -> bool:
        assert self.settings.notify_command is not None
        argv = fill(
            self.settings.notify_command,
            session,
            "\n".join(lines),
            self.settings.timeout_seconds,
        )
        return self._run(self._as_user(session, argv), session, "consent_notify_command")

    def _notify_posix(self, session: Session, lines: list[str]) -> bool:
        told = False
        if session.tty_path:
            told = write_terminal(session.tty_path, terminal_text(lines), self._tty_timeout)
        if session.display and self._platform.startswith("linux"):
            program = self._which("notify-send")
            if program is None:
                log.warning(
                    "consent: notify-send is not installed: %s on display %s is not shown the "
                    "notice on screen (install libnotify-bin / libnotify)",
                    session.user,
                    session.display,
                )
            else:
                body = html.escape("\n".join(lines), quote=False)  # the body is markup
                argv = [program, "-u", "critical", TITLE, body]
                told = self._run(self._as_user(session, argv), session, "notify-send") or told
        if self._platform == "darwin" and session.terminal == "console":
            program = self._which("osascript") or "/usr/bin/osascript"
            script = (
                f"display notification {applescript(' '.join(lines))} "
                f"with title {applescript(TITLE)}"
            )
            argv = [program, "-e", script]
            told = self._run(self._as_user(session, argv), session, "osascript") or told
        return told

    def _notify_windows(self, sessions: list[Session], lines: list[str]) -> list[str]:
        text = "\n".join(lines)
        program = self._msg_exe()
        users = [s.user for s in sessions]
        if program is not None:
            seconds = max(1, math.ceil(self.settings.timeout_seconds))
            argv = [program, "*", f"/TIME:{seconds}", f"{TITLE}: {text}"]
            return users if self._run(argv, None, "msg.exe") else []
        # Home editions have no msg.exe: a message box on the console session instead.
        windows = self._windows_api()
        session_id = windows.console_session()
        if session_id is None:
            return []
        style = MB_OK | MB_ICONINFORMATION | MB_SYSTEMMODAL | MB_SETFOREGROUND
        windows.send(session_id, TITLE, text, style, self.settings.timeout_seconds, wait=False)
        user = windows.user_of(session_id)
        return [user] if user else []

    def _msg_exe(self) -> str | None:
        found = self._which("msg.exe")
        if found is not None:
            return found
        # A 32-bit agent on 64-bit Windows sees SysWOW64 as System32, which has no msg.exe.
        sysnative = Path(os.environ.get("WINDIR", r"C:\Windows")) / "Sysnative" / "msg.exe"
        return str(sysnative) if sysnative.exists() else None

    # ---- ask ----

    def ask(
        self, operator: str, action: str, timeout_seconds: float | None = None
    ) -> ConsentAnswer:
        """Ask the logged-in users to allow the action; block up to the timeout.

        `timeout_seconds` None means the agent's consent_timeout. Never raises: a failure to
        ask is a refusal with the reason.
        """
        timeout = self.settings.timeout_seconds if timeout_seconds is None else timeout_seconds
        try:
            lines = self.question(operator, action, timeout)
            if self._platform == "win32" and not self.settings.ask_command:
                return self._ask_windows(lines, timeout)
            sessions = self._list()
            if not sessions:
                return ConsentAnswer(False, "", "no logged-in user to ask")
            return self._ask_sessions(sessions, lines, timeout)
        except Exception as exc:
            log.exception("consent: asking the logged-in users failed")
            return ConsentAnswer(False, "", f"could not ask the logged-in users: {exc}")

    def _ask_sessions(
        self, sessions: list[Session], lines: list[str], timeout: float
    ) -> ConsentAnswer:
        graphical = _unique(
            [
                s
                for s in sessions
                if s.display or (self._platform == "darwin" and s.terminal == "console")
            ],
            by_display=True,
        )
        custom = self.settings.ask_command
        if custom:
            # The host's own program decides how to reach a terminal-only user.
            targets = graphical or _unique(sessions, by_user=True)
        elif graphical:
            targets = graphical
        else:
            users = ", ".join(dict.fromkeys(s.user for s in sessions))
            return ConsentAnswer(
                False,
                "",
                f"no logged-in user could be asked: {users} only on a terminal, where a "
                "question cannot be shown reliably (they can be notified)",
            )
        message = "\n".join(lines)
        asking: list[_Asking] = []
        try:
            for session in targets:
                built = self._question_command(session, message, timeout)
                if built is None:
                    continue
                argv, read, program = built
                child = _start(self._as_user(session, argv), program)
                if child is not None:
                    asking.append(_Asking(session, child, read, program))
            if not asking:
                missing = (
                    "consent_ask_command could not be started (the agent log says why)"
                    if custom
                    else "no dialog program (install zenity or kdialog, or set "
                    "consent_ask_command in the agent configuration)"
                )
                return ConsentAnswer(False, "", f"no logged-in user could be asked: {missing}")
            return _race(asking, timeout)
        finally:
            for item in asking:
                _end(item.child)

    def _question_command(
        self, session: Session, message: str, timeout: float
    ) -> tuple[list[str], Callable[[int, bytes], Verdict], str] | None:
        """Return the argv asking `session`, how to read its outcome, and its name."""
        if self.settings.ask_command:
            argv = fill(self.settings.ask_command, session, message, timeout)
            return argv, _exit_verdict(timeout_status=None), "consent_ask_command"
        seconds = str(max(1, math.ceil(timeout)))
        if self._platform == "darwin":
            program = self._which("osascript") or "/usr/bin/osascript"
            script = (
                f"display dialog {applescript(message)} with title {applescript(TITLE)} "
                'buttons {"Deny", "Allow"} default button "Deny" with icon caution '
                f"giving up after {seconds}"
            )
            return [program, "-e", script], _osascript_verdict, "osascript"
        zenity = self._which("zenity")
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
                seconds,
            ]
            return argv, _exit_verdict(timeout_status=5), "zenity"
        kdialog = self._which("kdialog")
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
            return argv, _exit_verdict(timeout_status=None), "kdialog"
        log.warning(
            "consent: neither zenity nor kdialog is installed: %s on %s cannot be asked",
            session.user,
            session.display,
        )
        return None

    def _ask_windows(self, lines: list[str], timeout: float) -> ConsentAnswer:
        windows = self._windows_api()
        session_id = windows.console_session()
        user = windows.user_of(session_id) if session_id is not None else ""
        if session_id is None or not user:
            return ConsentAnswer(False, "", "no logged-in user to ask")
        style = MB_YESNO | MB_ICONQUESTION | MB_DEFBUTTON2 | MB_SYSTEMMODAL | MB_SETFOREGROUND
        response = windows.send(session_id, TITLE, "\n".join(lines), style, timeout, wait=True)
        if response == IDYES:
            return ConsentAnswer(True, user, f"approved by {user}")
        if response == IDNO:
            return ConsentAnswer(False, user, f"declined by {user}")
        return ConsentAnswer(False, "", f"no answer within {timeout:g}s")

    def _windows_api(self) -> WindowsConsole:
        if self._windows is None:
            self._windows = WindowsConsole.load()
        return self._windows

    # ---- running programs as the session's user ----

    def _as_user(self, session: Session, argv: list[str]) -> list[str]:
        """Return `argv` run as the session's user, in reach of its display and bus."""
        return as_user(session, argv, self._platform, self._euid)

    def _run(self, argv: list[str], session: Session | None, what: str) -> bool:
        """Run a notification program to its end (bounded); return whether it succeeded."""
        child = _start(argv, what)
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
            _end(child)


def as_user(session: Session, argv: list[str], platform: str, euid: int) -> list[str]:
    """Return the command line running `argv` as `session`'s user where this OS needs it.

    Linux: `env DISPLAY=… DBUS_SESSION_BUS_ADDRESS=… XDG_RUNTIME_DIR=…` in front, and
    `runuser -u USER --` when the agent is root and the user is someone else. macOS:
    `launchctl asuser UID sudo -u USER` (the user's GUI domain). Windows: unchanged.
    """
    other = session.uid is not None and session.uid != euid and euid == 0
    if platform.startswith("linux"):
        env = ["env"]
        if session.display:
            name = "DISPLAY" if session.display.startswith(":") else "WAYLAND_DISPLAY"
            env.append(f"{name}={session.display}")
        if session.uid is not None:
            env.append(f"DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/{session.uid}/bus")
            env.append(f"XDG_RUNTIME_DIR=/run/user/{session.uid}")
        command = [*env, *argv]
        return ["runuser", "-u", session.user, "--", *command] if other else command
    if platform == "darwin" and other:
        return ["launchctl", "asuser", str(session.uid), "sudo", "-u", session.user, *argv]
    return argv


def fill(template: Sequence[str], session: Session, message: str, timeout: float) -> list[str]:
    """Return a consent_*_command with its placeholders replaced (each argument stays one)."""
    values = {
        "title": TITLE,
        "message": message,
        "timeout": str(max(1, math.ceil(timeout))),
        "user": session.user,
        "display": session.display,
        "tty": session.tty_path,
    }
    return [_PLACEHOLDER.sub(lambda m: values[m.group(1)], arg) for arg in template]


def applescript(text: str) -> str:
    """Return `text` as an AppleScript string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


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


def _unique(
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


# ---- children: started in their own process group, tracked, ended with the agent ----


@dataclass(slots=True)
class _Asking:
    session: Session
    child: subprocess.Popen[bytes]
    read: Callable[[int, bytes], Verdict]
    program: str


def _start(argv: list[str], what: str) -> subprocess.Popen[bytes] | None:
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


def _end(child: subprocess.Popen[bytes]) -> None:
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


def _race(asking: list[_Asking], timeout: float) -> ConsentAnswer:
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


def _exit_verdict(timeout_status: int | None) -> Callable[[int, bytes], Verdict]:
    """Read a dialog's exit status: 0 yes, 1 no, `timeout_status` its own timeout."""

    def read(status: int, stdout: bytes) -> Verdict:
        if status == 0:
            return "yes"
        if status == 1:
            return "no"
        return "timeout" if status == timeout_status else "error"

    return read


def _osascript_verdict(status: int, stdout: bytes) -> Verdict:
    """Read `display dialog`'s answer ("button returned:Allow, gave up:false")."""
    text = stdout.decode("utf-8", "replace")
    if status != 0:
        return "error"
    if "gave up:true" in text:
        return "timeout"
    if "button returned:Allow" in text:
        return "yes"
    if "button returned:Deny" in text:
        return "no"
    return "error"


# ---- Windows: WTSSendMessageW to the console session ----


class WindowsConsole:
    """The Windows calls consent needs: the console session, its user, a message box there.

    Built from wtsapi32 and kernel32 (ctypes.WinDLL); `load()` touches ctypes' Windows parts,
    so importing this module works everywhere.
    """

    def __init__(self, wtsapi32: Any, kernel32: Any) -> None:
        """Wrap loaded wtsapi32 / kernel32 libraries (or stand-ins with the same calls)."""
        self.wtsapi32 = wtsapi32
        self.kernel32 = kernel32

    @classmethod
    def load(cls) -> WindowsConsole:
        """Load wtsapi32 and kernel32 and declare the calls' argument types (Windows only)."""
        import ctypes  # noqa: PLC0415

        win_dll = getattr(ctypes, "WinDLL", None)
        if win_dll is None:
            raise OSError("WTSSendMessageW needs Windows: ctypes has no WinDLL on this system")
        wtsapi32 = win_dll("wtsapi32", use_last_error=True)
        kernel32 = win_dll("kernel32", use_last_error=True)
        dword = ctypes.c_uint32
        wtsapi32.WTSSendMessageW.argtypes = [
            ctypes.c_void_p,  # hServer
            dword,  # SessionId
            ctypes.c_wchar_p,  # pTitle
            dword,  # TitleLength (bytes)
            ctypes.c_wchar_p,  # pMessage
            dword,  # MessageLength (bytes)
            dword,  # Style
            dword,  # Timeout (seconds)
            ctypes.POINTER(dword),  # pResponse
            ctypes.c_int,  # bWait
        ]
        wtsapi32.WTSSendMessageW.restype = ctypes.c_int
        wtsapi32.WTSQuerySessionInformationW.argtypes = [
            ctypes.c_void_p,
            dword,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.POINTER(dword),
        ]
        wtsapi32.WTSQuerySessionInformationW.restype = ctypes.c_int
        wtsapi32.WTSFreeMemory.argtypes = [ctypes.c_void_p]
        kernel32.WTSGetActiveConsoleSessionId.restype = dword
        return cls(wtsapi32, kernel32)

    def console_session(self) -> int | None:
        """Return the id of the session at the physical console, None when there is none."""
        session_id = int(self.kernel32.WTSGetActiveConsoleSessionId())
        return None if session_id == NO_CONSOLE_SESSION else session_id

    def user_of(self, session_id: int) -> str:
        """Return the user logged in to `session_id` ("" at the logon screen)."""
        import ctypes  # noqa: PLC0415

        buffer = ctypes.c_void_p()
        size = ctypes.c_uint32()
        ok = self.wtsapi32.WTSQuerySessionInformationW(
            WTS_CURRENT_SERVER_HANDLE,
            session_id,
            WTS_USER_NAME,
            ctypes.pointer(buffer),
            ctypes.pointer(size),
        )
        if not ok or not buffer.value:
            return ""
        try:
            return ctypes.wstring_at(buffer.value) or ""
        finally:
            self.wtsapi32.WTSFreeMemory(buffer)

    def send(
        self, session_id: int, title: str, text: str, style: int, timeout: float, wait: bool
    ) -> int:
        """Show a message box in `session_id`; return the button (IDYES, IDNO, IDTIMEOUT...)."""
        import ctypes  # noqa: PLC0415

        response = ctypes.c_uint32(0)
        ok = self.wtsapi32.WTSSendMessageW(
            WTS_CURRENT_SERVER_HANDLE,
            session_id,
            ctypes.c_wchar_p(title),
            len(title.encode("utf-16-le")),  # lengths in bytes, not characters
            ctypes.c_wchar_p(text),
            len(text.encode("utf-16-le")),
            style,
            max(1, math.ceil(timeout)),
            ctypes.pointer(response),
            1 if wait else 0,
        )
        if not ok:
            error = getattr(ctypes, "get_last_error", lambda: 0)()
            raise OSError(f"WTSSendMessageW to session {session_id} failed (Windows error {error})")
        return int(response.value)
