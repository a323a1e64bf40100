"""Consent on macOS: osascript notifications and dialogs for the console user."""

from __future__ import annotations

import math

from rmm_agent.consent.base import (
    TITLE,
    ConsentOS,
    Dialog,
    Session,
    Verdict,
    run_program,
    runs_as_other,
)


def applescript(text: str) -> str:
    """Return `text` as an AppleScript string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def osascript_verdict(status: int, stdout: bytes) -> Verdict:
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


class MacosConsent(ConsentOS):
    """Terminals, and osascript for the user at the console (the login window's device)."""

    @staticmethod
    def as_user(session: Session, argv: list[str], euid: int) -> list[str]:
        """Return `launchctl asuser UID sudo -u USER argv` (the user's GUI domain) when the
        agent is root and the user is someone else."""
        if runs_as_other(session, euid):
            return ["launchctl", "asuser", str(session.uid), "sudo", "-u", session.user, *argv]
        return argv

    @staticmethod
    def can_ask(session: Session) -> bool:
        """Return whether `session` has a display or is the console's user."""
        return bool(session.display) or session.terminal == "console"

    def _osascript(self) -> str:
        return self.host.which("osascript") or "/usr/bin/osascript"

    def notify_session(self, session: Session, lines: list[str]) -> bool:
        """Write to the session's terminal; show the console's user a notification."""
        told = super().notify_session(session, lines)
        if session.terminal != "console":
            return told
        script = (
            f"display notification {applescript(' '.join(lines))} with title {applescript(TITLE)}"
        )
        argv = [self._osascript(), "-e", script]
        return run_program(self.command(session, argv), session, "osascript") or told

    def dialog(self, session: Session, message: str, timeout: float) -> Dialog | None:
        """Return an osascript `display dialog` that gives up at the timeout, Deny its default."""
        script = (
            f"display dialog {applescript(message)} with title {applescript(TITLE)} "
            'buttons {"Deny", "Allow"} default button "Deny" with icon caution '
            f"giving up after {max(1, math.ceil(timeout))}"
        )
        return [self._osascript(), "-e", script], osascript_verdict, "osascript"
