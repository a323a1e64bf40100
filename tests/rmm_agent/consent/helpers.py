"""Stand-ins for the programs consent runs (sh scripts found through `which`: POSIX only)."""

from __future__ import annotations

import os
import pwd
import select
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rmm_agent.consent import (
    ConsentSettings,
)

ME = pwd.getpwuid(os.getuid()).pw_name
UID = os.getuid()
CONTACT = "call Example MSP at 555-0100"


def settings(**kw: Any) -> ConsentSettings:
    values: dict[str, Any] = {"timeout_seconds": 30.0, "contact": CONTACT}
    values.update(kw)
    return ConsentSettings(**values)


def programs(**found: Path) -> Callable[[str], str | None]:
    """Return a `which` that finds only the given stand-ins ("notify_send" is notify-send)."""
    table = {name.replace("_", "-"): str(path) for name, path in found.items()}
    table = {("msg.exe" if k == "msg" else k): v for k, v in table.items()}
    return table.get


def stand_in(folder: Path, name: str, body: str = "") -> Path:
    """Write a program that records its arguments and environment, then runs `body`."""
    path = folder / name
    path.write_text(
        "#!/bin/sh\n"
        'here="$(dirname "$0")"\n'
        f'for a in "$@"; do printf "%s\\0" "$a"; done > "$here/{name}.args"\n'
        f'env > "$here/{name}.env"\n' + body
    )
    path.chmod(0o755)
    return path


def recorded(folder: Path, name: str) -> list[str]:
    return [a.decode() for a in (folder / f"{name}.args").read_bytes().split(b"\0")[:-1]]


def recorded_env(folder: Path, name: str) -> dict[str, str]:
    lines = (folder / f"{name}.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def read_all(fd: int, wait: float = 0.3) -> str:
    chunks = []
    while select.select([fd], [], [], wait)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def alive(pid: int) -> bool:
    """Return whether `pid` runs (a zombie waiting for a parent that may never reap is not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def dialog(folder: Path, name: str, answer: int) -> Path:
    (folder / "answer").write_text(str(answer))
    return stand_in(folder, name, 'exit "$(cat "$here/answer")"\n')
