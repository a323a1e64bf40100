"""Group alert notices per route, time their messages like Alertmanager, deliver with retries."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import httpx
from prometheus_client import CollectorRegistry
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from rmm_server.notify.config import GROUP_BY_ALL, NotifyConfig, ReceiverConfig, RouteMatch
from rmm_server.notify.metrics import NotifyMetrics
from rmm_server.notify.model import (
    AlertNotice,
    Notification,
    Notifier,
    NotifierDeps,
    NotifyError,
    all_labels,
    notice_label,
)

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
OnFailure = Callable[[str, Notification, NotifyError], Awaitable[None] | None]
# Told of each notification a receiver accepted: (receiver, notifier type, notification).
OnSent = Callable[[str, str, Notification], Awaitable[None] | None]
HttpClientFactory = Callable[[], httpx.AsyncClient]


def default_http_client() -> httpx.AsyncClient:
    """Return the shared HTTP client: bounded connections, a default timeout, no redirects."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(10.0),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        follow_redirects=False,
        headers={"User-Agent": "rmm-server-notify"},
    )


def group_labels(notice: AlertNotice, group_by: tuple[str, ...]) -> dict[str, str]:
    """Return the labels that put `notice` in its group under `group_by`."""
    if group_by == (GROUP_BY_ALL,):
        labels = all_labels(notice)
        labels["alert_id"] = notice.alert_id
        return labels
    return {name: notice_label(notice, name) for name in group_by}


def group_key(match: RouteMatch, labels: dict[str, str]) -> str:
    """Return a group's identity: its route, its receiver and its group labels."""
    inner = ",".join(f'{name}="{labels[name]}"' for name in sorted(labels))
    return f"{match.route_id}/{match.receiver}:{{{inner}}}"


@dataclass(eq=False)
class _Group:
    """The alerts of one route and group-label set, and what the receiver was last told."""

    key: str
    match: RouteMatch
    labels: dict[str, str]
    next_flush: float
    alerts: dict[str, AlertNotice] = field(default_factory=dict)
    last_sent: float | None = None
    last_firing: frozenset[str] = frozenset()
    told_firing: set[str] = field(default_factory=set)  # ids the receiver heard as firing
    task: asyncio.Task[None] | None = None


class Dispatcher:
    """Turn alert notices into grouped notifications and deliver them without blocking anyone."""

    def __init__(
        self,
        config: NotifyConfig,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        on_failure: OnFailure | None = None,
        metrics_registry: CollectorRegistry | None = None,
        *,
        http_client_factory: HttpClientFactory = default_http_client,
        on_sent: OnSent | None = None,
    ) -> None:
        self._config = config
        self._on_sent = on_sent
        self._clock = clock
        self._sleep = sleep
        self._on_failure = on_failure
        # Never the global registry: two dispatchers (tests, reloads) must not collide.
        self.metrics = NotifyMetrics(metrics_registry or CollectorRegistry())
        self._http_client_factory = http_client_factory
        self._http: httpx.AsyncClient | None = None
        self._notifiers: dict[str, Notifier] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._groups: dict[str, _Group] = {}
        self._alert_groups: dict[str, set[str]] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def config(self) -> NotifyConfig:
        """Return the config in force."""
        return self._config

    async def start(self) -> None:
        """Open the HTTP client, build the notifiers and start the timer loop."""
        if self._http is not None:
            return
        self._http = self._http_client_factory()
        self._build_notifiers()
        self._loop_task = asyncio.create_task(self._run(), name="rmm-notify-dispatcher")

    async def stop(self) -> None:
        """Stop the timer loop and every delivery in flight, then close the HTTP client."""
        tasks = [group.task for group in self._groups.values() if group.task is not None]
        if self._loop_task is not None:
            tasks.append(self._loop_task)
            self._loop_task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self._notifiers.clear()

    def reload(self, config: NotifyConfig) -> None:
        """Put a new, already validated config in force; re-route alerts of removed receivers."""
        self._config = config
        if self._http is not None:
            self._build_notifiers()
        orphans = [
            group
            for group in self._groups.values()
            if group.match.receiver not in config.receivers and group.task is None
        ]
        for group in orphans:
            firing = [alert for alert in group.alerts.values() if alert.status == "firing"]
            self._forget(group, list(group.alerts))
            for alert in firing:  # the alert is not lost with its receiver
                self._route(alert, self._clock())
        self._wake.set()

    async def submit(self, notice: AlertNotice) -> None:
        """Add or update one alert in every group it routes to; return at once."""
        self._route(notice, self._clock())
        self._wake.set()

    def _route(self, notice: AlertNotice, now: float) -> None:
        keys: set[str] = set()
        for match in self._config.route_for(notice):
            labels = group_labels(notice, match.group_by)
            key = group_key(match, labels)
            keys.add(key)
            group = self._groups.get(key)
            if group is None:
                if notice.status == "resolved":
                    continue  # nobody in this group heard it fire
                group = _Group(key, match, labels, next_flush=now + match.group_wait)
                self._groups[key] = group
            elif notice.status == "resolved" and notice.alert_id not in group.alerts:
                continue
            group.alerts[notice.alert_id] = notice
            self._alert_groups.setdefault(notice.alert_id, set()).add(key)
        # Whoever was told an alert fires hears how it goes on, even when its tier or
        # labels now route it elsewhere (an escalated alert resolves at L1 too).
        for key in self._alert_groups.get(notice.alert_id, set()) - keys:
            group = self._groups.get(key)
            if group is not None and notice.alert_id in group.alerts:
                group.alerts[notice.alert_id] = notice

    async def flush(self) -> None:
        """Send every group that is due now and wait for all deliveries in flight to end."""
        if self._http is None:
            raise RuntimeError("call start() before flush(): the notifiers are built there")
        self._run_due(self._clock())
        while True:
            tasks = [group.task for group in self._groups.values() if group.task is not None]
            if not tasks:
                return
            await asyncio.gather(*tasks, return_exceptions=True)

    def pending_groups(self) -> list[tuple[str, int]]:
        """Return (group key, number of alerts) of every group held, for inspection."""
        return [(group.key, len(group.alerts)) for group in self._groups.values()]

    def _build_notifiers(self) -> None:
        assert self._http is not None
        deps = NotifierDeps(self._http, self._config.external_url)
        self._notifiers = {
            name: receiver.kind.create(name, receiver.settings, deps)
            for name, receiver in self._config.receivers.items()
        }
        concurrency = self._config.delivery.concurrency
        self._limits = {name: asyncio.Semaphore(concurrency) for name in self._notifiers}

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            now = self._clock()
            try:
                self._run_due(now)
            except Exception:
                log.exception("notification dispatcher failed to schedule; will try again")
            due = self._next_due()
            if due is None:
                await self._wake.wait()
                continue
            sleeper = asyncio.ensure_future(self._sleep(max(0.0, due - now)))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()

    def _next_due(self) -> float | None:
        times = [g.next_flush for g in self._groups.values() if g.task is None]
        return min(times) if times else None

    def _run_due(self, now: float) -> None:
        for group in list(self._groups.values()):
            if group.task is None and now >= group.next_flush:
                self._flush_group(group, now)

    def _forget(self, group: _Group, alert_ids: Iterable[str]) -> None:
        for alert_id in list(alert_ids):
            group.alerts.pop(alert_id, None)
            group.told_firing.discard(alert_id)
            keys = self._alert_groups.get(alert_id)
            if keys is not None:
                keys.discard(group.key)
                if not keys:
                    del self._alert_groups[alert_id]
        if not group.alerts and group.task is None:
            self._groups.pop(group.key, None)

    def _flush_group(self, group: _Group, now: float) -> None:
        receiver = self._config.receivers.get(group.match.receiver)
        notifier = self._notifiers.get(group.match.receiver)
        if receiver is None or notifier is None:
            log.warning(
                "dropping group %s: receiver %s is no longer configured",
                group.key,
                group.match.receiver,
            )
            self._forget(group, list(group.alerts))
            return
        group.next_flush = now + group.match.group_interval
        firing = [a for a in group.alerts.values() if a.status == "firing"]
        resolved = [a for a in group.alerts.values() if a.status == "resolved"]
        # A resolution nobody heard fire is news to no one.
        self._forget(group, [a.alert_id for a in resolved if a.alert_id not in group.told_firing])
        resolved = [a for a in resolved if a.alert_id in group.told_firing]
        if not receiver.send_resolved:
            self._forget(group, [a.alert_id for a in resolved])
            resolved = []
        firing_ids = frozenset(a.alert_id for a in firing)
        changed = firing_ids != group.last_firing or bool(resolved)
        repeat_due = bool(firing) and (
            group.last_sent is None or now - group.last_sent >= group.match.repeat_interval
        )
        if not (changed or repeat_due) or not (firing or resolved):
            if not firing:
                group.last_firing = frozenset()
            self._forget(group, [])
            return
        alerts = tuple(sorted(firing, key=lambda a: a.starts_at)) + tuple(
            sorted(resolved, key=lambda a: a.starts_at)
        )
        notification = Notification(
            receiver=receiver.name,
            group_key=group.key,
            group_labels=dict(group.labels),
            alerts=alerts,
            status="firing" if firing else "resolved",
        )
        group.task = asyncio.create_task(
            self._deliver(group, receiver, notifier, notification, now),
            name=f"rmm-notify {group.key}",
        )

    async def _deliver(
        self,
        group: _Group,
        receiver: ReceiverConfig,
        notifier: Notifier,
        notification: Notification,
        now: float,
    ) -> None:
        try:
            limit = self._limits.setdefault(
                receiver.name, asyncio.Semaphore(self._config.delivery.concurrency)
            )
            async with limit:
                delivered = await self._send_with_retries(receiver, notifier, notification)
        finally:
            group.task = None
            self._wake.set()
        if not delivered:
            return  # still pending: the next group_interval tries again
        await self._report_sent(receiver, notification)
        group.last_sent = now
        group.last_firing = frozenset(a.alert_id for a in notification.firing)
        group.told_firing.update(group.last_firing)
        done = [
            a.alert_id
            for a in notification.resolved
            if (current := group.alerts.get(a.alert_id)) is not None
            and current.status == "resolved"
        ]
        self._forget(group, done)

    async def _send_with_retries(
        self, receiver: ReceiverConfig, notifier: Notifier, notification: Notification
    ) -> bool:
        delivery = self._config.delivery
        labels = (receiver.name, receiver.notifier)

        def before_sleep(state: RetryCallState) -> None:
            self.metrics.retries.labels(*labels).inc()
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "notification to %s failed (attempt %d of %d), retrying: %s",
                receiver.name,
                state.attempt_number,
                delivery.attempts,
                error,
                extra={"receiver": receiver.name, "group_key": notification.group_key},
            )

        retrying = AsyncRetrying(
            sleep=self._sleep,
            stop=stop_after_attempt(delivery.attempts),
            wait=wait_exponential_jitter(
                initial=delivery.initial_backoff, max=delivery.max_backoff, jitter=delivery.jitter
            ),
            retry=retry_if_exception(lambda exc: isinstance(exc, NotifyError) and exc.retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._attempt(receiver, notifier, notification)
        except NotifyError as error:
            self.metrics.failed.labels(*labels).inc()
            log.error(
                "notification to %s failed for good: %s",
                receiver.name,
                error,
                extra={"receiver": receiver.name, "group_key": notification.group_key},
            )
            await self._report_failure(receiver.name, notification, error)
            return False
        self.metrics.sent.labels(*labels).inc()
        return True

    async def _attempt(
        self, receiver: ReceiverConfig, notifier: Notifier, notification: Notification
    ) -> None:
        timeout = self._config.delivery.attempt_timeout
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                await notifier.send(notification)
        except TimeoutError as exc:
            raise NotifyError(
                f"receiver {receiver.name!r}: no answer within {timeout:g}s"
                " (delivery.attempt_timeout)"
            ) from exc
        except NotifyError:
            raise
        except Exception as exc:
            # A notifier bug must not kill the dispatcher; it counts as a failed attempt.
            log.exception("notifier %s raised unexpectedly", receiver.notifier)
            raise NotifyError(f"receiver {receiver.name!r}: notifier error: {exc!r}") from exc
        finally:
            self.metrics.duration.labels(receiver.notifier).observe(time.perf_counter() - started)

    async def _report_sent(self, receiver: ReceiverConfig, notification: Notification) -> None:
        if self._on_sent is None:
            return
        try:
            result = self._on_sent(receiver.name, receiver.notifier, notification)
            if inspect.isawaitable(result):
                await result
        except Exception:  # recording a delivery must never undo it or stop the dispatcher
            log.exception("on_sent callback failed for receiver %s", receiver.name)

    async def _report_failure(
        self, receiver: str, notification: Notification, error: NotifyError
    ) -> None:
        if self._on_failure is None:
            return
        try:
            result = self._on_failure(receiver, notification, error)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("on_failure callback failed for receiver %s", receiver)
