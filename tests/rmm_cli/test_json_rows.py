"""emit_json_rows writes, page by page, exactly what emit_json writes for the whole list."""

from __future__ import annotations

import enum
import math
from datetime import UTC, datetime
from typing import Any

import pytest

from rmm_cli.output import emit_json, emit_json_rows


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


ROWS: list[Any] = [
    {
        "id": "a1",
        "tags": ["web", "db"],
        "empty_tags": [],
        "empty_map": {},
        "nested": {"b": [1, {"c": 2.5, "a": None}], "a": "x"},
        "text": 'é, "quoted", new\nline, \x1b[31m, \u2028',
        "flag": True,
        "big": 1e100,
        "small": -0.0,
        "count": 2**70,
        "none": None,
        "when": datetime(2026, 1, 2, tzinfo=UTC),  # not JSON: default=str
    },
    {},
    {"only_nested": [[]]},
    {"enum": Level.HIGH, "name": Name("x\ty"), "numbered": {2: "a", 1: [2.0, {}]}, "t": ()},
    {"z": 1, "a": (1, 2)},
    [1, [2, 3], {}],
    "a string",
    7,
    None,
]


def printed(capsys: pytest.CaptureFixture[str], emit: Any, data: Any) -> str:
    emit(data)
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "pages",
    [[ROWS], [ROWS[:1], [], ROWS[1:4], ROWS[4:]], [[row] for row in ROWS], [], [[], []]],
    ids=["one page", "uneven pages", "a row a page", "no pages", "empty pages"],
)
def test_the_same_text_as_one_list(
    capsys: pytest.CaptureFixture[str], pages: list[list[Any]]
) -> None:
    whole = [row for page in pages for row in page]
    assert printed(capsys, emit_json_rows, pages) == printed(capsys, emit_json, whole)


def test_a_value_json_cannot_carry_is_refused_as_before() -> None:
    with pytest.raises(ValueError, match="Out of range float values"):
        emit_json_rows([[{"value": math.nan}]])
