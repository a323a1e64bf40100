"""Linux desktop applications and runtimes: Flatpak updates, listed and installed."""

from __future__ import annotations

from collections.abc import Sequence

from rmm_agent.patching.base import (
    THIRD_PARTY,
    CommandBackend,
    InstallStep,
    PendingUpdate,
    sort_updates,
    update_id,
)

NAME = "flatpak"
# --cached: the remotes' summaries flatpak already has, no download; tab-separated columns
# when the output is not a terminal.
LIST_UPDATES = (
    "flatpak", "remote-ls", "--system", "--updates", "--cached",
    "--columns=ref,name,version,origin,download-size",
)  # fmt: skip
LIST_INSTALLED = ("flatpak", "list", "--system", "--columns=ref,version")
UPDATE = ("flatpak", "update", "--system", "--noninteractive", "-y")
SIZE_UNITS = {"bytes": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3}


def parse_size(text: str) -> int | None:
    """Return flatpak's "12.3 MB" (GLib's decimal units) as bytes, or None."""
    number, _, unit = text.replace("\xa0", " ").partition(" ")
    try:
        return int(float(number) * SIZE_UNITS[unit.strip()])
    except (KeyError, ValueError):
        return None


def parse_columns(text: str, width: int) -> list[list[str]]:
    """Return the tab-separated rows of `width` columns."""
    return [fields for line in text.splitlines() if len(fields := line.split("\t")) == width]


def parse_updates(listed: str, installed: str) -> list[PendingUpdate]:
    """Join `flatpak remote-ls --updates` with `flatpak list` on the ref."""
    versions = {ref: version for ref, version in parse_columns(installed, 2)}
    updates = []
    for ref, name, version, origin, size in parse_columns(listed, 5):
        updates.append(
            PendingUpdate(
                id=update_id(NAME, ref),
                name=name or ref.split("/")[1],
                current=versions.get(ref) or None,
                # Many runtimes have no version: the branch names what is installed.
                available=version or ref.rsplit("/", 1)[-1],
                classification=THIRD_PARTY,
                backend=NAME,
                source=origin,
                size_bytes=parse_size(size),
            )
        )
    return sort_updates(updates)


class FlatpakBackend(CommandBackend):
    """List and install updates of system-wide Flatpak applications and runtimes."""

    name = NAME
    classifications = (THIRD_PARTY,)
    program = "flatpak"

    def read_updates(self) -> list[PendingUpdate]:
        """List updates from the cached remote summaries, with the installed versions."""
        return parse_updates(self.query(LIST_UPDATES), self.query(LIST_INSTALLED))

    def install_steps(self, updates: Sequence[PendingUpdate]) -> list[InstallStep]:
        """Return one `flatpak update REF...` of every ref."""
        return [InstallStep([*UPDATE, *(u.id.split(":", 1)[1] for u in updates)], list(updates))]
