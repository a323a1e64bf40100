"""Tiny .debs and a private `deb [trusted=yes] file:` repository for the tests that install
packages with the host's dpkg, as root: one helper for the agent's, the CLI's and the windows'
real apt tests.

`apt_repo` installs 1.0 of each package and publishes 1.1; it holds the tests' host-dpkg lock
(tests/host_dpkg.py) for as long as it is open, so two such tests in different pytest workers
(`-n 2 --dist loadfile`) never meet on dpkg's own lock, and purges what it installed after.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.host_dpkg import host_dpkg

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

# A preinst that refuses: dpkg keeps the old version installed and configured.
FAILING_PREINST = "#!/bin/sh\necho 'refusing to upgrade here' >&2\nexit 1\n"


def run(*argv: str | Path) -> str:
    """Run a setup command; fail the test with its output when it fails."""
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
    return done.stdout


def build_deb(root: Path, name: str, version: str, out_dir: Path, preinst: str = "") -> Path:
    """Build a tiny architecture-independent package `name` at `version` with dpkg-deb."""
    tree = root / f"tree-{name}-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "usr/share" / name).mkdir(parents=True)
    (tree / "usr/share" / name / "version").write_text(version + "\n")
    (tree / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: RMM tests <tests@rmm.invalid>\nSection: misc\nPriority: optional\n"
        "Description: RMM patching test package\n Installed and removed by a test.\n"
    )
    if preinst:
        script = tree / "DEBIAN/preinst"
        script.write_text(preinst)
        script.chmod(0o755)
    out_dir.mkdir(parents=True, exist_ok=True)
    deb = out_dir / f"{name}_{version}_all.deb"
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


def installed_version(name: str) -> str:
    """Return the installed version of `name`, or "" when it is not installed."""
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", name], capture_output=True, text=True
    )
    return done.stdout.strip() if done.returncode == 0 else ""


@dataclass
class AptRepo:
    """Packages at 1.0 installed, 1.1 of each in a private repository; `conf` (an APT_CONFIG
    file) and `options` (the same as `-o` arguments) point apt at it and only at it."""

    names: tuple[str, ...]
    conf: Path
    options: list[str]
    lists: Path

    def ids(self) -> tuple[str, ...]:
        return tuple(f"apt:{name}" for name in self.names)


@contextlib.contextmanager
def apt_repo(root: Path, names: Sequence[str], failing: Sequence[str] = ()) -> Iterator[AptRepo]:
    """Install each of `names` at 1.0 and publish 1.1 (whose preinst fails for `failing`),
    holding the host's dpkg for the tests; purge the packages afterwards."""
    with host_dpkg():
        # apt drops root to _apt to read a file: repository: the path must be readable by all.
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)
        repo, installed = root / "repo", root / "installed"
        lists, parts, cache = root / "lists", root / "parts", root / "cache"
        for path in (repo, installed, lists / "partial", parts, cache / "archives/partial"):
            path.mkdir(parents=True)
        try:
            stanzas = []
            for name in names:
                build_deb(root, name, "1.0", installed)
                preinst = FAILING_PREINST if name in failing else ""
                new = build_deb(root, name, "1.1", repo, preinst=preinst)
                stanzas.append(packages_entry(new, f"./{new.name}"))
            (repo / "Packages").write_text("".join(stanzas))
            (root / "sources.list").write_text(f"deb [trusted=yes] file:{repo} ./\n")
            conf = root / "apt.conf"
            conf.write_text(
                f'Dir::Etc::sourcelist "{root / "sources.list"}";\n'
                f'Dir::Etc::sourceparts "{parts}";\n'
                f'Dir::State::lists "{lists}/";\n'
                f'Dir::Cache "{cache}/";\n'
                # No cache file: apt would otherwise rewrite the machine's own with this view.
                'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
            )
            options = [
                "-o", f"Dir::Etc::sourcelist={root / 'sources.list'}",
                "-o", f"Dir::Etc::sourceparts={parts}",
                "-o", f"Dir::State::Lists={lists}",
                "-o", f"Dir::Cache={cache}",
                "-o", "Dir::Cache::pkgcache=",
                "-o", "Dir::Cache::srcpkgcache=",
            ]  # fmt: skip
            run("dpkg", "-i", *sorted(installed.glob("*.deb")))
            run("apt-get", *options, "update")
            yield AptRepo(tuple(names), conf, options, lists)
        finally:
            present = [name for name in names if installed_version(name)]
            if present:
                subprocess.run(["dpkg", "--purge", *present], capture_output=True)


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
