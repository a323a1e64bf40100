"""Define what a software inventory backend is and what it returns."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Package:
    """One installed package."""

    name: str
    version: str
    arch: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the package as a JSON-ready dict."""
        return asdict(self)


def sort_packages(packages: Iterable[Package]) -> list[Package]:
    """Sort packages by name, version and architecture, so that the inventory's hash is stable."""
    return sorted(packages, key=lambda p: (p.name, p.version, p.arch or ""))


class SoftwareBackend(Protocol):
    """A source of installed packages (dpkg, rpm, the Windows registry, pkgutil...)."""

    name: str

    def available(self) -> bool:
        """Tell whether this backend's package database exists on this host."""
        ...

    def stamp(self) -> object:
        """Return a value that changes whenever the package database changes."""
        ...

    def read_packages(self) -> list[Package]:
        """Read every installed package."""
        ...
