"""JSON text as `json.dumps(value, indent=2, sort_keys=True, allow_nan=False, default=str)`
writes it, at a fraction of the CPU: `rmm ... --output json` prints with it, and the server renders
the rows of `rmm agents list --output json` with it (so both give the same bytes).

json.dumps with indent runs the pure-Python encoder: a generator per nested value and a new
encoder per call made 10,000 agents' JSON cost ~0.5 s. This writes the same text (indent 2, sorted
keys, ASCII, no NaN, default=str) with one function call per value; what it does not handle
itself (a dict with keys other than strings) goes to json.dumps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

INDENT = "  "
_encode_str = json.encoder.encode_basestring_ascii


def float_text(value: float) -> str:
    """Return a float as json.dumps writes it; NaN and infinities are refused as it refuses
    them with allow_nan=False."""
    if not math.isfinite(value):
        raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
    return float.__repr__(value)


def finite_or_none(value: float) -> float | None:
    """Return JSON-safe numbers: NaN and infinities become null."""
    return value if math.isfinite(value) else None


# Exact types only (a subclass, an IntEnum say, takes the general path): one lookup per value.
_SCALARS: dict[type, Callable[[Any], str]] = {
    str: _encode_str,
    int: int.__repr__,
    float: float_text,
    bool: lambda value: "true" if value else "false",
    type(None): lambda _value: "null",
}
_KEYS: dict[str, str] = {}  # a key's text with its ": ", the same keys on every row


def json_text(value: Any, level: int = 0) -> str:
    """Return `value` as json.dumps(value, indent=2, sort_keys=True, allow_nan=False,
    default=str) writes it when nested `level` deep."""
    scalar = _SCALARS.get(type(value))
    if scalar is not None:
        return scalar(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        if not all(isinstance(key, str) for key in value):
            text = json.dumps(value, indent=2, sort_keys=True, allow_nan=False, default=str)
            return text.replace("\n", "\n" + INDENT * level)
        parts = []
        for key in sorted(value):
            item = value[key]
            prefix = _KEYS.get(key)
            if prefix is None:
                prefix = f"{_encode_str(key)}: "
                if len(_KEYS) < 1000:  # bounded: nested maps (labels) bring keys of their own
                    _KEYS[key] = prefix
            scalar = _SCALARS.get(type(item))
            parts.append(prefix + (scalar(item) if scalar else json_text(item, level + 1)))
        inner = "\n" + INDENT * (level + 1)
        return "{" + inner + ("," + inner).join(parts) + "\n" + INDENT * level + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        inner = "\n" + INDENT * (level + 1)
        items = [json_text(item, level + 1) for item in value]
        return "[" + inner + ("," + inner).join(items) + "\n" + INDENT * level + "]"
    if isinstance(value, str):  # subclasses of the scalars, as json.dumps writes them
        return str(_encode_str(value))
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return float_text(value)
    return str(_encode_str(str(value)))  # default=str


def list_item_text(value: Any) -> str:
    """Return `value` as one item of a top-level JSON list: indented once, as json.dumps(list,
    indent=2, ...) writes each item."""
    return INDENT + json_text(value, 1)
