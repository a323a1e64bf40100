"""List installed macOS packages: installer receipts with pkgutil, and Homebrew's Cellar."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from rmm_agent.collectors._packages import Package, sort_packages
from rmm_agent.collectors.base import CommandError, CommandRunner, run_command

RECEIPTS_DIR = Path("/var/db/receipts")
# Apple silicon and Intel prefixes; formulae live in Cellar, casks (apps) in Caskroom.
BREW_PREFIXES = (Path("/opt/homebrew"), Path("/usr/local"))


def parse_pkgutil_pkgs(text: str) -> list[str]:
    """Parse `pkgutil --pkgs`: one package id per line."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def parse_pkgutil_info(text: str) -> Package | None:
    """Parse `pkgutil --pkg-info ID`: "key: value" lines with package-id and version."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    if "package-id" not in fields:
        return None
    return Package(fields["package-id"], fields.get("version", ""), None)


class PkgutilBackend:
    """Read the receipts of packages installed with macOS Installer."""

    name = "pkgutil"

    def __init__(
        self,
        *,
        runner: CommandRunner = run_command,
        receipts_dir: Path = RECEIPTS_DIR,
        which: Callable[[str], str | None] = shutil.which,
    ) -> None:
        self._runner = runner
        self._receipts_dir = receipts_dir
        self._which = which

    def available(self) -> bool:
        """Tell whether pkgutil is present."""
        return self._which("pkgutil") is not None

    def stamp(self) -> object:
        """Return each receipt's mtime: Installer writes one per package installed or upgraded."""
        return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in self._receipts_dir.iterdir()))

    def read_packages(self) -> list[Package]:
        """Run pkgutil for the list, then once per package for its version."""
        packages = []
        for package_id in parse_pkgutil_pkgs(self._runner(["pkgutil", "--pkgs"])):
            try:
                package = parse_pkgutil_info(self._runner(["pkgutil", "--pkg-info", package_id]))
            except CommandError:
                continue  # forgotten between the two commands
            if package is not None:
                packages.append(package)
        return sort_packages(packages)


def read_cellar(prefix: Path) -> list[Package]:
    """List formulae and casks under a Homebrew prefix, one package per installed version."""
    packages = []
    for kind in ("Cellar", "Caskroom"):
        root = prefix / kind
        if not root.is_dir():
            continue
        for formula in root.iterdir():
            if not formula.is_dir():
                continue
            for version in formula.iterdir():
                # Caskroom keeps a hidden .metadata directory next to the versions.
                if version.is_dir() and not version.name.startswith("."):
                    packages.append(Package(formula.name, version.name, None))
    return packages


class BrewBackend:
    """Read Homebrew's Cellar and Caskroom directories.

    `brew list --versions` refuses to run as root, which the agent is, so the directories
    it reads are read directly.
    """

    name = "brew"

    def __init__(self, *, prefixes: Sequence[Path] = BREW_PREFIXES) -> None:
        self._prefixes = prefixes

    def _present(self) -> list[Path]:
        """Return the Homebrew prefixes that exist."""
        return [p for p in self._prefixes if (p / "Cellar").is_dir()]

    def available(self) -> bool:
        """Tell whether a Homebrew Cellar exists."""
        return bool(self._present())

    def stamp(self) -> object:
        """Return each formula directory's mtime: a new or removed version changes it."""
        return tuple(
            sorted(
                (str(formula), formula.stat().st_mtime_ns)
                for p in self._present()
                for kind in ("Cellar", "Caskroom")
                if (p / kind).is_dir()
                for formula in (p / kind).iterdir()
            )
        )

    def read_packages(self) -> list[Package]:
        """List every installed formula and cask version."""
        return sort_packages(pkg for prefix in self._present() for pkg in read_cellar(prefix))
