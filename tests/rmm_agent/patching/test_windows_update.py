"""Test the Windows Update backend on its PowerShell scripts' recorded JSON (Windows 11 23H2)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from rmm_agent.patching.base import FAILED, INSTALLED, LOCKED, PatchError
from rmm_agent.patching.windows_update import (
    POWERSHELL,
    WindowsUpdateBackend,
    classify,
    install_script,
    parse_install_output,
    parse_search_output,
)

from .helpers import FakeRunner, fixture_text, found, ok

SEARCH = fixture_text("windows_update_search_win11-23H2_powershell5.1.json")
CUMULATIVE = "windows-update:6d5cd5bc-3cf3-4ac4-9d2a-c8d6c1e1e3a7"
DRIVER = "windows-update:5f6e7d8c-1111-4222-8333-444455556666"
MSRT = "windows-update:1a2b3c4d-0000-4000-8000-000000000001"


def test_parse_recorded_search() -> None:
    updates = parse_search_output(SEARCH)
    by_kb = {u.available: (u.classification, u.source) for u in updates}
    assert by_kb == {
        "KB5036893": ("security", "Security Updates"),
        "KB2267602": ("security", "Definitionsupdates"),  # matched by ID, name localised
        "KB5036620": ("bugfix", "Update Rollups"),
        "KB890830": ("critical", "Critical Updates"),
        "2024-03-11": ("driver", "Drivers"),  # a driver: no KB, Type 2, its version date
        "KB5036980": ("bugfix", "Updates"),
    }
    by_id = {u.id: u for u in updates}
    cumulative = by_id[CUMULATIVE]
    assert (cumulative.severity, cumulative.size_bytes, cumulative.reboot_required) == (
        "Critical", 663552123, True,
    )  # fmt: skip
    assert cumulative.published == datetime(2024, 4, 9, tzinfo=UTC).timestamp()
    assert all(u.current is None and u.backend == "windows-update" for u in updates)
    assert [u.name for u in updates] == sorted(u.name for u in updates)


def test_one_update_and_none_and_garbage() -> None:
    one = json.dumps(json.loads(SEARCH)[0])  # PowerShell 5.1 unwraps a one-element array
    assert [u.id for u in parse_search_output(one)] == [CUMULATIVE]
    assert parse_search_output("[]") == parse_search_output("") == []
    with pytest.raises(PatchError, match="printed no JSON"):
        parse_search_output("Exception from HRESULT: 0x8024402C")


def test_the_most_urgent_classification_wins() -> None:
    both = {
        "Categories": [
            {"Name": "Updates", "CategoryID": "cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83",
             "Type": "UpdateClassification"},
            {"Name": "Security Updates", "CategoryID": "", "Type": "UpdateClassification"},
        ]
    }  # fmt: skip
    assert classify(both) == "security"
    assert classify({}) == "bugfix"


def test_install_results_busy_and_errors() -> None:
    ids = [CUMULATIVE, DRIVER, MSRT]
    done = parse_install_output(
        fixture_text("windows_update_install_win11-23H2_powershell5.1.json"), ids
    )
    assert (done[CUMULATIVE].status, done[CUMULATIVE].reboot_required) == (INSTALLED, True)
    assert (done[DRIVER].status, done[DRIVER].message) == (
        FAILED,
        "Windows Update: install failed (0x80240017)",
    )
    busy = parse_install_output(
        fixture_text("windows_update_install_busy_win11-23H2_powershell5.1.json"), ids
    )
    assert {o.status for o in busy.values()} == {LOCKED}
    refused = parse_install_output(
        fixture_text("windows_update_install_not-allowed_win11-23H2_powershell5.1.json"), ids
    )
    assert {o.status for o in refused.values()} == {LOCKED}


def test_install_script_takes_guids_only() -> None:
    script = install_script(["6d5cd5bc-3cf3-4ac4-9d2a-c8d6c1e1e3a7"])
    assert "$ids = @('6d5cd5bc-3cf3-4ac4-9d2a-c8d6c1e1e3a7')" in script
    assert "IsInstalled=0 and IsHidden=0" in script and "$installer.IsBusy" in script
    with pytest.raises(ValueError, match="GUIDs"):
        install_script(["x'); Remove-Item C:\\ -Recurse; ('"])


def test_install_then_the_rescan_decides() -> None:
    backend = WindowsUpdateBackend(which=found)
    search = tuple(backend.search_argv())
    after = [u for u in json.loads(SEARCH) if u["Identity"]["UpdateID"] not in (CUMULATIVE[15:],)]
    steps = backend.install_steps([u for u in parse_search_output(SEARCH) if u.id in ids_asked()])
    install = tuple(steps[0].argv)
    assert install[: len(POWERSHELL)] == POWERSHELL
    runner = FakeRunner(
        {
            search: [ok(SEARCH), ok(json.dumps(after))],
            install: ok(fixture_text("windows_update_install_win11-23H2_powershell5.1.json")),
        }
    )
    outcomes = WindowsUpdateBackend(runner=runner, which=found).install(ids_asked(), 3600)
    assert [(o.id, o.status, o.reboot_required) for o in outcomes] == [
        (CUMULATIVE, INSTALLED, True),
        (DRIVER, FAILED, False),
        # Windows said it succeeded, the rescan still offers it: failed.
        (MSRT, FAILED, False),
    ]
    assert "reported success but Windows Malicious" in outcomes[2].message


def ids_asked() -> list[str]:
    return [CUMULATIVE, DRIVER, MSRT]


def test_available_where_powershell_is() -> None:
    assert WindowsUpdateBackend(which=found).available()
    assert WindowsUpdateBackend.platforms == ("win",)
