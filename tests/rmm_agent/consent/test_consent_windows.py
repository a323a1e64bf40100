"""Test consent on Windows through its command lines and API calls: msg.exe (a stand-in) and
WTSSendMessageW as built with ctypes."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path
from typing import Any

import pytest

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
    Session,
    WindowsConsole,
)

from .helpers import (
    programs,
    recorded,
    settings,
    stand_in,
)


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


def test_windows_notify_is_a_message_box_in_every_session(tmp_path: Path) -> None:
    msg = stand_in(tmp_path, "msg")
    sessions = [Session("alice", "", "", "", None), Session("bob", "", "", "", None)]
    consent = Consent(settings(), lambda: sessions, which=programs(msg=msg), platform="win32")

    assert consent.notify("carol", "restart service Spooler") == ["alice", "bob"]

    text = "\n".join(consent.notice("carol", "restart service Spooler"))
    assert recorded(tmp_path, "msg") == ["*", "/TIME:30", f"Remote action: {text}"]


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
