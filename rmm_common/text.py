"""Text an agent supplies about itself: the characters it may not hold, in one place.

A hostname, an OS name, an agent version or a tag is shown to operators, written to logs and
sent in notifications. Characters that are not drawn, or that change how the text around them
is drawn, let it pass for something else there:

- control characters (Unicode category Cc: C0, DEL, C1): a terminal obeys them, PostgreSQL
  refuses NUL;
- format characters (Cf): bidi embeddings, overrides and isolates (U+202A-202E, U+2066-2069),
  marks (U+200E, U+200F, U+061C) reorder what follows, so `web-01\u202e10-bew` reads as
  another name; zero-width characters (U+200B-200D, U+2060, U+FEFF) make two different names
  look alike; tag characters (U+E0000-E007F) hide text;
- line and paragraph separators (Zl U+2028, Zp U+2029): a new line to many readers, though
  not to a `[\\x00-\\x1f]` check;
- surrogates (Cs): not text at all.

The server refuses agent text holding any of them (report validation, enrollment), so no stored
name has one; display code escapes them anyway (rmm_common.agent_words.printable_name, which
escapes everything str.isprintable() refuses: this class and more).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["INVISIBLE_CATEGORIES", "INVISIBLE_RE", "invisible_problem", "visible_lines"]

INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})

# Every code point of INVISIBLE_CATEGORIES as (first, last) ranges, Unicode 14 (Python 3.11).
# Listed rather than computed: computing them walks 1.1 million code points (a third of a second
# at every start of the CLI). tests/rmm_common/test_text.py checks the list against the running
# Python's unicodedata and names any code point a newer Unicode added.
_RANGES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x001F), (0x007F, 0x009F), (0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C),
    (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891), (0x08E2, 0x08E2), (0x180E, 0x180E),
    (0x200B, 0x200F), (0x2028, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F), (0xD800, 0xDFFF),
    (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD),
    (0x13430, 0x13438), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
)  # fmt: skip


def _char_class(ranges: tuple[tuple[int, int], ...]) -> str:
    return "".join(
        f"\\U{first:08x}" if first == last else f"\\U{first:08x}-\\U{last:08x}"
        for first, last in ranges
    )


# One search at C speed: validation runs it on every host fact of every report.
INVISIBLE_RE = re.compile(f"[{_char_class(_RANGES)}]")


def invisible_problem(what: str, text: str) -> str | None:
    """Return why agent text `what` may not be `text` (naming the character), or None."""
    found = INVISIBLE_RE.search(text)
    if found is None:
        return None
    char = found.group()
    name = unicodedata.name(char, "") or "unnamed"
    return (
        f"{what} {text[:80]!r} holds control characters (U+{ord(char):04X} {name}, Unicode "
        f"category {unicodedata.category(char)}): control, format (bidi, zero-width) and "
        "line-separator characters change how the text is shown; send the value without them"
    )


def _escaped(found: re.Match[str]) -> str:
    char = found.group()
    return char if char in "\n\t" else ascii(char)[1:-1]


def visible_lines(text: str) -> str:
    """Return text with every character of the class shown as its escape (U+202E as \\u202e),
    but for line breaks and tabs: for agent text shown over several lines (a command's output
    on a web page), where a bidi override or zero-width character would make it read otherwise."""
    return INVISIBLE_RE.sub(_escaped, text) if INVISIBLE_RE.search(text) else text
