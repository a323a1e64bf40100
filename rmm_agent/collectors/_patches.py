"""Define what a pending-updates backend is and what it returns."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

# Package managers only tell security fixes from the rest; Windows has its own set (below).
SECURITY = "security"
OTHER = "other"
PACKAGE_CLASSIFICATIONS = (SECURITY, OTHER)


@dataclass(frozen=True, slots=True)
class PendingUpdate:
    """One update the host could install."""

    name: str
    current: str | None
    available: str
    classification: str
    source: str
    # When the update was published (seconds since the epoch), where the backend knows it.
    published: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the update as a JSON-ready dict (the publication time is a metric, not info)."""
        return {
            "name": self.name,
            "current": self.current,
            "available": self.available,
            "classification": self.classification,
            "source": self.source,
        }


def sort_updates(updates: Iterable[PendingUpdate]) -> list[PendingUpdate]:
    """Sort updates by name, then available version, so that the list's order is stable."""
    return sorted(updates, key=lambda u: (u.name, u.available, u.classification, u.source))


class PatchBackend(Protocol):
    """A source of pending updates (apt, dnf, Windows Update, softwareupdate)."""

    name: str
    # Every classification this backend can report: a bounded label set, each always exported.
    classifications: tuple[str, ...]

    def available(self) -> bool:
        """Tell whether this backend's package manager exists on this host."""
        ...

    def stamp(self) -> object:
        """Return a cheap value that changes when the answer may change, or None if unknown."""
        ...

    def lists_updated_at(self) -> float | None:
        """Return when the update metadata was last refreshed (epoch seconds), if known."""
        ...

    def read_updates(self) -> list[PendingUpdate]:
        """Read every pending update from what the host already knows, without a download."""
        ...
