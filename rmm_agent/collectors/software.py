"""Collect the software inventory from the first package backend this host has."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any, ClassVar

from rmm_agent.collectors._packages import SoftwareBackend
from rmm_agent.collectors.base import (
    CollectorOutput,
    CommandRunner,
    Sample,
    run_command,
)
from rmm_agent.collectors.software_dpkg import DpkgBackend
from rmm_agent.collectors.software_macos import BrewBackend, PkgutilBackend
from rmm_agent.collectors.software_rpm import RpmBackend
from rmm_agent.collectors.software_windows import WindowsRegistryBackend
from rmm_common import metric_catalog
from rmm_common.metric_catalog import MetricSpec

log = logging.getLogger(__name__)


def default_backends(platform: str, runner: CommandRunner) -> tuple[SoftwareBackend, ...]:
    """Return this OS's backends in order of preference."""
    if platform.startswith("linux"):
        # A Debian host may carry an rpm binary (for alien, mock...): dpkg is its real database.
        return DpkgBackend(runner=runner), RpmBackend(runner=runner)
    if platform.startswith("win"):
        return (WindowsRegistryBackend(),)
    if platform == "darwin":
        return PkgutilBackend(runner=runner), BrewBackend()
    return ()


class SoftwareCollector:
    """Report installed packages; the database is re-read only when it has changed."""

    name: ClassVar[str] = "software"
    inventory: ClassVar[bool] = True
    metrics: ClassVar[tuple[MetricSpec, ...]] = metric_catalog.SOFTWARE

    def __init__(
        self,
        *,
        backends: Sequence[SoftwareBackend] | None = None,
        platform: str = sys.platform,
        runner: CommandRunner = run_command,
    ) -> None:
        self._backends = (
            tuple(backends) if backends is not None else default_backends(platform, runner)
        )
        self._platform = platform
        self._cached: CollectorOutput | None = None
        self._cached_key: tuple[str, object] | None = None

    def choose_backend(self) -> SoftwareBackend | None:
        """Return the first backend available on this host, or None."""
        return next((b for b in self._backends if b.available()), None)

    def collect(self) -> CollectorOutput:
        """Return the installed packages, reading them again only if the database changed."""
        backend = self.choose_backend()
        if backend is None:
            names = ", ".join(b.name for b in self._backends) or "none for this OS"
            reason = f"no package database found on {self._platform} (tried: {names})"
            log.debug("software: %s", reason)
            return CollectorOutput(info={"available": False, "reason": reason})
        # Stamp before reading: a change during the read then shows at the next collection.
        key = (backend.name, backend.stamp())
        if self._cached is None or key != self._cached_key:
            packages = backend.read_packages()
            log.debug("software: read %d packages with %s", len(packages), backend.name)
            info: dict[str, Any] = {
                "backend": backend.name,
                "packages": [p.to_dict() for p in packages],
            }
            sample = Sample("software_packages", float(len(packages)), {"backend": backend.name})
            self._cached = CollectorOutput(samples=[sample], info=info)
            self._cached_key = key
        return self._cached
