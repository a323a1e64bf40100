"""Collect pending updates from the first patch backend this host has."""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from functools import partial
from typing import Any, ClassVar

from rmm_agent.collectors._common import Clock, StatusRunner, run_status
from rmm_agent.collectors._patches import PatchBackend, PendingUpdate
from rmm_agent.collectors.base import (
    CollectorOutput,
    CommandRunner,
    Sample,
    run_command,
)
from rmm_agent.collectors.patches_apt import AptBackend
from rmm_agent.collectors.patches_dnf import DnfBackend
from rmm_agent.collectors.patches_macos import SoftwareUpdateBackend
from rmm_agent.collectors.patches_windows import WindowsUpdateBackend
from rmm_common import metric_catalog
from rmm_common.metric_catalog import MetricSpec

log = logging.getLogger(__name__)

# Enough for any real backlog; a host past it is listed as truncated, its counts stay exact.
MAX_LISTED = 500


def default_backends(
    platform: str, runner: CommandRunner, status_runner: StatusRunner
) -> tuple[PatchBackend, ...]:
    """Return this OS's backends in order of preference."""
    if platform.startswith("linux"):
        return AptBackend(runner=runner), DnfBackend(runner=runner, status_runner=status_runner)
    if platform.startswith("win"):
        return (WindowsUpdateBackend(),)
    if platform == "darwin":
        return (SoftwareUpdateBackend(runner=runner),)
    return ()


def summarise(
    backend: PatchBackend, updates: list[PendingUpdate], max_listed: int
) -> tuple[list[Sample], dict[str, Any]]:
    """Return the per-classification counts and the (capped) list of updates."""
    counts = Counter(u.classification for u in updates)
    samples = [
        Sample("patches_pending", float(counts.get(c, 0)), {"classification": c})
        for c in backend.classifications
    ]
    info: dict[str, Any] = {
        "backend": backend.name,
        "pending": len(updates),
        "updates": [u.to_dict() for u in updates[:max_listed]],
        "truncated": len(updates) > max_listed,
    }
    return samples, info


# Package managers' update queries are slow (apt's simulation takes 5-20 s of CPU on a busy
# host); the collector runs in the background at most hourly, so it can afford to wait.
PATCH_QUERY_TIMEOUT_SECONDS = 180.0
PATCH_QUERY_RUNNER: CommandRunner = partial(run_command, timeout=PATCH_QUERY_TIMEOUT_SECONDS)


class PatchesCollector:
    """Report pending updates, read from what the host knows without downloading anything.

    Listing them costs seconds of CPU (apt resolves the whole upgrade): the list is read
    again only when the backend's stamp changed (or, for backends without one, when due),
    and never more often than every `refresh_seconds`.
    """

    name: ClassVar[str] = "patches"
    inventory: ClassVar[bool] = False
    # Seconds of CPU on a cache miss: the report builder runs it beside the reports, never in
    # their way, and sends its latest finished reading.
    slow: ClassVar[bool] = True
    metrics: ClassVar[tuple[MetricSpec, ...]] = metric_catalog.PATCHES

    def __init__(
        self,
        *,
        backends: Sequence[PatchBackend] | None = None,
        platform: str = sys.platform,
        runner: CommandRunner = PATCH_QUERY_RUNNER,
        status_runner: StatusRunner = run_status,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        refresh_seconds: float = 3600.0,
        max_listed: int = MAX_LISTED,
    ) -> None:
        self._backends = (
            tuple(backends)
            if backends is not None
            else default_backends(platform, runner, status_runner)
        )
        self._platform = platform
        self._clock = clock
        self._wall_clock = wall_clock
        self._refresh = refresh_seconds
        self._max_listed = max_listed
        self._updates: list[PendingUpdate] | None = None
        self._error: Exception | None = None
        self._key: tuple[str, object] | None = None
        self._read_at = 0.0

    def choose_backend(self) -> PatchBackend | None:
        """Return the first backend available on this host, or None."""
        return next((b for b in self._backends if b.available()), None)

    def _due(self, key: tuple[str, object], now: float) -> bool:
        """Tell whether to read again: never read, or changed (unknown) and not read lately."""
        if self._key is None or key[0] != self._key[0]:
            return True
        if now - self._read_at < self._refresh:
            return False
        return key[1] is None or key != self._key

    def collect(self) -> CollectorOutput:
        """Return the pending updates, read again only when they may have changed."""
        backend = self.choose_backend()
        if backend is None:
            names = ", ".join(b.name for b in self._backends) or "none for this OS"
            reason = f"no update manager found on {self._platform} (tried: {names})"
            log.debug("patches: %s", reason)
            return CollectorOutput(info={"available": False, "reason": reason})
        # Stamp before reading: a change during the read then shows at the next due read.
        key = (backend.name, backend.stamp())
        now = self._clock()
        if self._due(key, now):
            self._key, self._read_at = key, now
            try:
                self._updates, self._error = backend.read_updates(), None
            except Exception as exc:
                # Kept and raised until the next due read, so a failing dnf is not re-run
                # on every collection while the failure stays visible in every one.
                self._updates, self._error = None, exc
            else:
                log.debug("patches: %d pending with %s", len(self._updates), backend.name)
        if self._error is not None:
            raise self._error.with_traceback(None)
        assert self._updates is not None
        samples, info = summarise(backend, self._updates, self._max_listed)
        wall = self._wall_clock()
        published = [u.published for u in self._updates if u.published is not None]
        if published:
            samples.append(
                Sample("patches_pending_oldest_age_seconds", max(0.0, wall - min(published)))
            )
        lists_at = backend.lists_updated_at()
        if lists_at is not None:
            samples.append(Sample("patches_lists_age_seconds", max(0.0, wall - lists_at)))
        return CollectorOutput(samples=samples, info=info)
