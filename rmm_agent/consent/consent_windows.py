"""Consent on Windows: msg.exe, or WTSSendMessageW message boxes on the console session."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from rmm_agent.consent.base import (
    TITLE,
    ConsentAnswer,
    ConsentOS,
    Session,
    WindowsApi,
    run_program,
)

# winuser.h, wtsapi32.h.
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


class WindowsConsent(ConsentOS):
    """Message boxes: msg.exe to every session, WTSSendMessageW on the console to ask."""

    def _api(self) -> WindowsApi:
        if self.host.windows is None:
            self.host.windows = WindowsConsole.load()
        return self.host.windows

    def _msg_exe(self) -> str | None:
        found = self.host.which("msg.exe")
        if found is not None:
            return found
        # A 32-bit agent on 64-bit Windows sees SysWOW64 as System32, which has no msg.exe.
        sysnative = Path(os.environ.get("WINDIR", r"C:\Windows")) / "Sysnative" / "msg.exe"
        return str(sysnative) if sysnative.exists() else None

    def notify(self, sessions: list[Session], lines: list[str], timeout: float) -> list[str]:
        """Show every session a message box (msg.exe), else the console session one."""
        text = "\n".join(lines)
        program = self._msg_exe()
        users = [s.user for s in sessions]
        if program is not None:
            seconds = max(1, math.ceil(timeout))
            argv = [program, "*", f"/TIME:{seconds}", f"{TITLE}: {text}"]
            return users if run_program(argv, None, "msg.exe") else []
        # Home editions have no msg.exe: a message box on the console session instead.
        windows = self._api()
        session_id = windows.console_session()
        if session_id is None:
            return []
        style = MB_OK | MB_ICONINFORMATION | MB_SYSTEMMODAL | MB_SETFOREGROUND
        windows.send(session_id, TITLE, text, style, timeout, wait=False)
        user = windows.user_of(session_id)
        return [user] if user else []

    def ask_directly(self, lines: list[str], timeout: float) -> ConsentAnswer | None:
        """Ask the console session's user with a Yes/No box, No the default."""
        windows = self._api()
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
