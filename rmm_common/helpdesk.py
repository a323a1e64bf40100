"""The user's own help request and the caller verification code, as both sides read them
(docs/desk.md): what a problem description may hold, and what a code looks like.

The agent checks a description before it collects anything, so a typo costs no round trip; the
server checks it again, since only its check counts.
"""

from __future__ import annotations

import secrets

from rmm_common.agent_words import printable_name
from rmm_common.text import invisible_problem

__all__ = [
    "CODE_ALPHABET",
    "CODE_LENGTH",
    "HELP_OPENED_BY",
    "MAX_HELP_TEXT",
    "MAX_SNAPSHOT_BYTES",
    "help_text_problem",
    "new_code",
    "normalize_code",
]

# No 0/O, 1/I/L: a code is read aloud over a telephone and typed by someone under stress.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 6  # 31**6: about 887 million codes; wrong guesses are rate-limited per agent
MAX_HELP_TEXT = 1000
# Who a ticket a user asked for on their own computer is opened by: the server opens it so,
# and `rmm-agent verify` tells the user when a caller's code is of such a ticket.
HELP_OPENED_BY = "user"
# The diagnostic snapshot a help request carries (JSON); a full report with every process and
# the inventory is left out, so this bounds a host with many disks and services.
MAX_SNAPSHOT_BYTES = 256 * 1024


def new_code() -> str:
    """Return a new verification code from the unambiguous alphabet."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(text: str) -> str:
    """Return a code as typed (any case, with spaces or dashes) in its stored form."""
    return "".join(c for c in text.upper() if c not in " -\t")


def code_problem(text: str) -> str | None:
    """Return why `text` cannot be a verification code, or None."""
    code = normalize_code(text)
    if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        return (
            f"{text[:40]!r} is not a verification code: a code is {CODE_LENGTH} letters and "
            f"digits from {CODE_ALPHABET} (no 0, O, 1, I or L), as the support desk reads it out"
        )
    return None


def help_text_problem(text: str) -> str | None:
    """Return why `text` cannot describe a problem, or None."""
    stripped = text.strip()
    if not stripped:
        return 'describe the problem in a few words, e.g. rmm-agent help "the printer is offline"'
    if len(stripped) > MAX_HELP_TEXT:
        return (
            f"the description is {len(stripped)} characters long: at most {MAX_HELP_TEXT}; say "
            "the rest to the support desk when they call"
        )
    return invisible_problem("the description", stripped)


# --- the diagnostic snapshot, summarised for a person --------------------------------------
#
# A snapshot is JSON the agent made (the server adds "open_alerts"): every value is read as
# possibly missing or of the wrong type, and every text is shown with what cannot be seen
# escaped, since a local user can name a mount or a service as they like.

SHOWN_ERRORS = 10


def _shown(value: object, limit: int = 200) -> str:
    return printable_name(str(value)[:limit])


def _size(value: object) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "?"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(amount) < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return "?"  # pragma: no cover - the loop returns at TiB


def _items(data: dict[str, object], key: str) -> list[object]:
    value = data.get(key)
    return value if isinstance(value, list) else []


def _disk_lines(data: dict[str, object]) -> list[str]:
    parts = []
    for disk in _items(data, "disks"):
        if not isinstance(disk, dict):
            continue
        ratio = disk.get("usage_ratio")
        used = f" ({ratio * 100:.0f}% used)" if isinstance(ratio, int | float) else ""
        parts.append(
            f"{_shown(disk.get('mountpoint', '?'), 80)} {_size(disk.get('free_bytes'))} free of "
            f"{_size(disk.get('size_bytes'))}{used}"
        )
    return [f"disks: {'; '.join(parts) if parts else 'none reported'}"]


def _state_lines(data: dict[str, object]) -> list[str]:
    lines = []
    failed = [_shown(name, 80) for name in _items(data, "failed_services")]
    if "failed_services" in data:
        lines.append(f"failed services: {', '.join(failed) if failed else 'none'}")
    else:
        lines.append("failed services: not collected on this host")
    reboot = data.get("reboot_required")
    lines.append(
        "reboot pending: " + ("yes" if reboot is True else "no" if reboot is False else "unknown")
    )
    patches = data.get("patches_pending")
    if isinstance(patches, dict):
        counts = {
            _shown(k, 40): int(v)
            for k, v in patches.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        detail = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()) if n)
        lines.append(
            f"pending patches: {sum(counts.values())}" + (f" ({detail})" if detail else "")
        )
    else:
        lines.append("pending patches: unknown (no patch list on this host)")
    return lines


def _alert_lines(data: dict[str, object]) -> list[str]:
    shown = []
    for alert in _items(data, "open_alerts"):
        if isinstance(alert, dict):
            summary = f": {_shown(alert['summary'], 120)}" if alert.get("summary") else ""
            shown.append(
                f"{_shown(alert.get('rule', '?'), 80)} ({_shown(alert.get('severity', '?'), 20)}, "
                f"{_shown(alert.get('state', '?'), 20)}){summary}"
            )
    return [f"open alerts: {'; '.join(shown) if shown else 'none'}"]


def _error_lines(data: dict[str, object]) -> list[str]:
    errors = [_shown(e) for e in _items(data, "errors")]
    if not errors:
        return ["agent errors: none"]
    more = len(errors) - SHOWN_ERRORS
    return [
        f"agent errors ({len(errors)}):",
        *(f"  {e}" for e in errors[:SHOWN_ERRORS]),
        *([f"  ... and {more} more (--output json has all)"] if more > 0 else []),
    ]


def snapshot_lines(data: object) -> list[str]:
    """Return what a person reads first of a help request's snapshot: disks, failed services,
    pending reboot and patches, open alerts, the agent's recent errors."""
    if not isinstance(data, dict):
        return ["snapshot: not readable"]
    return [
        *_disk_lines(data),
        *_state_lines(data),
        *_alert_lines(data),
        *_error_lines(data),
    ]
