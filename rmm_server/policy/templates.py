"""Annotation templates: `{{ name }}` or `{{ name | filter }}`, checked at load, nothing else.

A template can only name a value from a fixed list (no attribute access, no calls, no loops),
so rendering is a dictionary lookup and cannot run anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rmm_common.durations import format_duration

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(?:\|\s*([a-z_]+)\s*)?\}\}")
_BRACES = re.compile(r"\{\{|\}\}")


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _percent(value: str) -> str:
    number = _number(value)
    return value if number is None else f"{number * 100:.1f}%"


def _bytes(value: str) -> str:
    number = _number(value)
    if number is None:
        return value
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(number) < 1024 or unit == "TiB":
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1024
    return value  # pragma: no cover - the loop always returns


def _duration(value: str) -> str:
    number = _number(value)
    return value if number is None else format_duration(max(0.0, number))


def _round(value: str) -> str:
    number = _number(value)
    return value if number is None else f"{number:.2f}"


FILTERS: dict[str, Callable[[str], str]] = {
    "percent": _percent,
    "bytes": _bytes,
    "duration": _duration,
    "round": _round,
}


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and (name, filter) placeholders in turn."""

    source: str
    parts: tuple[str | tuple[str, str | None], ...]

    def names(self) -> set[str]:
        """Return every name the template refers to."""
        return {part[0] for part in self.parts if isinstance(part, tuple)}

    def render(self, values: Mapping[str, str]) -> str:
        """Return the text with every placeholder replaced (unknown names render empty)."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            name, filter_name = part
            text = values.get(name, "")
            out.append(FILTERS[filter_name](text) if filter_name and text else text)
        return "".join(out)


def parse_template(source: str) -> tuple[Template, list[str]]:
    """Parse `source`; return the template and a list of problems (empty when valid)."""
    problems: list[str] = []
    parts: list[str | tuple[str, str | None]] = []
    position = 0
    for match in _PLACEHOLDER.finditer(source):
        literal = source[position : match.start()]
        if _BRACES.search(literal):
            problems.append(f"malformed placeholder near {literal.strip()[:30]!r}")
        parts.append(literal)
        name, filter_name = match.group(1), match.group(2)
        if filter_name is not None and filter_name not in FILTERS:
            problems.append(f"unknown filter {filter_name!r} (known: {', '.join(sorted(FILTERS))})")
        parts.append((name, filter_name))
        position = match.end()
    tail = source[position:]
    if _BRACES.search(tail):
        problems.append(f"malformed placeholder near {tail.strip()[:30]!r}")
    parts.append(tail)
    return Template(source, tuple(p for p in parts if p != "")), problems
