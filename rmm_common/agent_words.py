"""How an operator's word names an agent: by its id or by its hostname, never both at once.

An agent id is made by the server at enrollment (`uuid4().hex`: 32 lowercase hex digits); a
hostname is whatever text the agent reports about itself. So a word that could be an id, or the
start of one (1 to 32 hex digits, in any case), is only ever compared with agent ids: an agent
that names itself after another agent's id cannot be selected in its place. A hostname is used
only when the operator says so: `host=NAME`, or a bare word that cannot be an id (it has a
character other than a hex digit, e.g. `web-01`). A hex-looking hostname such as `dc01` needs
`host=dc01`.

The server and the CLI share these rules; the server applies them whatever the client sends.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from rmm_common.errors import InvalidArgument

AGENT_ID_DIGITS = 32  # uuid4().hex, see rmm_server/enrollment.py
_ID_TEXT = re.compile(rf"[0-9a-fA-F]{{1,{AGENT_ID_DIGITS}}}")
HOST_KEY = "host"
ID_KEYS = ("agent", "id")


class WordKind(StrEnum):
    ID = "id"  # an agent id or the start of one: matched against ids only
    HOST = "host"  # a hostname as agents report it: matched against hostnames only


@dataclass(frozen=True, slots=True)
class AgentWord:
    """One operator word that names an agent: `value` is a lowercase id prefix or a hostname."""

    text: str
    kind: WordKind
    value: str

    def term(self) -> str:
        """Return the word as an unambiguous target term: `agent=ID` or `host=NAME`."""
        return f"agent={self.value}" if self.kind is WordKind.ID else f"host={self.value}"


def is_agent_id_text(text: str) -> bool:
    """Say whether `text` could be an agent id or the start of one (1-32 hex digits)."""
    return _ID_TEXT.fullmatch(text) is not None


def parse_agent_word(word: str) -> AgentWord:
    """Return what `word` names: "host=NAME", "agent=ID", an id (prefix), or a bare hostname."""
    text = word.strip()
    if not text:
        raise InvalidArgument("an agent word is empty: give an agent id, its start, or host=NAME")
    key, equals, rest = text.partition("=")
    if equals:
        key, rest = key.strip().lower(), rest.strip()
        if key == HOST_KEY:
            if not rest:
                raise InvalidArgument(f"{text!r} names no hostname: write host=NAME")
            return AgentWord(text, WordKind.HOST, rest)
        if key in ID_KEYS:
            if not is_agent_id_text(rest):
                raise InvalidArgument(
                    f"{text!r}: {key}= takes an agent id or the start of one "
                    f"(1-{AGENT_ID_DIGITS} hex digits); for a hostname write host={rest}"
                )
            return AgentWord(text, WordKind.ID, rest.lower())
        raise InvalidArgument(
            f"{text!r}: an agent is named by agent=ID, host=NAME or a bare id or hostname"
        )
    if is_agent_id_text(text):
        return AgentWord(text, WordKind.ID, text.lower())
    return AgentWord(text, WordKind.HOST, text)


# Characters drawn like Latin letters and digits that NFKD does not map (TR39's confusables,
# the common part for hostnames): Cyrillic, Greek, Armenian and Latin variants.
_LOOKALIKES = str.maketrans(
    {
        # Cyrillic
        "\u0430": "a", "\u0432": "b", "\u0441": "c", "\u0501": "d", "\u0435": "e", "\u04bb": "h",
        "\u043d": "h", "\u0456": "l", "\u0458": "j", "\u043a": "k", "\u04cf": "l", "\u043c": "m",
        "\u043e": "o", "\u0440": "p", "\u051b": "q", "\u0433": "r", "\u0455": "s", "\u0442": "t",
        "\u0443": "y", "\u04af": "y", "\u0445": "x", "\u051d": "w", "\u044c": "b", "\u0461": "w",
        "\u043f": "n", "\u0438": "u", "\u0437": "3", "\u0431": "6", "\u0447": "4",
        # Greek
        "\u03b1": "a", "\u03b2": "b", "\u03b5": "e", "\u03b7": "n", "\u03b9": "l", "\u03ba": "k",
        "\u03bd": "v", "\u03bf": "o", "\u03c1": "p", "\u03c4": "t", "\u03c5": "u", "\u03c7": "x",
        "\u03b3": "y", "\u03c9": "w", "\u03bc": "u", "\u03f2": "c",
        # Armenian
        "\u0585": "o", "\u057d": "u", "\u0570": "h", "\u0578": "n", "\u0581": "g", "\u0566": "q",
        # Latin variants
        "\u0131": "l", "\u0237": "j", "\u0261": "g", "\u0251": "a", "\u029f": "l", "\u0269": "l",
        "\u0185": "b", "\u0252": "a", "\u00f8": "o", "\u0111": "d", "\u0127": "h", "\u0142": "l",
        "\u0167": "t",
        # Digits and letters that read alike in most fonts; dots of other scripts
        "0": "o", "1": "l", "i": "l", "|": "l", "!": "l", "_": "-",
        "\u3002": ".", "\uff61": ".", "\u00b7": ".", "\u30fb": ".",
    }
)  # fmt: skip
_MULTI = (("rn", "m"), ("vv", "w"), ("cl", "d"))
# What the general path drops from ASCII text: control characters (Cc) and the space (Zs).
_ASCII_INVISIBLE = str.maketrans("", "", "".join(map(chr, range(32))) + " \x7f")
# Terminal escape sequences (CSI, OSC, two-character ones; ESC or the C1 CSI): a terminal shows
# "web-01\x1b[2J" as "web-01", so the sequence goes whole, not only its ESC.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]"
)


@functools.lru_cache(maxsize=1 << 16)
def hostname_key(text: str) -> str:
    """Return what a hostname looks like, so that look-alikes compare equal.

    Case, compatibility forms (fullwidth, mathematical letters), accents, invisible and control
    characters, terminal escape sequences, spaces, and letters of other scripts drawn like Latin
    ones are all folded away:
    "WEB-01", "web-01" in fullwidth digits, with a Cyrillic "e" or with a zero-width space all
    have the key of "web-01".
    It is deliberately coarse: two agents whose keys are equal are refused as ambiguous, which
    is safe; one that is not exactly the name asked for is refused as a look-alike.
    """
    text = _ESCAPES.sub("", text)
    if text.isascii():  # nearly every hostname: nothing to normalize, only case and controls
        key = text.lower().translate(_ASCII_INVISIBLE).translate(_LOOKALIKES)
    else:
        folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
        kept = []
        for char in folded:
            category = unicodedata.category(char)
            if category[0] in "MCZ":  # accents, control and format characters, spaces
                continue
            kept.append("-" if category == "Pd" else char)
        key = "".join(kept).translate(_LOOKALIKES)
    for pair, single in _MULTI:
        key = key.replace(pair, single)
    return key


def shown_hostname(text: str) -> str:
    """Return an agent-reported hostname quoted for a message, every non-ASCII char escaped.

    Escaping shows look-alikes for what they are ('w\\u0435b-01'), and control characters
    cannot reach the operator's terminal.
    """
    return ascii(text)


def printable_name(text: str) -> str:
    """Return agent-reported text such as a hostname on one line, with what cannot be seen shown.

    A hostname is what the agent says of itself: control, format (zero-width, bidi override)
    and separator characters are shown as escapes (web-01\\u200b), so that a look-alike reads
    differently from the name it imitates and cannot rewrite the terminal.
    """
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


def agent_label(hostname: str, agent_id: str) -> str:
    """Return "web-01 [0123456789ab]": the agent-reported hostname beside its id's start.

    The id is the identity; the hostname alone could be any agent's claim. For the CLI's
    tables and the server's log lines alike.
    """
    host, short = printable_name(hostname), agent_id[:12]
    return f"{host} [{short}]" if host else short


ID_LIKE_DIGITS = 6  # a hostname of this many hex digits or more could pass for an id's start


def shown_hostname_flagged(text: str) -> str:
    """Return printable_name(text), marked when it could be mistaken for an agent id.

    Such a hostname never selects anything by id (is_agent_id_text), but an agent naming itself
    after another's id should stand out where agents are listed beside their ids.
    """
    shown = printable_name(text)
    if len(text) >= ID_LIKE_DIGITS and is_agent_id_text(text):
        shown += " (a hostname, not an id)"
    return shown
