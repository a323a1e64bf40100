"""JSON documents that came from agents, decoded so that no document can break a reader.

A document a few hundred arrays or objects deep is small (a few KB) and makes json.loads,
json.dumps and every recursive reader raise RecursionError. The server refuses such documents at
ingest (rmm_server.reports.check_json_depth); readers of what was stored before, or of what an
older server passes on, decode through load_json_bounded() and show a placeholder instead.
"""

from __future__ import annotations

import json
from typing import Any

# Arrays and objects inside each other in any JSON an agent sends (info, inventory): the agent's
# own documents are at most 5 deep.
MAX_JSON_DEPTH = 32


def json_depth(value: Any) -> int:
    """Return how deep arrays and objects nest in a decoded JSON value (a scalar is 0).

    Iterative, so that no depth can exhaust the interpreter's stack here.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def decode_bounded(raw: bytes | str, what: str, limit: int = MAX_JSON_DEPTH) -> tuple[Any, str]:
    """Return (value, "") for a JSON document nested at most `limit` deep, else (None, why it
    cannot be shown, naming `what`)."""
    try:
        value = json.loads(raw)
    except RecursionError:
        return None, f"{what} is nested too deeply to decode; it is not shown"
    except ValueError:
        return None, f"{what} is not valid JSON; it is not shown"
    depth = json_depth(value)
    if depth > limit:
        return None, f"{what} nests {depth} levels deep (at most {limit} are shown); not shown"
    return value, ""


def load_json_bounded(raw: bytes | str, what: str, limit: int = MAX_JSON_DEPTH) -> Any:
    """Decode a stored JSON document, or return {"error": why it is not shown}: rows stored
    before the ingest checks (or written around them) must not break a read."""
    value, problem = decode_bounded(raw, what, limit)
    return {"error": problem} if problem else value
