"""Test consent: real terminals (ptys), real programs standing in for zenity, notify-send,
msg.exe and osascript (sh scripts found through `which`: POSIX only), and the Windows API
calls as built."""

from __future__ import annotations

import ctypes
import os
import pwd
import select
import shutil
import sys
import tempfile
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rmm_agent.consent import base as consent_module
from rmm_agent.collectors import base as collectors_base
from rmm_agent.config import AgentConfig
from rmm_agent.consent import (
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
    Consent,
    ConsentAnswer,
    ConsentSettings,
    Session,
    WindowsConsole,
    add_displays,
    applescript,
    as_user,
    displays_by_uid,
    logged_in_sessions,
    session_of,
)

ME = pwd.getpwuid(os.getuid()).pw_name
UID = os.getuid()
CONTACT = "call Example MSP at 555-0100"


def settings(**kw: Any) -> ConsentSettings:
    values: dict[str, Any] = {"timeout_seconds": 30.0, "contact": CONTACT}
    values.update(kw)
    return ConsentSettings(**values)


def programs(**found: Path) -> Callable[[str], str | None]:
    """Return a `which` that finds only the given stand-ins ("notify_send" is notify-send)."""
    table = {name.replace("_", "-"): str(path) for name, path in found.items()}
    table = {("msg.exe" if k == "msg" else k): v for k, v in table.items()}
    return table.get


def stand_in(folder: Path, name: str, body: str = "") -> Path:
    """Write a program that records its arguments and environment, then runs `body`."""
    path = folder / name
    path.write_text(
        "#!/bin/sh\n"
        'here="$(dirname "$0")"\n'
        f'for a in "$@"; do printf "%s\\0" "$a"; done > "$here/{name}.args"\n'
        f'env > "$here/{name}.env"\n' + body
    )
    path.chmod(0o755)
    return path


def recorded(folder: Path, name: str) -> list[str]:
    return [a.decode() for a in (folder / f"{name}.args").read_bytes().split(b"\0")[:-1]]


def recorded_env(folder: Path, name: str) -> dict[str, str]:
    lines = (folder / f"{name}.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def read_all(fd: int, wait: float = 0.3) -> str:
    chunks = []
    while select.select([fd], [], [], wait)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    try:
        yield master, os.ttyname(slave)
    finally:
        os.close(slave)
        os.close(master)


def alive(pid: int) -> bool:
    """Return whether `pid` runs (a zombie waiting for a parent that may never reap is not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


# ---- what users read ----


def test_notice_and_question_say_who_what_and_whom_to_call() -> None:
    consent = Consent(settings(contact="call Example MSP at 555-0100."), lambda: [])
    assert consent.notice("alice", "restart service nginx.") == [
        "alice (via remote management) is acting on this computer: restart service nginx.",
        "If you did not expect this, call Example MSP at 555-0100.",
    ]
    assert consent.question("alice", "run script cleanup.sh", 120) == [
        "alice (via remote management) asks to act on this computer: run script cleanup.sh.",
        "Allow it? Without an answer within 2 minutes it is not done.",
        "If you did not expect this, answer No and call Example MSP at 555-0100.",
    ]
    anonymous = Consent(settings(contact=""), lambda: [])
    lines = anonymous.notice("policy:common/DiskSpaceLow", "run script cleanup.sh")
    assert lines[0].startswith("an automatic rule (common/DiskSpaceLow) (via remote management)")
    assert lines[1] == "If you did not expect this, tell your IT support."
    assert anonymous.question("", "reboot", 45)[1].endswith("within 45 seconds it is not done.")
    # Text from the network cannot forge lines or send escape sequences.
    forged = anonymous.notice("eve\x1b[2J\nroot", "reboot\r\nAll is fine")[0]
    assert "\x1b" not in forged and "\n" not in forged and "\r" not in forged
    assert forged.startswith("eve [2J root (via remote management)")


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


# ---- notify: terminals ----


def test_notify_writes_to_a_real_terminal(pty: tuple[int, str]) -> None:
    master, path = pty
    session = Session("alice", path.removeprefix("/dev/"), path, "", None)
    consent = Consent(settings(), lambda: [session], which=programs(), platform="linux")

    assert consent.notify("bob", "restart service nginx") == ["alice"]

    text = read_all(master)
    assert "\a*** Remote action on this computer (" in text
    assert "bob (via remote management) is acting on this computer: restart service nginx." in text
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


# ---- notify: desktops ----


def test_notify_send_runs_in_the_users_session_with_display_and_bus(tmp_path: Path) -> None:
    notify_send = stand_in(tmp_path, "notify-send")
    session = Session(ME, "", "", ":5", UID)
    consent = Consent(
        settings(), lambda: [session], which=programs(notify_send=notify_send), platform="linux"
    )

    assert consent.notify("bob", "run <cleanup.sh> & reboot") == [ME]

    args = recorded(tmp_path, "notify-send")
    assert args[:3] == ["-u", "critical", "Remote action"]
    # The body is markup for notification daemons: the action's text is escaped.
    assert "run &lt;cleanup.sh&gt; &amp; reboot" in args[3]
    assert f"If you did not expect this, {CONTACT}." in args[3]
    env = recorded_env(tmp_path, "notify-send")
    assert env["DISPLAY"] == ":5"
    assert env["DBUS_SESSION_BUS_ADDRESS"] == f"unix:path=/run/user/{UID}/bus"
    assert env["XDG_RUNTIME_DIR"] == f"/run/user/{UID}"


def test_a_failing_notify_send_is_not_counted(tmp_path: Path) -> None:
    notify_send = stand_in(tmp_path, "notify-send", "echo 'cannot open display' >&2; exit 1\n")
    session = Session(ME, "", "", ":5", UID)
    consent = Consent(
        settings(), lambda: [session], which=programs(notify_send=notify_send), platform="linux"
    )
    assert consent.notify("bob", "reboot") == []


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


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root and runuser"
)
def test_runuser_really_switches_to_the_session_user() -> None:
    nobody = pwd.getpwnam("nobody")
    folder = Path(tempfile.mkdtemp(prefix="consent-"))
    try:
        folder.chmod(0o777)  # the stand-in runs as nobody and records there
        notify_send = stand_in(folder, "notify-send", 'id -u > "$here/uid"\n')
        session = Session("nobody", "", "", ":7", nobody.pw_uid)
        consent = Consent(
            settings(), lambda: [session], which=programs(notify_send=notify_send), platform="linux"
        )
        assert consent.notify("bob", "reboot") == ["nobody"]
        assert (folder / "uid").read_text().strip() == str(nobody.pw_uid)
        assert recorded_env(folder, "notify-send")["DISPLAY"] == ":7"
    finally:
        shutil.rmtree(folder)


def test_windows_notify_is_a_message_box_in_every_session(tmp_path: Path) -> None:
    msg = stand_in(tmp_path, "msg")
    sessions = [Session("alice", "", "", "", None), Session("bob", "", "", "", None)]
    consent = Consent(settings(), lambda: sessions, which=programs(msg=msg), platform="win32")

    assert consent.notify("carol", "restart service Spooler") == ["alice", "bob"]

    text = "\n".join(consent.notice("carol", "restart service Spooler"))
    assert recorded(tmp_path, "msg") == ["*", "/TIME:30", f"Remote action: {text}"]


def test_macos_notify_is_a_notification_for_the_console_user(tmp_path: Path) -> None:
    osascript = stand_in(tmp_path, "osascript")
    session = Session(ME, "console", "", "", UID)
    consent = Consent(
        settings(), lambda: [session], which=programs(osascript=osascript), platform="darwin"
    )

    assert consent.notify("bob", 'run "x.sh"') == [ME]

    text = " ".join(consent.notice("bob", 'run "x.sh"'))
    assert recorded(tmp_path, "osascript") == [
        "-e",
        f'display notification {applescript(text)} with title "Remote action"',
    ]
    assert applescript('say "hi" \\ bye\nnow') == '"say \\"hi\\" \\\\ bye\\nnow"'


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


# ---- ask: desktop dialogs ----


def dialog(folder: Path, name: str, answer: int) -> Path:
    (folder / "answer").write_text(str(answer))
    return stand_in(folder, name, 'exit "$(cat "$here/answer")"\n')


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (0, ConsentAnswer(True, ME, f"approved by {ME}")),
        (1, ConsentAnswer(False, ME, f"declined by {ME}")),
        (5, ConsentAnswer(False, "", "no answer within 30s")),  # zenity's own timeout
    ],
)
def test_zenity_asks_the_graphical_user(
    tmp_path: Path, status: int, expected: ConsentAnswer
) -> None:
    zenity = dialog(tmp_path, "zenity", status)
    sessions = [Session(ME, "pts/3", "", "", UID), Session(ME, "tty2", "/dev/tty2", ":1", UID)]
    consent = Consent(settings(), lambda: sessions, which=programs(zenity=zenity), platform="linux")

    assert consent.ask("bob", "run script cleanup.sh", 30) == expected

    message = "\n".join(consent.question("bob", "run script cleanup.sh", 30))
    assert recorded(tmp_path, "zenity") == [
        "--question",
        "--title",
        "Remote action",
        "--text",
        message,
        "--no-markup",
        "--ok-label",
        "Allow",
        "--cancel-label",
        "Deny",
        "--timeout",
        "30",
    ]
    assert recorded_env(tmp_path, "zenity")["DISPLAY"] == ":1"


def test_kdialog_when_there_is_no_zenity(tmp_path: Path) -> None:
    kdialog = dialog(tmp_path, "kdialog", 0)
    session = Session(ME, "", "", "wayland-0", UID)
    consent = Consent(
        settings(), lambda: [session], which=programs(kdialog=kdialog), platform="linux"
    )

    assert consent.ask("bob", "reboot") == ConsentAnswer(True, ME, f"approved by {ME}")

    message = "\n".join(consent.question("bob", "reboot", 30))
    assert recorded(tmp_path, "kdialog") == [
        "--title",
        "Remote action",
        "--yes-label",
        "Allow",
        "--no-label",
        "Deny",
        "--yesno",
        message,
    ]
    assert recorded_env(tmp_path, "kdialog")["WAYLAND_DISPLAY"] == "wayland-0"


def test_a_broken_dialog_is_no_answer_with_its_error(tmp_path: Path) -> None:
    zenity = stand_in(tmp_path, "zenity", "echo 'cannot open display: :1' >&2; exit 255\n")
    session = Session(ME, "", "", ":1", UID)
    consent = Consent(
        settings(), lambda: [session], which=programs(zenity=zenity), platform="linux"
    )
    assert consent.ask("bob", "reboot", 30) == ConsentAnswer(
        False, "", f"no answer: zenity for {ME} exited 255 (cannot open display: :1)"
    )


def test_nobody_to_ask() -> None:
    terminal_only = [Session("alice", "pts/0", "/dev/pts/0", "", 1000)]
    consent = Consent(settings(), lambda: terminal_only, which=programs(), platform="linux")
    answer = consent.ask("bob", "reboot", 30)
    assert (answer.approved, answer.by) == (False, "")
    assert answer.reason.startswith("no logged-in user could be asked: alice only on a terminal")

    graphical = [Session("alice", "", "", ":0", 1000)]
    consent = Consent(settings(), lambda: graphical, which=programs(), platform="linux")
    answer = consent.ask("bob", "reboot", 30)
    assert not answer.approved
    assert answer.reason.startswith("no logged-in user could be asked: no dialog program")

    assert Consent(settings(), list, platform="linux").ask("bob", "reboot", 30) == ConsentAnswer(
        False, "", "no logged-in user to ask"
    )


def test_macos_asks_with_a_dialog_that_gives_up(tmp_path: Path) -> None:
    (tmp_path / "said").write_text("button returned:Allow, gave up:false")
    osascript = stand_in(tmp_path, "osascript", 'cat "$here/said"\n')
    session = Session(ME, "console", "", "", UID)
    consent = Consent(
        settings(), lambda: [session], which=programs(osascript=osascript), platform="darwin"
    )

    assert consent.ask("bob", "reboot", 30) == ConsentAnswer(True, ME, f"approved by {ME}")
    message = "\n".join(consent.question("bob", "reboot", 30))
    assert recorded(tmp_path, "osascript") == [
        "-e",
        f'display dialog {applescript(message)} with title "Remote action" '
        'buttons {"Deny", "Allow"} default button "Deny" with icon caution giving up after 30',
    ]
    (tmp_path / "said").write_text("button returned:Deny, gave up:false")
    assert consent.ask("bob", "reboot", 30).reason == f"declined by {ME}"
    (tmp_path / "said").write_text("button returned:, gave up:true")
    assert consent.ask("bob", "reboot", 30).reason == "no answer within 30s"


# ---- ask: the host owner's program (consent_ask_command) ----


def test_ask_command_yes_no_and_its_placeholders(tmp_path: Path) -> None:
    ask = dialog(tmp_path, "ask", 0)
    session = Session("alice", "pts/3", "/dev/pts/3", "", UID)  # terminal-only is fine here
    command = [str(ask), "{title}", "{message}", "--timeout={timeout}", "{user}", "{tty}"]
    consent = Consent(settings(ask_command=command), lambda: [session], platform="linux")

    assert consent.ask("bob", "reboot", 5) == ConsentAnswer(True, "alice", "approved by alice")
    message = "\n".join(consent.question("bob", "reboot", 5))
    assert recorded(tmp_path, "ask") == [
        "Remote action",
        message,
        "--timeout=5",
        "alice",
        "/dev/pts/3",
    ]

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


# ---- Windows: WTSSendMessageW ----


class FakeWtsApi:
    """Stands in for wtsapi32: records each call's arguments, answers with `response`."""

    def __init__(self, response: int, user: str = "alice") -> None:
        self.response = response
        self.sent: list[tuple[Any, ...]] = []
        self.freed = 0
        self._name = ctypes.create_unicode_buffer(user)

    def WTSSendMessageW(self, *args: Any) -> int:  # the Windows names
        self.sent.append(args)
        args[8].contents.value = self.response
        return 1

    def WTSQuerySessionInformationW(self, *args: Any) -> int:
        assert args[:3] == (0, 1, 5)  # this server, session 1, WTSUserName
        args[3].contents.value = ctypes.addressof(self._name)
        args[4].contents.value = ctypes.sizeof(self._name)
        return 1

    def WTSFreeMemory(self, pointer: Any) -> None:
        self.freed += 1


class FakeKernel32:
    def __init__(self, session: int) -> None:
        self.session = session

    def WTSGetActiveConsoleSessionId(self) -> int:
        return self.session


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (IDYES, ConsentAnswer(True, "alice", "approved by alice")),
        (IDNO, ConsentAnswer(False, "alice", "declined by alice")),
        (IDTIMEOUT, ConsentAnswer(False, "", "no answer within 45s")),
    ],
)
def test_windows_ask_is_a_yes_no_box_on_the_console_session(
    response: int, expected: ConsentAnswer
) -> None:
    api = FakeWtsApi(response)
    consent = Consent(
        settings(), list, platform="win32", windows=WindowsConsole(api, FakeKernel32(1))
    )

    assert consent.ask("bob", "reboot", 45) == expected

    (call,) = api.sent
    message = "\n".join(consent.question("bob", "reboot", 45))
    assert call[0:2] == (0, 1)  # WTS_CURRENT_SERVER_HANDLE, the console session
    assert (call[2].value, call[3]) == ("Remote action", 2 * len("Remote action"))
    assert (call[4].value, call[5]) == (message, len(message.encode("utf-16-le")))
    assert call[6] == MB_YESNO | MB_ICONQUESTION | MB_DEFBUTTON2 | MB_SYSTEMMODAL | MB_SETFOREGROUND
    assert call[7] == 45
    assert call[9] == 1  # bWait: block until answered or timed out
    assert api.freed == 1


def test_windows_without_a_console_user_or_msg_exe() -> None:
    api = FakeWtsApi(IDYES)
    nobody = Consent(
        settings(),
        list,
        platform="win32",
        windows=WindowsConsole(api, FakeKernel32(NO_CONSOLE_SESSION)),
    )
    assert nobody.ask("bob", "reboot", 45) == ConsentAnswer(False, "", "no logged-in user to ask")
    assert api.sent == []

    # No msg.exe (Home editions): a message box on the console session, not waited for.
    sessions = [Session("alice", "", "", "", None)]
    consent = Consent(
        settings(),
        lambda: sessions,
        which=programs(),
        platform="win32",
        windows=WindowsConsole(api, FakeKernel32(1)),
    )
    assert consent.notify("bob", "reboot") == ["alice"]
    (call,) = api.sent
    assert call[6] == MB_OK | MB_ICONINFORMATION | MB_SYSTEMMODAL | MB_SETFOREGROUND
    assert (call[7], call[9]) == (30, 0)


def test_the_windows_api_is_only_loaded_on_windows() -> None:
    if sys.platform == "win32":
        pytest.skip("this checks the error elsewhere")
    with pytest.raises(OSError, match="WTSSendMessageW needs Windows"):
        WindowsConsole.load()
    answer = Consent(settings(), list, platform="win32").ask("bob", "reboot", 5)
    assert not answer.approved
    assert answer.reason.startswith("could not ask the logged-in users: WTSSendMessageW needs")


# ---- who is logged in ----


def test_sessions_from_utmp_entries() -> None:
    assert session_of("root", "pts/0", "10.0.0.5") == Session("root", "pts/0", "/dev/pts/0", "", 0)
    assert session_of("nosuchuser-x", ":0", ":0") == Session("nosuchuser-x", ":0", "", ":0", None)
    assert session_of("root", "tty7", ":0").display == ":0"
    assert session_of("root", "pts/1", "localhost:10.0").display == ""  # ssh -X: not local
    assert session_of("root", "console", "").tty_path == ""
    for forged in ("../etc/passwd", "pts/../../etc/shadow", "/etc/passwd"):
        assert session_of("root", forged, "").tty_path == ""


def test_displays_are_read_from_the_users_processes(tmp_path: Path) -> None:
    def process(pid: int, **env: str) -> None:
        (tmp_path / str(pid)).mkdir()
        data = b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items())
        (tmp_path / str(pid) / "environ").write_bytes(data)

    process(10, HOME="/root", DISPLAY="localhost:10.0")  # forwarded over ssh: ignored
    process(11, WAYLAND_DISPLAY="wayland-0")
    process(12, DISPLAY=":1", WAYLAND_DISPLAY="wayland-0")
    (tmp_path / "self").mkdir()
    assert displays_by_uid(tmp_path, {UID}) == {UID: ":1"}
    assert displays_by_uid(tmp_path, {UID + 1}) == {}
    (tmp_path / "12" / "environ").unlink()
    assert displays_by_uid(tmp_path, {UID}) == {UID: "wayland-0"}


def test_the_display_goes_to_the_seat_session_or_a_new_one() -> None:
    sessions = [
        Session("alice", "pts/0", "/dev/pts/0", "", 1000),
        Session("alice", "tty2", "/dev/tty2", "", 1000),
        Session("bob", "pts/1", "/dev/pts/1", "", 1001),
        Session("carol", "pts/2", "/dev/pts/2", "", 1002),
    ]
    add_displays(sessions, {1000: ":0", 1001: "wayland-1"})
    assert [s.display for s in sessions] == ["", ":0", "", "", "wayland-1"]
    assert sessions[4] == Session("bob", "", "", "wayland-1", 1001)


def test_this_hosts_sessions_can_be_listed() -> None:
    sessions = logged_in_sessions()
    assert all(isinstance(s, Session) and s.user for s in sessions)
