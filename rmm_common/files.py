"""Writing secrets to disk: atomically, readable by the owner only."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, readable by the owner only (mode 0600).

    A crash leaves the old file or the new one, never half of either; a failed write removes its
    temporary file and raises the OSError.
    """
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)  # an existing .tmp keeps its mode through O_CREAT
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
