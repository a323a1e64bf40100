"""Keep the action tests from ever rebooting the machine they run on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rmm_agent.actions import reboot

_start_reboot = reboot.start_reboot


def _refuse_real_reboots(argv: list[str]) -> str | None:
    if argv and argv[0] in ("systemctl", "shutdown", "shutdown.exe"):
        raise AssertionError(f"a test tried to reboot this machine with {argv}")
    return _start_reboot(argv)


@pytest.fixture(autouse=True)
def no_real_reboot(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any test whose reboot would run the OS's own reboot command."""
    monkeypatch.setattr(reboot, "start_reboot", _refuse_real_reboots)
    yield
