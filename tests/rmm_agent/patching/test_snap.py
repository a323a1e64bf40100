"""Test the snap backend on recorded snapd 2.63 output (Ubuntu 24.04)."""

from __future__ import annotations

from rmm_agent.patching.base import FAILED, INSTALLED, LOCKED
from rmm_agent.patching.snap import (
    REFRESH,
    REFRESH_LIST,
    SNAP_LIST,
    SnapBackend,
    parse_refresh_list,
)

from .helpers import FakeRunner, fixture_text, found, ok

LISTED = fixture_text("snap_refresh_list_ubuntu2404-snapd2.63.txt")
INSTALLED_LIST = fixture_text("snap_list_ubuntu2404-snapd2.63.txt")


def test_parse_refreshes_joined_with_installed_versions() -> None:
    updates = {u.id: u for u in parse_refresh_list(LISTED, INSTALLED_LIST)}
    assert sorted(updates) == ["snap:core22", "snap:firefox", "snap:lxd"]
    firefox = updates["snap:firefox"]
    assert (firefox.current, firefox.available, firefox.source, firefox.size_bytes) == (
        "126.0.1-1", "127.0-1", "mozilla", 276_000_000,
    )  # fmt: skip
    assert parse_refresh_list("", INSTALLED_LIST) == []  # "All snaps up to date." is stderr


def test_refresh_names_each_snaps_error_and_a_change_in_progress_is_locked() -> None:
    argv = (*REFRESH, "firefox", "lxd")
    after = "\n".join(line for line in LISTED.splitlines() if not line.startswith("lxd"))
    runner = FakeRunner(
        {
            REFRESH_LIST: [ok(LISTED), ok(after)],
            SNAP_LIST: ok(INSTALLED_LIST),
            argv: (1, "lxd 5.21.1-2d13beb from Canonical✓ refreshed\n",
                   'error: cannot refresh "firefox": snap "firefox" has running apps (firefox)\n'),
        }
    )  # fmt: skip
    backend = SnapBackend(runner=runner, which=found)
    outcomes = backend.install(["snap:firefox", "snap:lxd"], 1800)
    assert [(o.status, o.message) for o in outcomes] == [
        (FAILED, 'error: cannot refresh "firefox": snap "firefox" has running apps (firefox)'),
        (INSTALLED, ""),
    ]
    runner = FakeRunner(
        {
            REFRESH_LIST: ok(LISTED),
            SNAP_LIST: ok(INSTALLED_LIST),
            (*REFRESH, "core22"): (
                1, "", 'error: snap "core22" has "refresh-snap" change in progress\n'
            ),
        }
    )  # fmt: skip
    [outcome] = SnapBackend(runner=runner, which=found).install(["snap:core22"], 1800)
    assert outcome.status == LOCKED
