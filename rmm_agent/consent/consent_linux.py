"""Consent on Linux: displays found in /proc, notify-send, commands as the user via runuser."""

from __future__ import annotations

import html
import re
from pathlib import Path

from rmm_agent.consent.base import (
    LOCAL_X_DISPLAY,
    TITLE,
    ConsentOS,
    Session,
    log,
    run_program,
    runs_as_other,
)

_WAYLAND_DISPLAY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$|^/[A-Za-z0-9._/-]+$")


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
            if name == b"DISPLAY" and LOCAL_X_DISPLAY.match(value):
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


class LinuxConsent(ConsentOS):
    """Terminals and desktop notifications (notify-send); zenity or kdialog ask."""

    @staticmethod
    def find_displays(sessions: list[Session]) -> None:
        """Give the users' sessions the displays their processes run on (/proc)."""
        uids = {s.uid for s in sessions if s.uid is not None}
        add_displays(sessions, displays_by_uid(Path("/proc"), uids))

    @staticmethod
    def as_user(session: Session, argv: list[str], euid: int) -> list[str]:
        """Return `env DISPLAY=… DBUS_SESSION_BUS_ADDRESS=… XDG_RUNTIME_DIR=… argv`, behind
        `runuser -u USER --` when the agent is root and the user is someone else."""
        env = ["env"]
        if session.display:
            name = "DISPLAY" if session.display.startswith(":") else "WAYLAND_DISPLAY"
            env.append(f"{name}={session.display}")
        if session.uid is not None:
            env.append(f"DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/{session.uid}/bus")
            env.append(f"XDG_RUNTIME_DIR=/run/user/{session.uid}")
        command = [*env, *argv]
        if runs_as_other(session, euid):
            return ["runuser", "-u", session.user, "--", *command]
        return command

    def notify_session(self, session: Session, lines: list[str]) -> bool:
        """Write to the session's terminal and show a notification on its display."""
        told = super().notify_session(session, lines)
        if not session.display:
            return told
        program = self.host.which("notify-send")
        if program is None:
            log.warning(
                "consent: notify-send is not installed: %s on display %s is not shown the "
                "notice on screen (install libnotify-bin / libnotify)",
                session.user,
                session.display,
            )
            return told
        body = html.escape("\n".join(lines), quote=False)  # the body is markup
        argv = [program, "-u", "critical", TITLE, body]
        return run_program(self.command(session, argv), session, "notify-send") or told
