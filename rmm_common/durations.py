"""Prometheus-style durations ("90s", "15m", "1h30m", "7d", "2w") to and from seconds."""

from __future__ import annotations

import re

from rmm_common.errors import InvalidArgument

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_duration(text: str) -> float:
    """Return the number of seconds `text` names; a bare number counts as seconds."""
    stripped = text.strip()
    if not stripped:
        raise InvalidArgument("empty duration: use e.g. 30s, 15m, 2h, 7d")
    try:
        value = float(stripped)
    except ValueError:
        pass
    else:
        if value < 0:
            raise InvalidArgument(f"duration {text!r} is negative")
        return value
    position = 0
    total = 0.0
    for match in _PART.finditer(stripped):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(stripped) or position == 0:
        raise InvalidArgument(
            f"duration {text!r} is not understood: use numbers with units ms, s, m, h, d, w, y"
            " (e.g. 30s, 1h30m, 7d)"
        )
    return total


def format_duration(seconds: float) -> str:
    """Return a short human form of `seconds` ("2d3h", "45s")."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    remaining = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
        if len(parts) == 2:
            break
    return "".join(parts) or "0s"
