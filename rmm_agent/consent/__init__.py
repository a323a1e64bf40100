"""Consent: show the people at a managed computer who acts on it, and optionally ask them first.

Remote-support scams work because nobody at the screen sees who is connected; an RMM should
make that visible. `Consent.notify` tells every logged-in user who acts and what (terminals like
`wall`, desktop notifications, Windows message boxes); `Consent.ask` shows a yes/no dialog and
waits for an answer up to a timeout. docs/consent.md says what users see on each OS.

What every OS shares is in base.py; each OS's way is one consent_<os>.py module and one line of
OS_CONSENT. An OS without a line gets base.ConsentOS: terminals, zenity or kdialog.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Callable

import psutil

from rmm_agent.consent.base import (
    TITLE,
    TTY_WRITE_SECONDS,
    Asking,
    ConsentAnswer,
    ConsentOS,
    ConsentSettings,
    Dialog,
    Host,
    Requester,
    Session,
    Verdict,
    WindowsApi,
    clean,
    end,
    exit_verdict,
    fill,
    log,
    race,
    run_program,
    session_of,
    start,
    terminal_text,
    unique,
    who,
    write_terminal,
)
from rmm_agent.consent.consent_linux import LinuxConsent, add_displays, displays_by_uid
from rmm_agent.consent.consent_macos import MacosConsent, applescript
from rmm_agent.consent.consent_windows import (
    IDNO,
    IDTIMEOUT,
    IDYES,
    MB_DEFBUTTON2,
    MB_ICONINFORMATION,
    MB_ICONQUESTION,
    MB_OK,
    MB_SETFOREGROUND,
    MB_SYSTEMMODAL,
    MB_YESNO,
    NO_CONSOLE_SESSION,
    WindowsConsent,
    WindowsConsole,
)

__all__ = [
    "IDNO",
    "IDTIMEOUT",
    "IDYES",
    "MB_DEFBUTTON2",
    "MB_ICONINFORMATION",
    "MB_ICONQUESTION",
    "MB_OK",
    "MB_SETFOREGROUND",
    "MB_SYSTEMMODAL",
    "MB_YESNO",
    "NO_CONSOLE_SESSION",
    "OS_CONSENT",
    "TITLE",
    "TTY_WRITE_SECONDS",
    "Consent",
    "ConsentAnswer",
    "ConsentOS",
    "ConsentSettings",
    "Requester",
    "Session",
    "Verdict",
    "WindowsConsole",
    "add_displays",
    "applescript",
    "as_user",
    "clean",
    "consent_os",
    "displays_by_uid",
    "fill",
    "logged_in_sessions",
    "os_key",
    "session_of",
    "terminal_text",
    "who",
    "write_terminal",
]

# One line per OS with a way of its own, by os_key().
OS_CONSENT: dict[str, type[ConsentOS]] = {
    "linux": LinuxConsent,
    "macos": MacosConsent,
    "windows": WindowsConsent,
}


def os_key(platform: str) -> str:
    """Return the OS_CONSENT key of a sys.platform value (itself when it has none)."""
    if platform.startswith("linux"):
        return "linux"
    return {"darwin": "macos", "win32": "windows"}.get(platform, platform)


def consent_os(platform: str) -> type[ConsentOS]:
    """Return the consent way of `platform` (a sys.platform value)."""
    return OS_CONSENT.get(os_key(platform), ConsentOS)


def logged_in_sessions() -> list[Session]:
    """Return the sessions of the users logged in now (utmp), with graphical displays found.

    No session at all is a normal answer (a server nobody is logged in to).
    """
    sessions = [session_of(u.name, u.terminal or "", u.host or "") for u in psutil.users()]
    if sessions:
        consent_os(sys.platform).find_displays(sessions)
    return sessions


def as_user(session: Session, argv: list[str], platform: str, euid: int) -> list[str]:
    """Return the command line running `argv` as `session`'s user where this OS needs it.

    Linux: `env DISPLAY=… DBUS_SESSION_BUS_ADDRESS=… XDG_RUNTIME_DIR=…` in front, and
    `runuser -u USER --` when the agent is root and the user is someone else. macOS:
    `launchctl asuser UID sudo -u USER` (the user's GUI domain). Windows: unchanged.
    """
    return consent_os(platform).as_user(session, argv, euid)


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
        windows: WindowsApi | None = None,
    ) -> None:
        """`which` finds programs and `platform` picks the OS way (both replaceable in tests);
        `windows` is the Windows API (loaded on first use on Windows)."""
        self.settings = settings
        self._sessions = sessions
        euid: int = getattr(os, "geteuid", lambda: -1)()
        self._os = consent_os(platform)(Host(which, euid, tty_timeout, windows))

    # ---- texts ----

    def _contact_line(self, asking: bool) -> str:
        contact = clean(self.settings.contact, 160).rstrip(".")
        if asking:
            return f"If you did not expect this, answer No{' and ' + contact if contact else ''}."
        return f"If you did not expect this, {contact or 'tell your IT support'}."

    def notice(self, operator: Requester | str, action: str) -> list[str]:
        """Return the lines of a notification: who, for what, what, and what to do if
        unexpected (`operator`: the command's requester, or an operator's name alone)."""
        return [
            f"{who(operator)} is acting on this computer: {clean(action).rstrip('.')}.",
            self._contact_line(asking=False),
        ]

    def question(self, operator: Requester | str, action: str, timeout: float) -> list[str]:
        """Return the lines of a consent question."""
        return [
            f"{who(operator)} asks to act on this computer: {clean(action).rstrip('.')}.",
            f"Allow it? Without an answer within {_duration(timeout)} it is not done.",
            self._contact_line(asking=True),
        ]

    # ---- notify ----

    def notify(self, operator: Requester | str, action: str) -> list[str]:
        """Tell the logged-in users who acts and what; return who was told. Never raises."""
        requester = Requester.given(operator)
        try:
            lines = self.notice(operator, action)
            sessions = self._list()
            if not sessions:
                log.info("consent: nobody is logged in to tell about %s", clean(action))
                return []
            if self.settings.notify_command:
                told = [
                    s.user for s in unique(sessions) if self._notify_custom(s, lines, requester)
                ]
            else:
                told = self._os.notify(sessions, lines, self.settings.timeout_seconds)
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

    def _notify_custom(self, session: Session, lines: list[str], requester: Requester) -> bool:
        assert self.settings.notify_command is not None
        argv = fill(
            self.settings.notify_command,
            session,
            "\n".join(lines),
            self.settings.timeout_seconds,
            requester,
        )
        return run_program(self._os.command(session, argv), session, "consent_notify_command")

    # ---- ask ----

    def ask(
        self, operator: Requester | str, action: str, timeout_seconds: float | None = None
    ) -> ConsentAnswer:
        """Ask the logged-in users to allow the action; block up to the timeout.

        `timeout_seconds` None means the agent's consent_timeout. Never raises: a failure to
        ask is a refusal with the reason.
        """
        timeout = self.settings.timeout_seconds if timeout_seconds is None else timeout_seconds
        requester = Requester.given(operator)
        try:
            lines = self.question(operator, action, timeout)
            if not self.settings.ask_command:
                answer = self._os.ask_directly(lines, timeout)
                if answer is not None:
                    return answer
            sessions = self._list()
            if not sessions:
                return ConsentAnswer(False, "", "no logged-in user to ask")
            return self._ask_sessions(sessions, lines, timeout, requester)
        except Exception as exc:
            log.exception("consent: asking the logged-in users failed")
            return ConsentAnswer(False, "", f"could not ask the logged-in users: {exc}")

    def _ask_sessions(
        self, sessions: list[Session], lines: list[str], timeout: float, requester: Requester
    ) -> ConsentAnswer:
        graphical = unique([s for s in sessions if self._os.can_ask(s)], by_display=True)
        custom = self.settings.ask_command
        if custom:
            # The host's own program decides how to reach a terminal-only user.
            targets = graphical or unique(sessions, by_user=True)
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
        asking: list[Asking] = []
        try:
            for session in targets:
                built = self._question_command(session, message, timeout, requester)
                if built is None:
                    continue
                argv, read, program = built
                child = start(self._os.command(session, argv), program)
                if child is not None:
                    asking.append(Asking(session, child, read, program))
            if not asking:
                missing = (
                    "consent_ask_command could not be started (the agent log says why)"
                    if custom
                    else "no dialog program (install zenity or kdialog, or set "
                    "consent_ask_command in the agent configuration)"
                )
                return ConsentAnswer(False, "", f"no logged-in user could be asked: {missing}")
            return race(asking, timeout)
        finally:
            for item in asking:
                end(item.child)

    def _question_command(
        self, session: Session, message: str, timeout: float, requester: Requester
    ) -> Dialog | None:
        """Return the argv asking `session`, how to read its outcome, and its name."""
        if self.settings.ask_command:
            argv = fill(self.settings.ask_command, session, message, timeout, requester)
            return argv, exit_verdict(timeout_status=None), "consent_ask_command"
        return self._os.dialog(session, message, timeout)
