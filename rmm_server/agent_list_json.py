"""ListAgents pages as the text `rmm agents list --output json` prints (ListAgents json_rows).

A row's text is made once per change of what it shows and kept: each agent's entry is keyed by
the very columns and tags its row is rendered from, as the page's query read them, so a report
stored, a move, a retag, a revocation or a rename (through this replica or any other, or any
writer of the database) gives a new key and the row is rendered again, and nothing has to tell
this cache. The two values that depend on the moment (status, online turning offline as time
passes, and last_seen_seconds_ago) are put in at each listing (rmm_common.agent_rows.RowText).

Rendering goes through the same AgentSummary message and agent_row the CLI decodes and prints
from, so the text is the CLI's own, byte for byte (tests/e2e/test_agent_json_rows.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from rmm_common.agent_rows import RowText
from rmm_proto import operator_pb2
from rmm_server.storage.agent_list import (
    ONLINE_COLUMN,
    AgentColumns,
    AgentListRow,
    row_from_columns,
)

# Entries kept at most (about 2 kB each); past it the cache starts again, empty.
MAX_ENTRIES = 50_000
# A page's text stops growing past this many bytes (the next page goes on from there): the
# CLI's gRPC receive limit is 4 MiB, and a row of long hostnames and names can take kilobytes.
MAX_PAGE_BYTES = 3 * 2**20


@dataclass(frozen=True, slots=True)
class _Entry:
    key: tuple[object, ...]
    text: RowText


@dataclass(frozen=True, slots=True)
class JsonPage:
    text: bytes  # the rows, each indented as an item of the printed list, joined by ",\n"
    rows: int  # how many of the page's rows `text` holds (fewer when MAX_PAGE_BYTES cut it)


class AgentRowTexts:
    """Every listed agent's row text, kept while its columns and tags read the same."""

    def __init__(
        self,
        to_summary: Callable[[AgentListRow], operator_pb2.AgentSummary],
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        # The message ListAgents answers with otherwise: a row's text is made from it.
        self.to_summary = to_summary
        self.max_entries = max_entries
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()  # pages are built in worker threads, several at once
        self.rendered = 0  # rows rendered (not found current here), for tests and benchmarks

    def page(
        self,
        rows: list[AgentColumns],
        tags: dict[str, list[str]],
        now: float,
        max_bytes: int = MAX_PAGE_BYTES,
    ) -> JsonPage:
        """Return the text of `rows` (list_agent_columns' page and tags), last_seen_seconds_ago
        counted from `now`."""
        parts: list[str] = []
        size = 0
        entries = self._entries
        for row in rows:
            agent_tags = tags.get(row[0], [])
            key = (*row[:ONLINE_COLUMN], *agent_tags)  # online: put in at each listing
            entry = entries.get(row[0])
            if entry is None or entry.key != key:
                summary = self.to_summary(row_from_columns(row, agent_tags))
                entry = _Entry(key, RowText.of(summary))
                with self._lock:
                    if len(entries) >= self.max_entries:
                        entries.clear()
                    entries[row[0]] = entry
                    self.rendered += 1
            text = entry.text.text(bool(row[ONLINE_COLUMN]), now)
            size += len(text) + 2
            if parts and size > max_bytes:
                break
            parts.append(text)
        return JsonPage(",\n".join(parts).encode("ascii"), len(parts))
