"""Read the Windows registry through a `winreg`-like module passed in (a fake in tests)."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

# winreg itself on Windows, or a test fake with the same functions and constants.
WinregModule = Any

# FILETIME counts 100 ns ticks since 1601-01-01; this many seconds separate it from 1970.
_FILETIME_EPOCH_OFFSET = 11_644_473_600


def load_winreg() -> WinregModule:
    """Import winreg, which exists on Windows only."""
    import winreg  # noqa: PLC0415 - imported lazily so this package imports on every OS

    return winreg


def read_values(reg: WinregModule, hive: int, path: str, view: int = 0) -> dict[str, Any] | None:
    """Return every value of a key by name, or None if the key does not exist."""
    try:
        key = reg.OpenKey(hive, path, 0, reg.KEY_READ | view)
    except OSError:
        return None
    values: dict[str, Any] = {}
    try:
        index = 0
        while True:
            try:
                name, data, _type = reg.EnumValue(key, index)
            except OSError:  # ERROR_NO_MORE_ITEMS ends the enumeration
                break
            values[name] = data
            index += 1
    finally:
        reg.CloseKey(key)
    return values


def list_subkeys(reg: WinregModule, hive: int, path: str, view: int = 0) -> list[str] | None:
    """Return the names of a key's subkeys, or None if the key does not exist."""
    try:
        key = reg.OpenKey(hive, path, 0, reg.KEY_READ | view)
    except OSError:
        return None
    names: list[str] = []
    try:
        index = 0
        while True:
            try:
                names.append(reg.EnumKey(key, index))
            except OSError:
                break
            index += 1
    finally:
        reg.CloseKey(key)
    return names


def last_write_time(reg: WinregModule, hive: int, path: str, view: int = 0) -> float | None:
    """Return when a key (or its values) last changed as a Unix time, or None if absent."""
    try:
        key = reg.OpenKey(hive, path, 0, reg.KEY_READ | view)
    except OSError:
        return None
    try:
        _subkeys, _values, modified = reg.QueryInfoKey(key)
    finally:
        reg.CloseKey(key)
    return float(modified) / 1e7 - _FILETIME_EPOCH_OFFSET
