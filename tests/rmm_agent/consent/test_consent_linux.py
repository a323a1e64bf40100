"""Test consent on Linux: notify-send, runuser, zenity and kdialog (stand-ins found through
`which`), and the displays found in /proc."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from rmm_agent.consent import (
    Consent,
    ConsentAnswer,
    Session,
    add_displays,
    displays_by_uid,
)

from .helpers import (
    CONTACT,
    ME,
    UID,
    dialog,
    programs,
    recorded,
    recorded_env,
    settings,
    stand_in,
)


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
