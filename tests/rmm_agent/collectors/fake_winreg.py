"""A winreg stand-in loaded from regedit exports (.reg files) of real registries."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_HIVES = {"HKEY_LOCAL_MACHINE": 0x80000002, "HKEY_CURRENT_USER": 0x80000001}
_VALUE_RE = re.compile(r'^"((?:[^"\\]|\\.)*)"=(.*)$')


def _unescape(text: str) -> str:
    """Undo .reg string escaping (\\\\ and \\")."""
    return re.sub(r"\\(.)", r"\1", text)


def parse_reg(text: str) -> dict[tuple[int, str], dict[str, Any]]:
    """Parse a regedit export into {(hive, path): {value name: data}}; strings and dwords only."""
    keys: dict[tuple[int, str], dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        if line.endswith("\\") and not line.startswith("["):
            pending = line[:-1]  # hex values continue on the next line
            continue
        pending = ""
        if line.startswith("[") and line.endswith("]"):
            hive_name, _, path = line[1:-1].partition("\\")
            current = keys.setdefault((_HIVES[hive_name], path), {})
            continue
        match = _VALUE_RE.match(line)
        if match is None or current is None:
            continue
        name, data = _unescape(match.group(1)), match.group(2)
        if data.startswith('"'):
            current[name] = _unescape(data[1:-1])
        elif data.startswith("dword:"):
            current[name] = int(data[len("dword:") :], 16)
        # hex(...) values (binary, expandable, multi-string) are not needed by the collectors.
    return keys


def load_reg(path: Path) -> dict[tuple[int, str], dict[str, Any]]:
    """Read a .reg export (UTF-16 with BOM as regedit writes it, or UTF-8)."""
    data = path.read_bytes()
    text = data.decode("utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else data.decode()
    return parse_reg(text)


class FakeWinreg:
    """The subset of winreg the collectors use, over an in-memory registry."""

    HKEY_LOCAL_MACHINE = _HIVES["HKEY_LOCAL_MACHINE"]
    HKEY_CURRENT_USER = _HIVES["HKEY_CURRENT_USER"]
    KEY_READ = 0x20019
    KEY_WOW64_64KEY = 0x0100
    KEY_WOW64_32KEY = 0x0200

    def __init__(self, *exports: dict[tuple[int, str], dict[str, Any]]) -> None:
        self.keys: dict[tuple[int, str], dict[str, Any]] = {}
        for export in exports:
            self.keys.update(export)
        # FILETIME of each key; tests change one to simulate an install.
        self.times: dict[tuple[int, str], int] = {}
        self.opened = 0
        self.closed = 0

    def _resolve(self, hive: int, path: str, access: int) -> tuple[int, str]:
        # A 32-bit view of HKLM\SOFTWARE is redirected to HKLM\SOFTWARE\WOW6432Node.
        if access & self.KEY_WOW64_32KEY and path.upper().startswith("SOFTWARE\\"):
            path = "SOFTWARE\\WOW6432Node\\" + path[len("SOFTWARE\\") :]
        for hive_key, key_path in self.keys:
            if hive_key == hive and key_path.lower() == path.lower():
                return hive_key, key_path
        raise FileNotFoundError(2, "The system cannot find the file specified")

    def OpenKey(self, hive: int, path: str, reserved: int = 0, access: int = 0x20019) -> Any:
        handle = self._resolve(hive, path, access)
        self.opened += 1
        return handle

    def CloseKey(self, handle: Any) -> None:
        self.closed += 1

    def EnumValue(self, handle: Any, index: int) -> tuple[str, Any, int]:
        items = list(self.keys[handle].items())
        if index >= len(items):
            raise OSError(259, "No more data is available")
        name, data = items[index]
        return name, data, 4 if isinstance(data, int) else 1

    def EnumKey(self, handle: Any, index: int) -> str:
        hive, path = handle
        prefix = path.lower() + "\\"
        children = sorted(
            p[len(prefix) :]
            for h, p in self.keys
            if h == hive and p.lower().startswith(prefix) and "\\" not in p[len(prefix) :]
        )
        if index >= len(children):
            raise OSError(259, "No more data is available")
        return children[index]

    def QueryInfoKey(self, handle: Any) -> tuple[int, int, int]:
        subkeys = 0
        try:
            while True:
                self.EnumKey(handle, subkeys)
                subkeys += 1
        except OSError:
            pass
        # 2024-04-01T00:00:00Z as FILETIME unless the test set another time.
        return subkeys, len(self.keys[handle]), self.times.get(handle, 133564032000000000)
