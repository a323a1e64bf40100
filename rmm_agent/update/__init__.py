"""Self-update: the launcher that supervises the agent archive, and the agent's side of it.

`launcher` is standard library only (it runs as a plain file); `updater` is the running agent's
part (take an offer, download, verify, ask the launcher to swap, confirm); `install` puts the
launcher and the first archive in place. See docs/self-update.md.
"""

from rmm_agent.update.launcher import (
    EXIT_UPDATE_READY,
    LAUNCHER_ENV,
    LAUNCHER_PROTOCOL,
    Launcher,
    Layout,
)

__all__ = ["EXIT_UPDATE_READY", "LAUNCHER_ENV", "LAUNCHER_PROTOCOL", "Launcher", "Layout"]
