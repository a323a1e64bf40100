"""The agent's recent warnings and errors, kept in its state directory for `rmm-agent help`.

The agent logs to stderr, which the service manager's journal keeps; a help request made from
another process cannot read that back everywhere (no journal on Windows, none readable in a
container). So the running agent also keeps its last warnings and errors in a small file of its
own, rewritten whole (at most MAX_KEPT lines) when one is logged: warnings are rare by design,
most are said once per condition.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

RECENT_ERRORS_FILE = "recent_errors.json"
MAX_KEPT = 50
MAX_MESSAGE = 500


class RecentErrors(logging.Handler):
    """A logging handler keeping the newest warnings and errors in the state directory."""

    def __init__(self, state_dir: Path, clock: Any = time.time) -> None:
        super().__init__(logging.WARNING)
        self.path = state_dir / RECENT_ERRORS_FILE
        self.clock = clock
        self._kept: deque[dict[str, Any]] = deque(read_recent_errors(state_dir), maxlen=MAX_KEPT)
        self._write_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = {
                "at": record.created,
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage()[:MAX_MESSAGE],
            }
            with self._write_lock:
                self._kept.append(entry)
                data = json.dumps(list(self._kept)).encode()
                tmp = self.path.with_name(self.path.name + ".tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, self.path)
        except OSError:
            # A full or read-only disk: the line is still in the agent's own log (stderr, the
            # journal); only a later help request misses it.
            return


def read_recent_errors(state_dir: Path) -> list[dict[str, Any]]:
    """Return the kept warnings and errors, oldest first ([] when none or unreadable)."""
    try:
        data = json.loads((state_dir / RECENT_ERRORS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(data, list):
        return []
    return [e for e in data if isinstance(e, dict)][-MAX_KEPT:]
