"""A private apt repository offering 1.1 of a package installed at 1.0, for tests as root."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rmm_agent.patching.apt import AptBackend

PACKAGE = "rmm-test-hello"
# Root, dpkg and apt: what the real apt tests need; they skip cleanly without.
NEEDS_ROOT_AND_APT = [
    pytest.mark.linux,
    pytest.mark.skipif(
        not hasattr(os, "geteuid") or os.geteuid() != 0, reason="installs a package: needs root"
    ),
    pytest.mark.skipif(
        any(shutil.which(p) is None for p in ("dpkg", "dpkg-deb", "dpkg-query", "apt-get")),
        reason="needs dpkg and apt",
    ),
]


def run(*argv: str | Path) -> str:
    """Run a setup command; fail the test with its output when it fails."""
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
    return done.stdout


def build_deb(root: Path, version: str) -> Path:
    """Build a tiny architecture-independent package of `version` with dpkg-deb."""
    tree = root / f"{PACKAGE}_{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "usr/share" / PACKAGE).mkdir(parents=True)
    (tree / "usr/share" / PACKAGE / "version").write_text(version + "\n")
    (tree / "DEBIAN/control").write_text(
        f"Package: {PACKAGE}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: RMM tests <tests@rmm.invalid>\nSection: misc\nPriority: optional\n"
        "Description: RMM patching test package\n Installed and removed by the apt test.\n"
    )
    deb = root / f"{PACKAGE}_{version}_all.deb"
    run("dpkg-deb", "--root-owner-group", "--build", tree, deb)
    return deb


def packages_entry(deb: Path, filename: str) -> str:
    """Return the deb's Packages stanza (what dpkg-scanpackages writes, without dpkg-dev)."""
    control = run("dpkg-deb", "--field", deb).strip()
    data = deb.read_bytes()
    return (
        f"{control}\nFilename: {filename}\nSize: {len(data)}\n"
        f"MD5sum: {hashlib.md5(data).hexdigest()}\n"
        f"SHA256: {hashlib.sha256(data).hexdigest()}\n\n"
    )


@dataclass
class Repo:
    backend: AptBackend
    options: list[str]


def installed_version() -> str:
    return run("dpkg-query", "-W", "-f", "${Version}", PACKAGE)


@contextlib.contextmanager
def local_repo(tmp_path: Path) -> Iterator[Repo]:
    """Install 1.0, publish 1.1 in a private file repository; remove both afterwards."""
    # apt drops root to _apt to read a file: repository: the path must be readable by all.
    tmp_path.mkdir(parents=True, exist_ok=True)
    tmp_path.chmod(0o755)
    old = build_deb(tmp_path, "1.0")
    repo_dir = tmp_path / "repo"
    repo_dir.mkdir()
    new = build_deb(repo_dir, "1.1")
    (repo_dir / "Packages").write_text(packages_entry(new, f"./{new.name}"))
    sources = tmp_path / "sources.list"
    sources.write_text(f"deb [trusted=yes] file:{repo_dir} ./\n")
    lists = tmp_path / "lists"
    (lists / "partial").mkdir(parents=True)
    options = [
        "-o", f"Dir::Etc::sourcelist={sources}",
        "-o", "Dir::Etc::sourceparts=-",
        "-o", f"Dir::State::Lists={lists}",
        # No cache file: apt would otherwise rewrite the machine's own with this view.
        "-o", "Dir::Cache::pkgcache=",
        "-o", "Dir::Cache::srcpkgcache=",
    ]  # fmt: skip
    try:
        run("dpkg", "-i", old)
        run("apt-get", *options, "update")
        yield Repo(AptBackend(apt_options=options, lists_dir=lists), options)
    finally:
        subprocess.run(["dpkg", "-P", PACKAGE], capture_output=True, check=False)
        shutil.rmtree(tmp_path, ignore_errors=True)


def hold_lock(lock: Path) -> subprocess.Popen[str]:
    """Hold dpkg's frontend lock with fcntl in another process, as a running apt would."""
    code = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o640)\n"
        "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder
