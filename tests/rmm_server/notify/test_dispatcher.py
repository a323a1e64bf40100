"""Grouping, timing, retries and isolation of the dispatcher, against a real HTTP server."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from prometheus_client import CollectorRegistry

from rmm_server.notify import Dispatcher, Notification, NotifyError, parse_notify_config
from tests.rmm_server.notify.support import FakeTime, HttpReceiver, notice, resolved, wait_for


def config_text(url: str, **route: str) -> str:
    """Return a one-receiver config posting to `url` with `route` timing overrides."""
    timing = {"group_wait": "30s", "group_interval": "5m", "repeat_interval": "1h"} | route
    lines = "\n".join(f"  {key}: {value}" for key, value in timing.items())
    return f"""
receivers:
  - name: desk
    webhook: {{url: "{url}", timeout: 2s}}
delivery: {{attempts: 3, initial_backoff: 1s, max_backoff: 4s, jitter: 0s}}
route:
  receiver: desk
  group_by: [rule, client, site]
{lines}
"""


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """Return a sample's value, 0 when absent."""
    return registry.get_sample_value(name, labels) or 0.0


def test_fifty_alerts_from_one_site_make_one_notification(http: HttpReceiver) -> None:
    async def scenario() -> None:
        fake = FakeTime()
        registry = CollectorRegistry()
        config = parse_notify_config(config_text(http.url("/hook")))
        dispatcher = Dispatcher(config, fake.clock, fake.sleep, None, registry)
        await dispatcher.start()
        try:
            for index in range(50):
                await dispatcher.submit(
                    notice(
                        alert_id=f"a{index}", agent_id=f"agent-{index}", hostname=f"ws-{index:03}"
                    )
                )
            # Another site is another group, so another message.
            await dispatcher.submit(notice(alert_id="other", site="branch"))
            await dispatcher.flush()
            await fake.advance(29)
            await dispatcher.flush()
            assert http.requests == []
            await fake.advance(1)
            await dispatcher.flush()
        finally:
            await dispatcher.stop()
        bodies = http.on("/hook")
        assert len(bodies) == 2
        hq = next(body for body in bodies if body["group_labels"]["site"] == "hq")
        assert len(hq["alerts"]) == 50
        assert {a["agent_id"] for a in hq["alerts"]} == {f"agent-{i}" for i in range(50)}
        assert hq["status"] == "firing"
        assert hq["receiver"] == "desk"
        assert hq["version"] == "1"
        assert hq["group_labels"] == {"rule": "AgentOffline", "client": "acme", "site": "hq"}
        assert hq["alerts"][0]["starts_at"] == "2023-11-14T22:12:20Z"
        assert hq["alerts"][0]["ends_at"] is None
        sent = metric(registry, "rmm_notifications_sent_total", receiver="desk", notifier="webhook")
        assert sent == 2
        assert metric(registry, "rmm_notification_duration_seconds_count", notifier="webhook") == 2

    asyncio.run(scenario())


def test_repeat_interval_resends_and_new_alerts_wait_for_group_interval(
    http: HttpReceiver,
) -> None:
    async def scenario() -> None:
        fake = FakeTime()
        config = parse_notify_config(config_text(http.url("/hook")))
        dispatcher = Dispatcher(config, fake.clock, fake.sleep)
        await dispatcher.start()
        try:
            await dispatcher.submit(notice(alert_id="a1"))
            await fake.advance(30)
            await dispatcher.flush()
            assert len(http.requests) == 1
            # Nothing new: no message at group_interval.
            await fake.advance(300)
            await dispatcher.flush()
            assert len(http.requests) == 1
            # A new alert joins: it is sent at the next group_interval, not at once.
            await dispatcher.submit(notice(alert_id="a2", agent_id="agent-2"))
            await fake.advance(200)
            await dispatcher.flush()
            assert len(http.requests) == 1
            await fake.advance(100)
            await dispatcher.flush()
            assert len(http.requests) == 2
            assert len(http.requests[1].body["alerts"]) == 2
            # Still firing, nothing new: resent once repeat_interval (1h) has passed.
            for _ in range(11):
                await fake.advance(300)
                await dispatcher.flush()
            assert len(http.requests) == 2
            await fake.advance(300)
            await dispatcher.flush()
            assert len(http.requests) == 3
        finally:
            await dispatcher.stop()

    asyncio.run(scenario())


def test_resolved_message_then_group_is_forgotten(http: HttpReceiver) -> None:
    async def scenario() -> None:
        fake = FakeTime()
        config = parse_notify_config(config_text(http.url("/hook")))
        dispatcher = Dispatcher(config, fake.clock, fake.sleep)
        await dispatcher.start()
        first, second = notice(alert_id="a1"), notice(alert_id="a2", agent_id="agent-2")
        try:
            await dispatcher.submit(first)
            await dispatcher.submit(second)
            await fake.advance(30)
            await dispatcher.flush()
            await dispatcher.submit(resolved(first, fake.now))
            await fake.advance(300)
            await dispatcher.flush()
            partly = http.requests[1].body
            assert partly["status"] == "firing"
            assert [(a["alert_id"], a["status"]) for a in partly["alerts"]] == [
                ("a2", "firing"),
                ("a1", "resolved"),
            ]
            await dispatcher.submit(resolved(second, fake.now))
            await fake.advance(300)
            await dispatcher.flush()
            done = http.requests[2].body
            assert done["status"] == "resolved"
            assert [(a["alert_id"], a["status"]) for a in done["alerts"]] == [("a2", "resolved")]
            assert done["alerts"][0]["ends_at"] is not None
            assert dispatcher.pending_groups() == []
            # An alert that fires and resolves within group_wait is never news.
            third = notice(alert_id="a3")
            await dispatcher.submit(third)
            await dispatcher.submit(resolved(third, fake.now))
            await fake.advance(30)
            await dispatcher.flush()
            assert len(http.requests) == 3
            assert dispatcher.pending_groups() == []
        finally:
            await dispatcher.stop()

    asyncio.run(scenario())


def test_retries_with_backoff_then_failure_is_recorded(http: HttpReceiver) -> None:
    failures: list[tuple[str, Notification, NotifyError]] = []

    async def on_failure(receiver: str, notification: Notification, error: NotifyError) -> None:
        failures.append((receiver, notification, error))

    async def scenario() -> None:
        fake = FakeTime()
        registry = CollectorRegistry()
        config = parse_notify_config(config_text(http.url("/fail"), group_interval="1h"))
        dispatcher = Dispatcher(config, fake.clock, fake.sleep, on_failure, registry)
        await dispatcher.start()
        try:
            await dispatcher.submit(notice())
            await fake.advance(30)
            await fake.run_until(dispatcher.flush())
        finally:
            await dispatcher.stop()
        assert http.attempts["/fail"] == 3
        # Exponential backoff without jitter: 1s, then 2s (the timer loop sleeps longer).
        assert [s for s in fake.sleeps if s < 10] == [1.0, 2.0]
        assert len(failures) == 1
        receiver, notification, error = failures[0]
        assert receiver == "desk"
        assert [a.alert_id for a in notification.alerts] == ["a0"]
        assert "HTTP 500" in str(error)
        assert "/fail" not in str(error), "the URL's path may hold a secret"
        labels = {"receiver": "desk", "notifier": "webhook"}
        assert metric(registry, "rmm_notifications_failed_total", **labels) == 1
        assert metric(registry, "rmm_notification_retries_total", **labels) == 2
        assert metric(registry, "rmm_notifications_sent_total", **labels) == 0

    asyncio.run(scenario())


def test_a_client_error_is_not_retried(http: HttpReceiver) -> None:
    failures: list[str] = []

    async def scenario() -> None:
        fake = FakeTime()
        config = parse_notify_config(config_text(http.url("/bad")))
        dispatcher = Dispatcher(
            config, fake.clock, fake.sleep, lambda r, n, e: failures.append(str(e))
        )
        await dispatcher.start()
        try:
            await dispatcher.submit(notice())
            await fake.advance(30)
            await dispatcher.flush()
        finally:
            await dispatcher.stop()
        assert http.attempts["/bad"] == 1
        assert len(failures) == 1
        assert "HTTP 400" in failures[0]
        assert "check the URL" in failures[0]

    asyncio.run(scenario())


def test_a_hanging_receiver_does_not_delay_another_or_the_caller(http: HttpReceiver) -> None:
    config = parse_notify_config(f"""
receivers:
  - name: slow
    webhook: {{url: "{http.url("/hang")}", timeout: 20s}}
  - name: fast
    webhook: {{url: "{http.url("/fast")}", timeout: 2s}}
route:
  receiver: fast
  group_wait: 10s
  routes:
    - matchers: ['client = acme']
      receiver: slow
      continue: true
    - matchers: ['severity = critical']
      receiver: fast
""")

    async def scenario() -> None:
        fake = FakeTime()
        dispatcher = Dispatcher(config, fake.clock, fake.sleep)
        await dispatcher.start()
        try:
            await dispatcher.submit(notice())
            # The timer loop (not flush) sends both groups once group_wait has passed.
            await fake.advance(10)
            started = time.monotonic()
            await wait_for(lambda: len(http.on("/fast")) == 1, limit=3)
            assert time.monotonic() - started < 2
            assert http.attempts.get("/hang") == 1
            assert http.on("/hang") == []
            # The caller is never held up: submitting many notices takes no network time.
            started = time.monotonic()
            for index in range(1000):
                await dispatcher.submit(notice(alert_id=f"b{index}", site=f"s{index % 7}"))
            assert time.monotonic() - started < 1
        finally:
            await dispatcher.stop()

    asyncio.run(scenario())


def test_timer_loop_sends_in_real_time(http: HttpReceiver) -> None:
    config = parse_notify_config(config_text(http.url("/hook"), group_wait="50ms"))

    async def scenario() -> None:
        dispatcher = Dispatcher(config)
        await dispatcher.start()
        try:
            await dispatcher.submit(notice())
            await wait_for(lambda: len(http.requests) == 1, limit=3)
        finally:
            await dispatcher.stop()

    asyncio.run(scenario())


def test_escalation_goes_to_the_next_tier_and_resolution_reaches_both(
    http: HttpReceiver,
) -> None:
    config = parse_notify_config(f"""
receivers:
  - name: l1-desk
    webhook: {{url: "{http.url("/l1")}"}}
  - name: l2-desk
    webhook: {{url: "{http.url("/l2")}"}}
route:
  group_wait: 10s
tiers:
  L1: {{receiver: l1-desk, ack_timeout: 15m}}
  L2: {{receiver: l2-desk, ack_timeout: 30m, group_wait: 0s}}
""")

    async def scenario() -> None:
        fake = FakeTime()
        dispatcher = Dispatcher(config, fake.clock, fake.sleep)
        await dispatcher.start()
        alert = notice()
        try:
            await dispatcher.submit(alert)
            await fake.advance(10)
            await dispatcher.flush()
            assert len(http.on("/l1")) == 1 and http.on("/l2") == []
            assert config.ack_timeout("L1") == 900
            assert config.next_tier("L1") == "L2"
            escalated = replace(alert, tier="L2", escalated_from="L1")
            await dispatcher.submit(escalated)
            await dispatcher.flush()
            l2 = http.on("/l2")
            assert len(l2) == 1
            assert l2[0]["alerts"][0]["escalated_from"] == "L1"
            assert l2[0]["alerts"][0]["tier"] == "L2"
            await dispatcher.submit(resolved(escalated, fake.now))
            await fake.advance(300)
            await dispatcher.flush()
        finally:
            await dispatcher.stop()
        assert http.on("/l1")[-1]["status"] == "resolved"
        assert http.on("/l2")[-1]["status"] == "resolved"

    asyncio.run(scenario())


def test_reload_reroutes_the_alerts_of_removed_receivers(http: HttpReceiver) -> None:
    old = parse_notify_config(config_text(http.url("/old")))
    new = parse_notify_config(
        config_text(http.url("/new"))
        .replace("name: desk", "name: desk2")
        .replace("receiver: desk", "receiver: desk2")
    )

    async def scenario() -> None:
        fake = FakeTime()
        dispatcher = Dispatcher(old, fake.clock, fake.sleep)
        await dispatcher.start()
        try:
            await dispatcher.submit(notice(alert_id="before"))
            dispatcher.reload(new)
            await dispatcher.submit(notice(alert_id="after"))
            await fake.advance(30)
            await dispatcher.flush()
        finally:
            await dispatcher.stop()
        assert http.on("/old") == []
        (body,) = http.on("/new")
        assert sorted(a["alert_id"] for a in body["alerts"]) == ["after", "before"]
        assert dispatcher.config is new

    asyncio.run(scenario())
