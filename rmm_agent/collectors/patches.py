"""Collect pending updates from every patch backend this host has (rmm_agent.patching)."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rmm_agent.collectors._common import Clock
from rmm_agent.collectors.base import CollectorOutput, Sample
from rmm_agent.patching import CLASSIFICATIONS, PendingUpdate, ProcessRunner, UpdateSource
from rmm_agent.patching import default_backends as patching_backends
from rmm_agent.patching.base import run_process
from rmm_common import metric_catalog
from rmm_common.metric_catalog import MetricSpec

log = logging.getLogger(__name__)

# Enough for any real backlog; a host past it is listed as truncated, its counts stay exact.
MAX_LISTED = 500
# The list travels only when it changed; it is sent again this often anyway, so a server that
# lost it (a new database, a restore from an old backup, a report evicted from the spool before
# delivery) has it back within this time. The server keeps what it got in its database, so its
# own restart needs no resend.
LIST_RESEND_SECONDS = 6 * 3600.0


def list_digest(info: dict[str, Any]) -> str:
    """Return the sha256 of the listed updates (and whether the list is cut), canonical JSON."""
    listed = {"updates": info.get("updates", []), "truncated": bool(info.get("truncated"))}
    text = json.dumps(listed, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def default_backends(platform: str, runner: ProcessRunner) -> tuple[UpdateSource, ...]:
    """Return this OS's backends in order of preference (the OS's own updates first)."""
    return patching_backends(platform, runner)


def summarise(
    backends: Sequence[UpdateSource], updates: list[PendingUpdate], max_listed: int
) -> tuple[list[Sample], dict[str, Any]]:
    """Return the per-classification counts and the (capped) list of updates.

    Every classification a present backend can report is exported, at zero too: the label
    values are bounded by rmm_agent.patching.CLASSIFICATIONS.
    """
    counts = Counter(u.classification for u in updates)
    offered = {c for b in backends for c in b.classifications}
    samples = [
        Sample("patches_pending", float(counts.get(c, 0)), {"classification": c})
        for c in CLASSIFICATIONS
        if c in offered
    ]
    info: dict[str, Any] = {
        "backend": backends[0].name,
        "backends": [b.name for b in backends],
        "pending": len(updates),
        "updates": [u.to_dict() for u in updates[:max_listed]],
        "truncated": len(updates) > max_listed,
    }
    return samples, info


# Package managers' update queries are slow (apt's simulation takes 5-20 s of CPU on a busy
# host); the collector runs in the background at most hourly, so it can afford to wait.
PATCH_QUERY_TIMEOUT_SECONDS = 180.0


@dataclass(slots=True)
class Reading:
    """One backend's last read: when, under which stamp, and what it found or raised."""

    stamp: object
    read_at: float
    updates: list[PendingUpdate] | None
    error: Exception | None


class PatchesCollector:
    """Report pending updates, read from what the host knows without downloading anything.

    Listing them costs seconds of CPU (apt resolves the whole upgrade): each backend's list
    is read again only when its stamp changed (or, for backends without one, when due), and
    never more often than every `refresh_seconds`. A failing backend is listed in the info
    while the others still count; the collection fails only when every backend failed.
    """

    name: ClassVar[str] = "patches"
    inventory: ClassVar[bool] = False
    # Seconds of CPU on a cache miss: the report builder runs it beside the reports, never in
    # their way, and sends its latest finished reading.
    slow: ClassVar[bool] = True
    # Even a cache hit looks at every backend's stamps and the lists' age (0.1-0.5 ms); pending
    # updates change over hours: started at most every 5 s (every report at the default 30 s).
    min_interval_seconds: ClassVar[float] = 5.0
    metrics: ClassVar[tuple[MetricSpec, ...]] = metric_catalog.PATCHES

    def __init__(
        self,
        *,
        backends: Sequence[UpdateSource] | None = None,
        platform: str = sys.platform,
        runner: ProcessRunner = run_process,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        refresh_seconds: float = 3600.0,
        max_listed: int = MAX_LISTED,
        resend_seconds: float = LIST_RESEND_SECONDS,
    ) -> None:
        self._backends = (
            tuple(backends) if backends is not None else default_backends(platform, runner)
        )
        self._platform = platform
        self._clock = clock
        self._wall_clock = wall_clock
        self._refresh = refresh_seconds
        self._max_listed = max_listed
        self._readings: dict[str, Reading] = {}
        self._resend = resend_seconds
        # The digest of the list last put in an output, and when (monotonic clock).
        self._sent_digest = ""
        self._sent_at = 0.0
        # The readings the last counts, list and digest were made from, and those: while no
        # backend is read again (hours), each collection reuses them instead of hashing the
        # whole list again (0.19 ms of CPU for 121 updates, every cycle).
        self._made_from: tuple[tuple[str, Reading], ...] = ()
        # The last element: the oldest update's publication time (None: none says it).
        self._made: tuple[list[Sample], dict[str, Any], str, float | None] | None = None

    def choose_backends(self) -> list[UpdateSource]:
        """Return the backends available on this host, in order of preference."""
        return [b for b in self._backends if b.available()]

    def _due(self, last: Reading | None, stamp: object, now: float) -> bool:
        """Tell whether to read again: never read, or changed (unknown) and not read lately."""
        if last is None:
            return True
        if now - last.read_at < self._refresh:
            return False
        return stamp is None or stamp != last.stamp

    def _read(self, backend: UpdateSource) -> Reading:
        """Return the backend's reading, read again when due."""
        # Stamp before reading: a change during the read then shows at the next due read.
        stamp = backend.stamp()
        now = self._clock()
        last = self._readings.get(backend.name)
        if last is not None and not self._due(last, stamp, now):
            return last
        try:
            reading = Reading(stamp, now, backend.read_updates(), None)
        except Exception as exc:
            # Kept until the next due read, so a failing dnf is not re-run on every
            # collection while the failure stays visible in every one.
            reading = Reading(stamp, now, None, exc)
        else:
            log.debug("patches: %d pending with %s", len(reading.updates or []), backend.name)
        self._readings[backend.name] = reading
        return reading

    def collect(self) -> CollectorOutput:
        """Return the pending updates, each backend read again only when they may have changed."""
        backends = self.choose_backends()
        if not backends:
            names = ", ".join(b.name for b in self._backends) or "none for this OS"
            reason = f"no update manager found on {self._platform} (tried: {names})"
            log.debug("patches: %s", reason)
            return CollectorOutput(info={"available": False, "reason": reason})
        readings = {b.name: self._read(b) for b in backends}
        errors = {n: r.error for n, r in readings.items() if r.error is not None}
        if len(errors) == len(readings):
            raise next(iter(errors.values())).with_traceback(None)
        made_from = tuple(readings.items())
        if self._made is None or not _same_readings(made_from, self._made_from):
            updates = [u for r in readings.values() for u in r.updates or ()]
            made_samples, made_info = summarise(backends, updates, self._max_listed)
            if errors:
                made_info["errors"] = {n: f"{type(e).__name__}: {e}" for n, e in errors.items()}
            published = [u.published for u in updates if u.published is not None]
            oldest = min(published) if published else None
            self._made_from = made_from
            self._made = (made_samples, made_info, list_digest(made_info), oldest)
        made_samples, made_info, digest, oldest = self._made
        # Copies: the ages are appended below, the list is taken out of `info` when unchanged.
        samples, info = list(made_samples), dict(made_info)
        wall = self._wall_clock()
        if oldest is not None:
            samples.append(Sample("patches_pending_oldest_age_seconds", max(0.0, wall - oldest)))
        lists_at = next((at for b in backends if (at := b.lists_updated_at()) is not None), None)
        if lists_at is not None:
            samples.append(Sample("patches_lists_age_seconds", max(0.0, wall - lists_at)))
        self._send_list_on_change(info, digest)
        return CollectorOutput(samples=samples, info=info)

    def _send_list_on_change(self, info: dict[str, Any], digest: str) -> None:
        """Keep the list in `info` only when it changed or is due again; the digest always.

        The counts travel every time as samples; the list, up to MAX_LISTED entries of a few
        hundred bytes each, only when it differs from the one last sent (the server compares
        digests and stores the list on change) or every `resend_seconds`.
        """
        info["digest"] = digest
        now = self._clock()
        if digest == self._sent_digest and now - self._sent_at < self._resend:
            del info["updates"]
            return
        self._sent_digest = digest
        self._sent_at = now


def _same_readings(
    now: tuple[tuple[str, Reading], ...], before: tuple[tuple[str, Reading], ...]
) -> bool:
    """Tell whether the same backends gave the very same readings (none was read again)."""
    return len(now) == len(before) and all(
        name == old_name and reading is old
        for (name, reading), (old_name, old) in zip(now, before, strict=True)
    )
