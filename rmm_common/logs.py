"""Logging set-up shared by the agent and the server: quiet plain text, or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

from rmm_common.agent_words import agent_label, printable_name

__all__ = ["JsonFormatter", "TextFormatter", "agent_label", "agent_text", "setup_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
AGENT_TEXT_LIMIT = 300  # characters of agent-supplied text shown in one log value
# What starts a continuation line of a record (a multi-line template, a traceback): a line that
# starts with it is never read as a record of its own.
CONTINUATION = "  | "


def agent_text(text: object, limit: int = AGENT_TEXT_LIMIT) -> str:
    """Return agent-supplied text (an OS name, a collector's or a command's error) for a log line:
    what cannot be seen escaped (printable_name: no newline, no terminal escape), bounded."""
    shown = printable_name(str(text))
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


class _Shown:
    """A log argument as the text formatter shows it: %s escaped, %r as repr would show it."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __str__(self) -> str:
        return printable_name(str(self.value))

    def __repr__(self) -> str:
        return repr(self.value)  # repr escapes what cannot be printed already


def _shown(value: object) -> object:
    return value if value is None or isinstance(value, int | float) else _Shown(value)


class TextFormatter(logging.Formatter):
    """Plain-text lines in which no value can start a line of its own.

    Every argument of a record is escaped (a hostname's newline shows as \\n, an ANSI escape
    as \\x1b); a line break the message's own template or a traceback holds starts a
    continuation line marked with CONTINUATION. So every line that starts like a record is one.
    """

    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        saved = record.args
        if isinstance(saved, tuple):
            record.args = tuple(_shown(arg) for arg in saved)
        elif isinstance(saved, Mapping):
            record.args = {key: _shown(arg) for key, arg in saved.items()}
        try:
            text = super().format(record)
        finally:
            record.args = saved
        # Every line boundary a reader may see (\r, \u2028, NEL... in a traceback's text too).
        return f"\n{CONTINUATION}".join(text.splitlines())


_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with any `extra=` fields kept as keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """Send logs to stderr at `level`, as plain text or JSON lines (journald keeps either)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # gRPC's and APScheduler's own chatter is not the operator's business unless debugging.
    for noisy in ("apscheduler", "grpc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
