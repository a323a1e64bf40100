"""Test the patches collector: backend choice, caching, the metrics it declares."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rmm_agent.collectors.base import CommandError
from rmm_agent.collectors.patches import PatchesCollector, default_backends
from rmm_agent.patching.apt import APT_SIMULATE, AptBackend
from rmm_agent.patching.base import PACKAGE_CLASSIFICATIONS, PendingUpdate
from tests.rmm_agent.patching.helpers import FakeRunner, ok
from tests.rmm_agent.patching.helpers import fixture_text as patching_fixture

from .helpers import (
    FakeClock,
    check_output,
    value,
    values,
    write_tree,
)

HOUR = 3600.0


class FakeBackend:
    name = "fake"
    classifications: tuple[str, ...] = PACKAGE_CLASSIFICATIONS

    def __init__(self, updates: list[PendingUpdate], stamp: object = 0) -> None:
        self.updates = updates
        self.version = stamp
        self.reads = 0
        self.is_available = True
        self.lists_at: float | None = None
        self.error: Exception | None = None

    def available(self) -> bool:
        return self.is_available

    def stamp(self) -> object:
        return self.version

    def lists_updated_at(self) -> float | None:
        return self.lists_at

    def read_updates(self) -> list[PendingUpdate]:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return self.updates


def update(
    name: str, classification: str = "bugfix", published: float | None = None
) -> PendingUpdate:
    return PendingUpdate(
        f"fake:{name}", name, "1", "2", classification, "fake", "repo", published=published
    )


def test_counts_per_classification_and_the_list() -> None:
    fake = FakeBackend([update("a", "security", 1_000.0), update("b", published=4_000.0),
                        update("c")])  # fmt: skip
    fake.lists_at = 9_000.0
    out = PatchesCollector(backends=[fake], wall_clock=lambda: 10_000.0).collect()
    check_output(PatchesCollector, out)
    assert values(out, "patches_pending") == {
        (("classification", "security"),): 1,
        (("classification", "bugfix"),): 2,
    }
    assert value(out, "patches_pending_oldest_age_seconds") == 9_000
    assert value(out, "patches_lists_age_seconds") == 1_000
    assert out.info["backend"] == "fake"
    assert out.info["pending"] == 3 and out.info["truncated"] is False
    assert out.info["backends"] == ["fake"]
    assert out.info["updates"][0] == {
        "id": "fake:a", "name": "a", "current": "1", "available": "2",
        "classification": "security", "backend": "fake", "source": "repo", "severity": "",
        "published": 1_000.0, "size_bytes": None, "reboot_required": False,
    }  # fmt: skip


def test_every_classification_is_exported_even_at_zero_and_unknown_ages_are_omitted() -> None:
    out = PatchesCollector(backends=[FakeBackend([])]).collect()
    assert values(out, "patches_pending") == {
        (("classification", "security"),): 0,
        (("classification", "bugfix"),): 0,
    }
    assert {s.name for s in out.samples} == {"patches_pending"}


def test_a_long_list_is_capped_but_counted() -> None:
    fake = FakeBackend([update(f"p{i:03}") for i in range(12)])
    out = PatchesCollector(backends=[fake], max_listed=5).collect()
    assert len(out.info["updates"]) == 5 and out.info["truncated"] is True
    assert out.info["pending"] == 12 == value(out, "patches_pending", classification="bugfix")


def test_no_backend_is_not_an_error() -> None:
    fake = FakeBackend([])
    fake.is_available = False
    out = PatchesCollector(backends=[fake], platform="linux").collect()
    assert out.samples == []
    assert out.info == {
        "available": False,
        "reason": "no update manager found on linux (tried: fake)",
    }
    out = PatchesCollector(platform="freebsd14").collect()
    assert out.info["reason"] == "no update manager found on freebsd14 (tried: none for this OS)"


@pytest.mark.parametrize(
    ("platform", "names"),
    [
        ("linux", ["apt", "dnf", "zypper", "flatpak", "snap", "ubuntu-drivers", "fwupd"]),
        ("win32", ["windows-update", "winget", "chocolatey", "pnputil"]),
        ("darwin", ["softwareupdate", "homebrew"]),
        ("freebsd14", []),
    ],
)
def test_default_backends_per_os(platform: str, names: list[str]) -> None:
    backends = default_backends(platform, FakeRunner({}))
    assert [b.name for b in backends] == names


def apt_host(tmp_path: Path) -> tuple[AptBackend, FakeRunner, Path, Path]:
    root = write_tree(tmp_path, {"lists/x_Packages.lz4": "", "status": "Package: bash\n"})
    lists, status = root / "lists", root / "status"
    for path in (lists, lists / "x_Packages.lz4", status):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    runner = FakeRunner({APT_SIMULATE: ok(patching_fixture("apt-get_dist-upgrade_debian12.txt"))})
    backend = AptBackend(runner=runner, lists_dir=lists, status_file=status, which=lambda _: "/x")
    return backend, runner, lists, status


def test_apt_is_simulated_again_only_when_its_files_change(tmp_path: Path) -> None:
    backend, runner, lists, status = apt_host(tmp_path)
    clock = FakeClock()
    collector = PatchesCollector(
        backends=[backend], clock=clock, wall_clock=lambda: 1_700_086_400.0
    )
    first = collector.collect()
    assert value(first, "patches_pending", classification="security") == 69
    assert value(first, "patches_lists_age_seconds") == 86_400
    clock.advance(5 * HOUR)
    unlisted = {k: v for k, v in first.info.items() if k != "updates"}
    for _ in range(3):
        assert collector.collect().info == unlisted, "same list: the digest only"
    assert len(runner.calls) == 1, "nothing changed: the simulation is not run again"

    # dpkg installed the upgrades: re-read at once, the last read being old enough.
    runner.answers[APT_SIMULATE] = [ok(patching_fixture("apt-get_dist-upgrade_ubuntu2204.txt"))]
    os.utime(status, (1_700_050_000, 1_700_050_000))
    assert collector.collect().info["pending"] == 10
    assert len(runner.calls) == 2

    # apt-get update ran right after: the change waits for refresh_seconds to pass.
    os.utime(lists, (1_700_060_000, 1_700_060_000))
    clock.advance(HOUR - 1)
    collector.collect()
    assert len(runner.calls) == 2
    clock.advance(1)
    collector.collect()
    assert len(runner.calls) == 3
    clock.advance(10 * HOUR)
    collector.collect()
    assert len(runner.calls) == 3


def test_a_backend_without_a_stamp_is_read_every_refresh_seconds() -> None:
    fake = FakeBackend([], stamp=None)
    clock = FakeClock()
    collector = PatchesCollector(backends=[fake], clock=clock, refresh_seconds=600)
    collector.collect()
    clock.advance(599)
    collector.collect()
    assert fake.reads == 1
    clock.advance(1)
    collector.collect()
    assert fake.reads == 2


def test_a_failure_is_raised_until_the_next_due_read() -> None:
    fake = FakeBackend([update("a")], stamp=None)
    fake.error = CommandError("dnf -C -q check-update: exited 1")
    clock = FakeClock()
    collector = PatchesCollector(backends=[fake], clock=clock)
    for _ in range(3):
        with pytest.raises(CommandError, match="exited 1"):
            collector.collect()
    assert fake.reads == 1, "a failing backend is not re-run on every collection"
    fake.error = None
    clock.advance(HOUR)
    assert collector.collect().info["pending"] == 1
    assert fake.reads == 2


def test_switching_backend_reads_at_once() -> None:
    first, second = FakeBackend([update("a")]), FakeBackend([])
    second.name = "other"
    collector = PatchesCollector(backends=[first, second], clock=FakeClock())
    collector.collect()
    first.is_available = False
    assert collector.collect().info["backend"] == "other"
    assert second.reads == 1


def test_a_failing_backend_is_listed_while_the_others_count() -> None:
    good, bad = FakeBackend([update("a")]), FakeBackend([])
    bad.name = "snap"
    bad.error = CommandError("snap refresh --list: exited 1: cannot communicate with server")
    out = PatchesCollector(backends=[good, bad], clock=FakeClock()).collect()
    assert out.info["pending"] == 1 and out.info["backends"] == ["fake", "snap"]
    assert out.info["errors"] == {
        "snap": "CommandError: snap refresh --list: exited 1: cannot communicate with server"
    }


def test_declared_metrics_are_the_ones_emitted() -> None:
    fake = FakeBackend([update("a", "security", 1.0)])
    fake.lists_at = 1.0
    out = PatchesCollector(backends=[fake], wall_clock=lambda: 2.0).collect()
    check_output(PatchesCollector, out)
    assert {s.name for s in out.samples} == {spec.name for spec in PatchesCollector.metrics}
    assert PatchesCollector.inventory is False


def test_the_list_is_sent_when_it_changes_and_every_resend_seconds() -> None:
    fake = FakeBackend([update("a"), update("b")], stamp=None)
    clock = FakeClock()
    collector = PatchesCollector(
        backends=[fake], clock=clock, refresh_seconds=60, resend_seconds=6 * HOUR
    )
    first = collector.collect().info
    assert [u["id"] for u in first["updates"]] == ["fake:a", "fake:b"]
    digest = first["digest"]
    assert len(digest) == 64

    # Same list, read again or not: counts and digest, no list.
    for _ in range(3):
        clock.advance(61)
        out = collector.collect()
        assert "updates" not in out.info and out.info["digest"] == digest
        assert out.info["pending"] == 2 == value(out, "patches_pending", classification="bugfix")

    # One update went (installed elsewhere): the new list at once, under a new digest.
    fake.updates = [update("b")]
    clock.advance(61)
    changed = collector.collect().info
    assert [u["id"] for u in changed["updates"]] == ["fake:b"]
    assert changed["digest"] != digest
    assert "updates" not in collector.collect().info

    # Unchanged for six hours: sent again, for a server that lost it.
    clock.advance(6 * HOUR)
    again = collector.collect().info
    assert [u["id"] for u in again["updates"]] == ["fake:b"]
    assert again["digest"] == changed["digest"]
    assert "updates" not in collector.collect().info


def test_a_new_version_of_the_same_update_changes_the_digest() -> None:
    fake = FakeBackend([update("a")], stamp=None)
    clock = FakeClock()
    collector = PatchesCollector(backends=[fake], clock=clock, refresh_seconds=1)
    first = collector.collect().info["digest"]
    fake.updates = [PendingUpdate("fake:a", "a", "1", "3", "bugfix", "fake", "repo")]
    clock.advance(2)
    out = collector.collect().info
    assert out["digest"] != first and out["updates"][0]["available"] == "3"


def test_collections_between_reads_reuse_the_list_and_still_move_the_ages() -> None:
    fake = FakeBackend([update("a", "security", 100.0), update("b")], stamp="same")
    fake.lists_at = 50.0
    clock, wall = FakeClock(), [1_000.0]
    collector = PatchesCollector(
        backends=[fake], clock=clock, wall_clock=lambda: wall[0], resend_seconds=6 * HOUR
    )
    first = collector.collect()
    assert [u["id"] for u in first.info["updates"]] == ["fake:a", "fake:b"]
    for step in range(1, 4):
        clock.advance(60)
        wall[0] += 60
        out = collector.collect()
        assert "updates" not in out.info and out.info["digest"] == first.info["digest"]
        assert value(out, "patches_pending_oldest_age_seconds") == 900.0 + 60 * step
        assert value(out, "patches_lists_age_seconds") == 950.0 + 60 * step
        assert value(out, "patches_pending", classification="security") == 1
    assert fake.reads == 1, "not due: read once"
    # Taking the list out of one output left it whole for the resend.
    clock.advance(6 * HOUR)
    again = collector.collect().info
    assert again["updates"] == first.info["updates"] and again["pending"] == 2
    # A due read with another answer makes new counts, list and digest at once.
    fake.version, fake.updates = "changed", [update("b")]
    clock.advance(HOUR)
    changed = collector.collect()
    assert [u["id"] for u in changed.info["updates"]] == ["fake:b"]
    assert changed.info["digest"] != first.info["digest"]
    assert value(changed, "patches_pending", classification="security") == 0
