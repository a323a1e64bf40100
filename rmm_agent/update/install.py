"""Put the launcher and the first agent archive into a state directory, then run the launcher."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from rmm_agent.update.launcher import Layout
from rmm_common.errors import ConfigError


def running_archive(argv0: str = sys.argv[0]) -> Path:
    """Return the agent archive this process runs from, or raise ConfigError."""
    # zipfile and importlib.resources are imported by the calls that need them: the running
    # agent imports this module with its CLI and would otherwise hold them for nothing.
    import zipfile  # noqa: PLC0415

    path = Path(argv0).resolve()
    if path.is_file() and zipfile.is_zipfile(path):
        return path
    raise ConfigError(
        "`rmm-agent launch` installs the archive it runs from: run it as "
        "`python3 rmm-agent.pyz launch --state-dir DIR`, or pass --archive PATH/TO/rmm-agent.pyz"
    )


def launcher_source() -> bytes:
    """Return the launcher's source, shipped inside this package."""
    from importlib import resources  # noqa: PLC0415

    return resources.files("rmm_agent.update").joinpath("launcher.py").read_bytes()


def install(layout: Layout, archive: Path) -> Path:
    """Install `archive` as current.pyz unless one is there, write launcher.py; return its path.

    An existing current.pyz may be newer than `archive` (an update applied since), so it stays.
    """
    try:
        layout.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not layout.current.exists():
            tmp = layout.current.with_name(layout.current.name + ".tmp")
            shutil.copyfile(archive, tmp)
            os.replace(tmp, layout.current)
        source = launcher_source()
        if not layout.launcher.exists() or layout.launcher.read_bytes() != source:
            tmp = layout.launcher.with_name(layout.launcher.name + ".tmp")
            tmp.write_bytes(source)
            os.replace(tmp, layout.launcher)
    except OSError as exc:
        raise ConfigError(f"cannot install the agent into {layout.root}: {exc}") from exc
    return layout.launcher


def exec_launcher(argv: Sequence[str]) -> int:
    """Replace this process with the launcher (POSIX), or run it and return its exit code."""
    if os.name == "posix":
        os.execv(argv[0], list(argv))
    return subprocess.call(list(argv))
