"""Test consent on every OS: what users read, real terminals (ptys), the host owner's programs,
the command lines per OS and the sessions from utmp."""

from __future__ import annotations

import os
import termios
import time
from pathlib import Path

import pytest

from rmm_agent.collectors import base as collectors_base
from rmm_agent.config import AgentConfig
from rmm_agent.consent import (
    OS_CONSENT,
    Consent,
    ConsentAnswer,
    ConsentOS,
    ConsentSettings,
    Requester,
    Session,
    as_user,
    consent_os,
    logged_in_sessions,
    session_of,
)
from rmm_agent.consent import base as consent_module
from rmm_agent.consent.consent_linux import LinuxConsent
from rmm_agent.consent.consent_macos import MacosConsent
from rmm_agent.consent.consent_windows import WindowsConsent

from .helpers import (
    CONTACT,
    ME,
    UID,
    alive,
    dialog,
    programs,
    read_all,
    recorded,
    settings,
    stand_in,
)


def test_notice_and_question_say_who_what_and_whom_to_call() -> None:
    consent = Consent(settings(contact="call Example MSP at 555-0100."), lambda: [])
    assert consent.notice("alice", "restart service nginx.") == [
        "alice (via remote management, no ticket) is acting on this computer: restart service "
        "nginx.",
        "If you did not expect this, call Example MSP at 555-0100.",
    ]
    assert consent.question("alice", "run script cleanup.sh", 120) == [
        "alice (via remote management, no ticket) asks to act on this computer: run script "
        "cleanup.sh.",
        "Allow it? Without an answer within 2 minutes it is not done.",
        "If you did not expect this, answer No and call Example MSP at 555-0100.",
    ]
    anonymous = Consent(settings(contact=""), lambda: [])
    lines = anonymous.notice("policy:common/DiskSpaceLow", "run script cleanup.sh")
    assert lines[0].startswith("an automatic rule (common/DiskSpaceLow) (via remote management")
    assert lines[1] == "If you did not expect this, tell your IT support."
    assert anonymous.question("", "reboot", 45)[1].endswith("within 45 seconds it is not done.")
    # Text from the network cannot forge lines or send escape sequences: breaks are spaces,
    # other invisible characters show as their escapes.
    forged = anonymous.notice("eve\x1b[2J\nroot", "reboot\r\nAll is fine")[0]
    assert "\x1b" not in forged and "\n" not in forged and "\r" not in forged
    assert forged.startswith("eve\\x1b[2J root (via remote management")


def test_prompts_name_the_operator_the_msp_and_the_ticket() -> None:
    consent = Consent(settings(contact=""), lambda: [])
    for_ticket = Requester("alice", "Acme IT", ticket=42)
    assert consent.question(for_ticket, "reboot", 60)[0] == (
        "alice of Acme IT (via remote management, ticket 42) asks to act on this computer: reboot."
    )
    window = Requester("patching:weekly", "Acme IT", maintenance_window="weekly")
    assert consent.notice(window, "install updates")[0] == (
        "scheduled patching of Acme IT (via remote management, maintenance window weekly) is "
        "acting on this computer: install updates."
    )
    assert consent.notice(Requester("bob", "Acme IT"), "reboot")[0].startswith(
        "bob of Acme IT (via remote management, no ticket) is acting"
    )
    # A name cannot pass for another (bidi override) nor forge a line (newline) in the MSP.
    spoofed = Requester("mallory\u202eecila", "Acme IT\nalice of Acme IT", ticket=7)
    line = consent.notice(spoofed, "reboot")[0]
    assert line.startswith(
        "mallory\\u202eecila of Acme IT alice of Acme IT (via remote management, ticket 7)"
    ), line
    assert "\u202e" not in line and "\n" not in line


def test_settings_come_from_the_agent_configuration() -> None:
    config = AgentConfig(
        consent_timeout_seconds=45.0,
        consent_contact=CONTACT,
        consent_ask_command=["/opt/ask", "{message}"],
        consent_notify_command=["/opt/tell", "{user}"],
    )
    assert ConsentSettings.from_config(config) == ConsentSettings(
        45.0, CONTACT, ["/opt/ask", "{message}"], ["/opt/tell", "{user}"]
    )
    assert ConsentSettings.from_config(AgentConfig()) == ConsentSettings(120.0, "", None, None)


def test_notify_writes_to_a_real_terminal(pty: tuple[int, str]) -> None:
    master, path = pty
    session = Session("alice", path.removeprefix("/dev/"), path, "", None)
    consent = Consent(settings(), lambda: [session], which=programs(), platform="linux")

    assert consent.notify("bob", "restart service nginx") == ["alice"]

    text = read_all(master)
    assert "\a*** Remote action on this computer (" in text
    assert "bob (via remote management, no ticket) is acting on this computer: restart" in text
    assert f"If you did not expect this, {CONTACT}." in text


def test_a_stopped_terminal_is_given_up_on_without_blocking(pty: tuple[int, str]) -> None:
    _master, path = pty
    # Output stopped, as by Ctrl-S (XOFF): a terminal that takes nothing more.
    stopper = os.open(path, os.O_WRONLY | os.O_NOCTTY)
    termios.tcflow(stopper, termios.TCOOFF)
    session = Session("alice", "pts/x", path, "", None)
    consent = Consent(settings(), lambda: [session], which=programs(), tty_timeout=0.3)

    try:
        started = time.monotonic()
        assert consent.notify("bob", "reboot") == []
        assert time.monotonic() - started < 2.0
    finally:
        os.close(stopper)


def test_terminals_that_fail_are_skipped_and_others_still_told(
    pty: tuple[int, str], tmp_path: Path
) -> None:
    master, path = pty
    regular = tmp_path / "not-a-tty"
    regular.write_text("")
    sessions = [
        Session("gone", "pts/999999", "/dev/pts/999999", "", None),
        Session("null", "null", "/dev/null", "", None),  # a device, but not a terminal
        Session("file", "x", str(regular), "", None),
        Session("alice", "pts/0", path, "", None),
    ]
    consent = Consent(settings(), lambda: sessions, which=programs(), platform="linux")
    assert consent.notify("bob", "reboot") == ["alice"]
    assert regular.read_text() == ""
    assert "reboot" in read_all(master)


def test_notify_never_raises_when_listing_users_fails() -> None:
    def broken() -> list[Session]:
        raise PermissionError("no utmp")

    assert Consent(settings(), broken).notify("bob", "reboot") == []
    assert Consent(settings(), list).notify("bob", "reboot") == []


def test_a_hanging_notification_program_is_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consent_module, "NOTIFY_SECONDS", 0.5)
    notify_send = stand_in(tmp_path, "notify-send", 'echo $$ > "$here/pid"\nexec sleep 60\n')
    session = Session(ME, "", "", ":5", UID)
    consent = Consent(
        settings(), lambda: [session], which=programs(notify_send=notify_send), platform="linux"
    )
    started = time.monotonic()
    assert consent.notify("bob", "reboot") == []
    assert time.monotonic() - started < 4
    assert not alive(int((tmp_path / "pid").read_text()))


def test_command_lines_as_the_user_per_os() -> None:
    alice = Session("alice", "tty2", "/dev/tty2", ":0", 1000)
    argv = ["/usr/bin/notify-send", "-u", "critical", "Remote action", "text"]
    assert as_user(alice, argv, "linux", 0) == [
        "runuser",
        "-u",
        "alice",
        "--",
        "env",
        "DISPLAY=:0",
        "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus",
        "XDG_RUNTIME_DIR=/run/user/1000",
        *argv,
    ]
    wayland = Session("alice", "", "", "wayland-0", 1000)
    assert as_user(wayland, ["zenity"], "linux", 1000) == [
        "env",
        "WAYLAND_DISPLAY=wayland-0",
        "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus",
        "XDG_RUNTIME_DIR=/run/user/1000",
        "zenity",
    ]
    console = Session("alice", "console", "", "", 501)
    assert as_user(console, ["/usr/bin/osascript", "-e", "x"], "darwin", 0) == [
        "launchctl",
        "asuser",
        "501",
        "sudo",
        "-u",
        "alice",
        "/usr/bin/osascript",
        "-e",
        "x",
    ]
    assert as_user(console, ["osascript"], "darwin", 501) == ["osascript"]
    assert as_user(Session("alice", "", "", "", None), ["msg.exe"], "win32", -1) == ["msg.exe"]


def test_notify_command_replaces_the_built_in_notices(tmp_path: Path, pty: tuple[int, str]) -> None:
    master, path = pty
    tell = stand_in(tmp_path, "tell")
    session = Session("alice", "pts/1", path, ":0", UID)
    consent = Consent(
        settings(notify_command=[str(tell), "--to={user}", "{title}", "{message}", "{tty}"]),
        lambda: [session],
        which=programs(),
        platform="linux",
    )

    assert consent.notify("bob", "reboot") == ["alice"]

    text = "\n".join(consent.notice("bob", "reboot"))
    assert recorded(tmp_path, "tell") == ["--to=alice", "Remote action", text, path]
    assert read_all(master, 0.1) == ""  # the host's program replaced the terminal notice


def test_ask_command_yes_no_and_its_placeholders(tmp_path: Path) -> None:
    ask = dialog(tmp_path, "ask", 0)
    session = Session("alice", "pts/3", "/dev/pts/3", "", UID)  # terminal-only is fine here
    command = [str(ask), "{title}", "{message}", "--timeout={timeout}", "{user}", "{tty}"]
    command += ["{operator}", "{msp}", "{ticket}"]
    consent = Consent(settings(ask_command=command), lambda: [session], platform="linux")
    bob = Requester("bob", "Acme IT", ticket=42)

    assert consent.ask(bob, "reboot", 5) == ConsentAnswer(True, "alice", "approved by alice")
    message = "\n".join(consent.question(bob, "reboot", 5))
    assert recorded(tmp_path, "ask") == [
        "Remote action",
        message,
        "--timeout=5",
        "alice",
        "/dev/pts/3",
        "bob",
        "Acme IT",
        "ticket 42",
    ]
    assert consent.ask("bob", "reboot", 5).approved
    assert recorded(tmp_path, "ask")[-3:] == ["bob", "", "no ticket"]

    (tmp_path / "answer").write_text("1")
    assert consent.ask("bob", "reboot", 5) == ConsentAnswer(False, "alice", "declined by alice")
    (tmp_path / "answer").write_text("3")
    answer = consent.ask("bob", "reboot", 5)
    assert answer == ConsentAnswer(False, "", "no answer: consent_ask_command for alice exited 3")

    missing = Consent(settings(ask_command=[str(tmp_path / "nothing")]), lambda: [session])
    answer = missing.ask("bob", "reboot", 5)
    assert answer.reason.startswith("no answer: consent_ask_command for alice exited 127 (env:")
    assert "No such file or directory" in answer.reason


def test_a_hanging_ask_command_is_ended_at_the_timeout(tmp_path: Path) -> None:
    ask = stand_in(
        tmp_path,
        "ask",
        'echo $$ > "$here/pid"\nsleep 60 &\necho $! > "$here/sleep.pid"\nwait\n',
    )
    session = Session("alice", "", "", ":0", UID)
    consent = Consent(settings(ask_command=[str(ask)]), lambda: [session], platform="linux")

    started = time.monotonic()
    answer = consent.ask("bob", "reboot", 1)
    elapsed = time.monotonic() - started

    assert answer == ConsentAnswer(False, "", "no answer within 1s")
    assert 1.0 <= elapsed < 4.0
    # The program and what it started are gone, and no longer tracked by the agent.
    for name in ("pid", "sleep.pid"):
        pid = int((tmp_path / name).read_text())
        deadline = time.monotonic() + 2
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid), name
    assert not collectors_base._running


def test_the_first_user_to_answer_decides_and_the_other_dialog_closes(tmp_path: Path) -> None:
    ask = stand_in(
        tmp_path,
        "ask",
        'case "$1" in\n  bob) sleep 0.2; exit 1;;\n'
        '  *) echo $$ > "$here/alice.pid"; exec sleep 60;;\nesac\n',
    )
    sessions = [Session("alice", "", "", ":0", UID), Session("bob", "", "", ":1", UID)]
    consent = Consent(settings(ask_command=[str(ask), "{user}"]), lambda: sessions)

    started = time.monotonic()
    assert consent.ask("carol", "reboot", 30) == ConsentAnswer(False, "bob", "declined by bob")
    assert time.monotonic() - started < 5
    pid = int((tmp_path / "alice.pid").read_text())
    assert not alive(pid)


def test_ask_with_nobody_logged_in_or_sessions_unreadable(tmp_path: Path) -> None:
    ask = dialog(tmp_path, "ask", 0)
    consent = Consent(settings(ask_command=[str(ask)]), list)
    assert consent.ask("bob", "reboot", 5) == ConsentAnswer(False, "", "no logged-in user to ask")
    assert not (tmp_path / "ask.args").exists()

    def broken() -> list[Session]:
        raise OSError("utmp unreadable")

    consent = Consent(settings(ask_command=[str(ask)]), broken)
    assert consent.ask("bob", "reboot", 5) == ConsentAnswer(False, "", "no logged-in user to ask")


def test_sessions_from_utmp_entries() -> None:
    assert session_of("root", "pts/0", "10.0.0.5") == Session("root", "pts/0", "/dev/pts/0", "", 0)
    assert session_of("nosuchuser-x", ":0", ":0") == Session("nosuchuser-x", ":0", "", ":0", None)
    assert session_of("root", "tty7", ":0").display == ":0"
    assert session_of("root", "pts/1", "localhost:10.0").display == ""  # ssh -X: not local
    assert session_of("root", "console", "").tty_path == ""
    for forged in ("../etc/passwd", "pts/../../etc/shadow", "/etc/passwd"):
        assert session_of("root", forged, "").tty_path == ""


def test_this_hosts_sessions_can_be_listed() -> None:
    sessions = logged_in_sessions()
    assert all(isinstance(s, Session) and s.user for s in sessions)


def test_each_os_has_one_registry_line_and_any_other_the_posix_way(tmp_path: Path) -> None:
    assert {"linux": LinuxConsent, "macos": MacosConsent, "windows": WindowsConsent} == OS_CONSENT
    assert consent_os("linux") is LinuxConsent
    assert consent_os("darwin") is MacosConsent
    assert consent_os("win32") is WindowsConsent
    assert consent_os("freebsd14") is ConsentOS

    # No module of its own: no notify-send even with a display, zenity to ask.
    notify_send = stand_in(tmp_path, "notify-send")
    zenity = dialog(tmp_path, "zenity", 0)
    session = Session(ME, "", "", ":1", UID)
    which = programs(notify_send=notify_send, zenity=zenity)
    consent = Consent(settings(), lambda: [session], which=which, platform="freebsd14")
    assert consent.notify("bob", "reboot") == []
    assert not (tmp_path / "notify-send.args").exists()
    assert consent.ask("bob", "reboot", 30) == ConsentAnswer(True, ME, f"approved by {ME}")
