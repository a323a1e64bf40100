"""The one class of characters agent text may not hold, and every place that applies it."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from rmm_common.agent_words import printable_name
from rmm_common.logs import agent_text
from rmm_common.text import INVISIBLE_CATEGORIES, INVISIBLE_RE, invisible_problem

# The review's cases and their siblings: one of each kind the class holds.
HOSTILE = {
    "line separator": "\u2028",
    "paragraph separator": "\u2029",
    "right-to-left override": "\u202e",
    "left-to-right embedding": "\u202a",
    "pop directional formatting": "\u202c",
    "right-to-left isolate": "\u2067",
    "first strong isolate": "\u2068",
    "pop directional isolate": "\u2069",
    "left-to-right mark": "\u200e",
    "right-to-left mark": "\u200f",
    "arabic letter mark": "\u061c",
    "zero width space": "\u200b",
    "zero width non-joiner": "\u200c",
    "zero width joiner": "\u200d",
    "word joiner": "\u2060",
    "byte order mark": "\ufeff",
    "soft hyphen": "\u00ad",
    "tag latin small letter a": "\U000e0061",
    "escape": "\x1b",
    "NUL": "\x00",
    "next line (C1)": "\x85",
    "delete": "\x7f",
}
# Names that look odd but are text: accents, other scripts, a no-break space, emoji.
FINE = ["web-01", "wéb-01", "сервер-1", "東京-01", "Debian GNU/Linux 12 (bookworm)", "a\u00a0b"]


def test_the_listed_ranges_are_exactly_the_class_in_this_pythons_unicode() -> None:
    wrong = [
        f"U+{cp:04X} ({unicodedata.category(chr(cp))})"
        for cp in range(sys.maxunicode + 1)
        if (unicodedata.category(chr(cp)) in INVISIBLE_CATEGORIES)
        != (INVISIBLE_RE.fullmatch(chr(cp)) is not None)
    ]
    assert not wrong, (
        f"rmm_common/text.py's _RANGES differ from Unicode {unicodedata.unidata_version} at "
        f"{', '.join(wrong[:10])}: list the ranges again from unicodedata"
    )


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_each_kind_is_refused_naming_the_character(kind: str) -> None:
    text = f"web-01{HOSTILE[kind]}10-bew"
    problem = invisible_problem("host.hostname", text)
    assert problem is not None
    assert f"U+{ord(HOSTILE[kind]):04X}" in problem and "send the value without them" in problem
    # The displays escape every one of them too.
    assert HOSTILE[kind] not in printable_name(text) and HOSTILE[kind] not in agent_text(text)


@pytest.mark.parametrize("text", FINE)
def test_ordinary_text_of_any_script_passes(text: str) -> None:
    assert invisible_problem("host.hostname", text) is None


def test_printable_name_escapes_every_character_of_the_class() -> None:
    for cp in range(sys.maxunicode + 1):
        char = chr(cp)
        if unicodedata.category(char) in INVISIBLE_CATEGORIES:
            assert char not in printable_name(f"a{char}b"), f"U+{cp:04X}"
