"""Third-party macOS software: Homebrew formulae and casks, listed and upgraded with brew."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rmm_agent.patching.base import (
    THIRD_PARTY,
    Clock,
    CommandBackend,
    InstallStep,
    PatchError,
    PendingUpdate,
    ProcessRunner,
    Which,
    run_process,
    sort_updates,
    update_id,
)

NAME = "homebrew"
# No self-update, no cleanup, no hints: a query stays a query, an upgrade only upgrades.
BREW_ENV = (
    "HOMEBREW_NO_AUTO_UPDATE=1",
    "HOMEBREW_NO_INSTALL_CLEANUP=1",
    "HOMEBREW_NO_ENV_HINTS=1",
    "HOMEBREW_NO_ANALYTICS=1",
)
# "Error: A `brew upgrade wget` process has already locked /opt/homebrew/Cellar/wget."
LOCK_TEXT = "has already locked"


def parse_outdated(text: str) -> list[PendingUpdate]:
    """Parse `brew outdated --json=v2` (pinned formulae are left out: brew skips them)."""
    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise PatchError(f"brew outdated printed no JSON ({exc}): {text[:200]!r}") from exc
    updates = []
    for kind, items in (("formula", data.get("formulae")), ("cask", data.get("casks"))):
        for item in items or []:
            if item.get("pinned"):
                continue
            updates.append(outdated_update(kind, item))
    return sort_updates(updates)


def outdated_update(kind: str, item: Mapping[str, Any]) -> PendingUpdate:
    """Return one outdated formula or cask as an update."""
    installed = item.get("installed_versions") or []
    if isinstance(installed, str):  # casks said a string before brew 4
        installed = [installed]
    name = str(item.get("name", ""))
    return PendingUpdate(
        id=update_id(NAME, f"{kind}/{name}"),
        name=name,
        current=", ".join(map(str, installed)) or None,
        available=str(item.get("current_version", "")),
        classification=THIRD_PARTY,
        backend=NAME,
        source=kind,
    )


def brew_owner(brew: str) -> str | None:
    """Return the user owning the brew program, who alone may run it (brew refuses root)."""
    import pwd  # noqa: PLC0415 - POSIX only; this module is imported on Windows too

    try:
        return pwd.getpwuid(Path(brew).resolve().stat().st_uid).pw_name
    except (OSError, KeyError):
        return None


class HomebrewBackend(CommandBackend):
    """List and upgrade outdated Homebrew formulae and casks, as the user who owns brew."""

    name = NAME
    classifications = (THIRD_PARTY,)
    program = "brew"
    platforms = ("darwin",)

    def __init__(
        self,
        *,
        runner: ProcessRunner = run_process,
        user: str | None = None,
        which: Which | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(runner=runner, which=which, clock=clock)
        self._user = user

    def brew_argv(self, *args: str) -> list[str]:
        """Return brew's command line with `args`, run as brew's owner when the agent is root."""
        brew = self._which("brew") or "brew"
        command = ["env", *BREW_ENV, brew, *args]
        user = self._user if self._user is not None else brew_owner(brew)
        if user and user != "root" and os.geteuid() == 0:
            return ["sudo", "-u", user, "-H", *command]
        return command

    def read_updates(self) -> list[PendingUpdate]:
        """Ask brew which formulae and casks are outdated (from its local metadata)."""
        return parse_outdated(self.query(self.brew_argv("outdated", "--json=v2")))

    def install_steps(self, updates: Sequence[PendingUpdate]) -> list[InstallStep]:
        """Return one `brew upgrade` of the formulae and one of the casks."""
        steps = []
        for kind in ("formula", "cask"):
            chosen = [u for u in updates if u.source == kind]
            if chosen:
                argv = self.brew_argv("upgrade", f"--{kind}", *(u.name for u in chosen))
                steps.append(InstallStep(argv, chosen))
        return steps

    def is_lock_message(self, text: str) -> bool:
        """Tell whether brew said another brew process holds the package's lock."""
        return LOCK_TEXT in text
