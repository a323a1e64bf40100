"""The apt backend for real, as root: a local repository offers 1.1 of a package at 1.0."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rmm_agent.patching.apt import DPKG_FRONTEND_LOCK, AptBackend
from rmm_agent.patching.base import INSTALLED, LOCKED, SKIPPED
from tests.aptrepo import NEEDS_ROOT_AND_APT, AptRepo, apt_repo, hold_lock, installed_version

pytestmark = [*NEEDS_ROOT_AND_APT, pytest.mark.slow, pytest.mark.timeout(300)]

PACKAGE = "rmm-test-hello"


@dataclass
class Repo:
    repo: AptRepo
    backend: AptBackend


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repo]:
    """Install 1.0 and publish 1.1; both are removed afterwards (one test at a time on dpkg)."""
    with apt_repo(tmp_path / "apt", [PACKAGE]) as made:
        yield Repo(made, AptBackend(apt_options=made.options, lists_dir=made.lists))


def test_detects_installs_and_verifies_a_real_update(repo: Repo) -> None:
    pending = [u for u in repo.backend.read_updates() if u.name == PACKAGE]
    assert len(pending) == 1
    update = pending[0]
    assert (update.id, update.current, update.available) == (f"apt:{PACKAGE}", "1.0", "1.1")
    assert update.classification == "bugfix" and update.backend == "apt"

    outcomes = repo.backend.install([update.id, "apt:rmm-no-such-package"], timeout=240)

    assert [(o.id, o.status, o.version) for o in outcomes] == [
        (update.id, INSTALLED, "1.1"),
        ("apt:rmm-no-such-package", SKIPPED, None),
    ], outcomes
    assert installed_version(PACKAGE) == "1.1"
    assert [u for u in repo.backend.read_updates() if u.name == PACKAGE] == []


def test_a_held_dpkg_lock_is_reported_as_locked_at_once(repo: Repo) -> None:
    holder = hold_lock(DPKG_FRONTEND_LOCK)
    try:
        started = time.monotonic()
        # The backend's own check (fcntl on the lock file) finds it held.
        outcomes = repo.backend.install([f"apt:{PACKAGE}"], timeout=60)
        assert [o.status for o in outcomes] == [LOCKED], outcomes
        assert str(DPKG_FRONTEND_LOCK) in outcomes[0].message
        # Without that check, apt-get itself says "Could not get lock" and exits at once.
        unchecked = AptBackend(
            apt_options=repo.repo.options, lock_file=Path("/nonexistent/lock-frontend")
        )
        outcomes = unchecked.install([f"apt:{PACKAGE}"], timeout=60)
        assert [o.status for o in outcomes] == [LOCKED], outcomes
        assert "lock" in outcomes[0].message.lower()
        assert time.monotonic() - started < 30
    finally:
        holder.kill()
        holder.wait()
    assert installed_version(PACKAGE) == "1.0"
