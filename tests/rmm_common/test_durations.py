from __future__ import annotations

import pytest

from rmm_common.durations import format_duration, parse_duration
from rmm_common.errors import InvalidArgument


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("1h30m", 5400),
        ("7d", 604800),
        ("2w", 1209600),
        ("250ms", 0.25),
        ("45", 45),
        ("1.5h", 5400),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5x", "h", "1h 30m", "-5", "30s10"])
def test_parse_duration_refuses_nonsense(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(0.2) == "200ms"
    assert format_duration(45) == "45s"
    assert format_duration(3 * 86400 + 7200 + 61) == "3d2h"
