"""The tests that change the host's packages take the tests' host-dpkg lock (tests/host_dpkg.py),
so `pytest -n 2 --dist loadfile` never runs two of them at once on dpkg's own lock."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.host_dpkg import LOCK, host_dpkg

TESTS = Path(__file__).resolve().parent
# A test that runs dpkg to change packages (not dpkg-deb or dpkg-query). tests/aptrepo.py's
# apt_repo takes the lock itself; apt-get argv lists in the backends' command-line tests are
# strings compared, never run.
CHANGES_PACKAGES = re.compile(
    r"""["']dpkg["'],\s*["'](?:-i|-P|-r|--purge|--install|--remove)["']"""
)


def held_elsewhere() -> bool:
    """Return whether another process finds the tests' host-dpkg lock taken."""
    code = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
        "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError:\n"
        "    sys.exit(1)\n"
    )
    return subprocess.run([sys.executable, "-c", code, str(LOCK)]).returncode == 1


def test_the_lock_is_reentrant_in_one_process_and_released_at_the_outer_end() -> None:
    assert not held_elsewhere()
    with host_dpkg():
        assert held_elsewhere()
        with host_dpkg():  # a helper taking it inside a fixture that holds it: no deadlock
            assert held_elsewhere()
        assert held_elsewhere(), "the inner exit must not release the outer hold"
    assert not held_elsewhere()


def test_every_test_that_changes_host_packages_takes_the_lock() -> None:
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.name == "host_dpkg.py" or path == Path(__file__).resolve():
            continue
        text = path.read_text()
        if CHANGES_PACKAGES.search(text) and "host_dpkg" not in text:
            offenders.append(str(path.relative_to(TESTS)))
    assert offenders == [], (
        f"{offenders} change the host's packages without tests/host_dpkg.py's lock: hold "
        "`host_dpkg()` around the test, or build the repository with tests/aptrepo.py's apt_repo"
    )
