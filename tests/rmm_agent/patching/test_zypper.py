"""Test the zypper backend on recorded openSUSE Leap 15.6 outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmm_agent.patching._rpm import RPM_QUERY
from rmm_agent.patching.base import INSTALLED, LOCKED, PatchError
from rmm_agent.patching.zypper import LIST_UPDATES, ZypperBackend, parse_list_updates

from .helpers import FakeRunner, fixture_text, found, ok

LISTED = fixture_text("zypper_list-updates_leap15.6-zypper1.14.xml")


def test_parse_list_updates() -> None:
    updates = {u.id: u for u in parse_list_updates(LISTED)}
    assert sorted(updates) == [
        "zypper:kernel-default.x86_64", "zypper:libopenssl3.x86_64", "zypper:tzdata.noarch",
        "zypper:vim.x86_64",
    ]  # fmt: skip
    ssl = updates["zypper:libopenssl3.x86_64"]
    assert (ssl.current, ssl.available, ssl.source) == (
        "3.1.4-150600.5.7.1", "3.1.4-150600.5.15.1", "repo-sle-update",
    )  # fmt: skip
    assert updates["zypper:kernel-default.x86_64"].reboot_required
    assert not ssl.reboot_required
    empty = "<?xml version='1.0'?>\n<stream>\n<update-status version=\"0.6\">\n<update-list/>\n"
    assert parse_list_updates(empty + "</update-status>\n</stream>\n") == []
    with pytest.raises(PatchError, match="no XML stream"):
        parse_list_updates("Repository 'repo-oss' is invalid.")


def backend(tmp_path: Path, runner: FakeRunner) -> ZypperBackend:
    return ZypperBackend(
        runner=runner, locks=(tmp_path / ".rpm.lock",), pid_lock=tmp_path / "zypp.pid", which=found
    )


def test_install_command_and_verification(tmp_path: Path) -> None:
    start = LISTED.index('<update kind="package" name="tzdata"')
    after = LISTED[:start] + LISTED[LISTED.index("</update>", start) + len("</update>\n") :]
    argv = (
        "zypper", "--non-interactive", "--no-refresh", "install", "--auto-agree-with-licenses",
        "--no-recommends", "tzdata.noarch=2024a-150000.75.28.1",
    )  # fmt: skip
    runner = FakeRunner(
        {
            LIST_UPDATES: [ok(LISTED), ok(after)],
            argv: ok("(1/1) Installing: tzdata-2024a-150000.75.28.1.noarch ....[done]\n"),
            RPM_QUERY: ok("tzdata\t2024a-150000.75.28.1\tnoarch\n"),
        }
    )
    [outcome] = backend(tmp_path, runner).install(["zypper:tzdata.noarch"], 600)
    assert (outcome.status, outcome.version) == (INSTALLED, "2024a-150000.75.28.1")


def test_a_locked_zypp_is_locked(tmp_path: Path) -> None:
    argv = (
        "zypper", "--non-interactive", "--no-refresh", "install", "--auto-agree-with-licenses",
        "--no-recommends", "vim.x86_64=9.1.0330-150500.20.12.1",
    )  # fmt: skip
    runner = FakeRunner(
        {
            LIST_UPDATES: ok(LISTED),
            argv: (7, "", fixture_text("zypper_install_locked_leap15.6-zypper1.14.txt")),
            RPM_QUERY: ok("vim\t9.1.0111-150500.20.9.1\tx86_64\n"),
        }
    )
    [outcome] = backend(tmp_path, runner).install(["zypper:vim.x86_64"], 600)
    assert outcome.status == LOCKED and "pid 2317" in outcome.message
