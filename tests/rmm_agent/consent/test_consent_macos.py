"""Test consent on macOS through its command lines: osascript notifications and dialogs
(a stand-in found through `which`)."""

from __future__ import annotations

from pathlib import Path

from rmm_agent.consent import (
    Consent,
    ConsentAnswer,
    Session,
    applescript,
)

from .helpers import (
    ME,
    UID,
    programs,
    recorded,
    settings,
    stand_in,
)


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
