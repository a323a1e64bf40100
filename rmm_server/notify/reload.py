"""Reload the notification config of a running server: all or nothing, seen in its metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge

from rmm_common.errors import ConfigError
from rmm_server.notify.config import NotifyConfig, load_notify_config
from rmm_server.notify.dispatcher import Dispatcher

log = logging.getLogger(__name__)

OnLoaded = Callable[[NotifyConfig], None]


class NotifyReloader:
    """Read --notify-config again into a running dispatcher; a broken file changes nothing."""

    def __init__(
        self,
        path: Path,
        dispatcher: Dispatcher,
        registry: CollectorRegistry,
        on_loaded: OnLoaded | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.dispatcher = dispatcher
        # Told of each config put in force (the alert service's escalation timers come from it).
        self.on_loaded = on_loaded
        self.clock = clock
        # As the policy reload reports itself (rmm_policy_last_reload_*): a refused reload leaves
        # the old receivers in force, silently for whoever did not ask for it themselves.
        self._ok = Gauge(
            "rmm_notify_config_last_reload_successful",
            "1 when the last notification config load or reload succeeded, 0 when it was "
            "refused and the previous config stays in force.",
            registry=registry,
        )
        self._ok.set(1)  # the server started with it: a broken file stops the start
        self._time = Gauge(
            "rmm_notify_config_last_reload_success_timestamp_seconds",
            "When this server last loaded its notification config successfully (unix time).",
            registry=registry,
        )
        self._time.set(clock())

    @property
    def receivers(self) -> int:
        """Return how many receivers the config in force has."""
        return len(self.dispatcher.config.receivers)

    async def reload(self) -> tuple[bool, list[str]]:
        """Load the file again and put it in force; return (ok, errors as file:line:col: ...)."""
        try:
            # Reading and checking off the loop; swapping the config on it (the dispatcher's
            # groups and timers belong to the loop).
            config = await asyncio.to_thread(load_notify_config, self.path)
        except ConfigError as exc:
            log.error(
                "notification config reload refused, the previous config stays in force:\n%s",
                exc,
            )
            self._ok.set(0)
            return False, str(exc).splitlines()
        self.dispatcher.reload(config)
        if self.on_loaded is not None:
            self.on_loaded(config)
        self._ok.set(1)
        self._time.set(self.clock())
        log.info(
            "notification config reloaded from %s: %d receivers", self.path, len(config.receivers)
        )
        return True, []
