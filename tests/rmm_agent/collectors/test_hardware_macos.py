"""Test the macOS hardware reader on recorded system_profiler output."""

from __future__ import annotations

from rmm_agent.collectors.hardware_macos import SYSTEM_PROFILER, read_hardware

from .helpers import FakeRunner, fixture_text


def test_system_profiler() -> None:
    runner = FakeRunner(
        {tuple(SYSTEM_PROFILER): fixture_text("system_profiler_hardware_storage_m1.json")}
    )
    facts = read_hardware(runner)
    assert facts["cpu"] == {"model": "Apple M1 Pro", "vendor": None}
    assert facts["system"]["model"] == "MacBook Pro"
    assert facts["system"]["serial"] == "C02G7XYZQ6L4"
    assert facts["system"]["bios_version"] == "10151.101.3"
    drives = [(d["model"], d["rotational"], d["removable"]) for d in facts["disks"]]
    assert drives == [("APPLE SSD AP0512R", False, False), ("WD Elements 25A2", True, True)]
