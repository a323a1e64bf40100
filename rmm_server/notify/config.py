"""The notification config: receivers, an Alertmanager-like route tree and per-tier routes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from rmm_common.errors import ConfigError, InvalidArgument
from rmm_common.yamlnodes import Section, Where, compose, process_env, scalar_text
from rmm_server.notify.model import AlertNotice, NotifierType, notice_label
from rmm_server.notify.registry import NOTIFIERS

TIERS = ("L1", "L2", "L3")
GROUP_BY_ALL = "..."
DEFAULT_GROUP_BY = ("rule", "client", "site")
_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Operator = Literal["=", "!=", "=~", "!~"]


@dataclass(frozen=True)
class Matcher:
    """One condition on a notice: `name op value`, as in Alertmanager's `matchers`."""

    name: str
    op: Operator
    value: str
    pattern: re.Pattern[str] | None = None

    def matches(self, notice: AlertNotice) -> bool:
        """Return whether `notice` satisfies this matcher."""
        actual = notice_label(notice, self.name)
        if self.pattern is not None:
            found = self.pattern.fullmatch(actual) is not None
            return found if self.op == "=~" else not found
        return (actual == self.value) if self.op == "=" else (actual != self.value)

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value!r}"


def parse_matcher(text: str) -> Matcher:
    """Parse `severity = critical`, `client =~ "acme|globex"`, `site != lab` or `x !~ re`."""
    found = _MATCHER.match(text)
    if found is None:
        raise InvalidArgument(
            f"matcher {text!r} is not understood: write NAME OP VALUE with OP one of"
            " =, !=, =~, !~ (e.g. 'severity = critical')"
        )
    name, op, value = found.group(1), found.group(2), found.group(3)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    elif value[:1] in ("=", "~"):
        # "a == b" or "a =~~ b" is a typo; a value that really starts so must be quoted.
        raise InvalidArgument(
            f"matcher {text!r} is not understood: the operator is one of =, !=, =~, !~"
            " (quote a value that starts with = or ~)"
        )
    pattern = None
    if op in ("=~", "!~"):
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise InvalidArgument(f"matcher {text!r}: bad regular expression: {exc}") from exc
    return Matcher(name, op, value, pattern)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RouteMatch:
    """Where one notice goes: a receiver and the grouping and timing of that route."""

    route_id: str  # "route", "route.routes[1]", "tiers.L2": keeps groups of routes apart
    receiver: str
    group_by: tuple[str, ...]
    group_wait: float
    group_interval: float
    repeat_interval: float


@dataclass(frozen=True)
class Route:
    """A node of the route tree; children inherit receiver, grouping and timing."""

    route_id: str
    matchers: tuple[Matcher, ...]
    receiver: str | None
    group_by: tuple[str, ...]
    group_wait: float
    group_interval: float
    repeat_interval: float
    continue_: bool = False
    routes: tuple[Route, ...] = ()

    def as_match(self, receiver: str) -> RouteMatch:
        """Return this route's delivery settings for `receiver`."""
        return RouteMatch(
            self.route_id,
            receiver,
            self.group_by,
            self.group_wait,
            self.group_interval,
            self.repeat_interval,
        )

    def match(self, notice: AlertNotice) -> list[RouteMatch]:
        """Return the deepest matching routes, Alertmanager's way (first match unless continue)."""
        if not all(matcher.matches(notice) for matcher in self.matchers):
            return []
        found: list[RouteMatch] = []
        for child in self.routes:
            child_matches = child.match(notice)
            if child_matches:
                found.extend(child_matches)
                if not child.continue_:
                    break
        if not found and self.receiver is not None:
            found.append(self.as_match(self.receiver))
        return found


@dataclass(frozen=True)
class TierConfig:
    """Who owns a tier and how long they have to acknowledge before it escalates."""

    tier: str
    receiver: str
    ack_timeout: float | None
    route: Route


@dataclass(frozen=True)
class ReceiverConfig:
    """A named destination: one notifier type and its settings."""

    name: str
    notifier: str
    kind: NotifierType[Any]
    settings: Any
    send_resolved: bool = True


@dataclass(frozen=True)
class DeliveryConfig:
    """How hard the dispatcher tries before a notification counts as failed."""

    attempts: int = 5
    initial_backoff: float = 1.0
    max_backoff: float = 60.0
    jitter: float = 1.0
    attempt_timeout: float = 60.0  # a backstop above each notifier's own network timeouts
    concurrency: int = 4  # notifications in flight per receiver


@dataclass(frozen=True)
class NotifyConfig:
    """A validated notification config; build it with load_notify_config."""

    source: str
    receivers: Mapping[str, ReceiverConfig]
    route: Route
    tiers: Mapping[str, TierConfig] = field(default_factory=dict)
    delivery: DeliveryConfig = DeliveryConfig()
    external_url: str = ""

    def route_for(self, notice: AlertNotice) -> list[RouteMatch]:
        """Return every route `notice` goes to: the tree's matches plus its tier's receiver."""
        matches = self.route.match(notice)
        tier = self.tiers.get(notice.tier)
        if tier is not None and all(match.receiver != tier.receiver for match in matches):
            matches.append(tier.route.as_match(tier.receiver))
        return matches

    def tier_receiver(self, tier: str) -> str | None:
        """Return the receiver that owns `tier`, or None when the tier is not configured."""
        config = self.tiers.get(tier)
        return config.receiver if config else None

    def ack_timeout(self, tier: str) -> float | None:
        """Return the seconds `tier` has to acknowledge before escalation (None: never)."""
        config = self.tiers.get(tier)
        return config.ack_timeout if config else None

    def next_tier(self, tier: str) -> str | None:
        """Return the configured tier an unacknowledged alert of `tier` escalates to."""
        if tier not in TIERS:
            return None
        for candidate in TIERS[TIERS.index(tier) + 1 :]:
            if candidate in self.tiers:
                return candidate
        return None


def load_notify_config(
    path: Path,
    env: Mapping[str, str] | None = None,
    notifiers: Mapping[str, NotifierType[Any]] | None = None,
) -> NotifyConfig:
    """Read and check a notification config file; raise ConfigError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the notification config: {exc.strerror}") from exc
    return parse_notify_config(text, str(path), env, notifiers)


def parse_notify_config(
    text: str,
    source: str = "<notifications>",
    env: Mapping[str, str] | None = None,
    notifiers: Mapping[str, NotifierType[Any]] | None = None,
) -> NotifyConfig:
    """Check the YAML `text` of a notification config; raise ConfigError listing every problem."""
    if notifiers is None:
        notifiers = NOTIFIERS
    where = Where(source)
    root_node = compose(text, where)
    where.raise_errors(ConfigError)
    if root_node is None:
        raise ConfigError(f"{source}: the notification config is empty; give receivers and route")
    root = Section(where, root_node, "config")
    external_url = root.text("external_url", "")
    delivery = _parse_delivery(root.child("delivery", "delivery"))
    receivers = _parse_receivers(root, where, notifiers, process_env() if env is None else env)
    route_node = root.value_node("route", required=True)
    tiers_section = root.child("tiers", "tiers")
    defaults = Route("route", (), None, DEFAULT_GROUP_BY, 30.0, 300.0, 4 * 3600.0)
    route = _parse_route(Section(where, route_node, "route"), "route", defaults, receivers, "root")
    tiers = _parse_tiers(tiers_section, route, receivers)
    root.finish()
    if route.receiver is None and not tiers and not route.routes and route_node is not None:
        where.add(route_node, "route: give a receiver (or child routes or tiers with receivers)")
    where.raise_errors(ConfigError)
    return NotifyConfig(source, receivers, route, tiers, delivery, external_url.rstrip("/"))


def _parse_delivery(section: Section) -> DeliveryConfig:
    defaults = DeliveryConfig()
    delivery = DeliveryConfig(
        attempts=section.integer("attempts", defaults.attempts, minimum=1),
        initial_backoff=section.seconds("initial_backoff", defaults.initial_backoff),
        max_backoff=section.seconds("max_backoff", defaults.max_backoff),
        jitter=section.seconds("jitter", defaults.jitter),
        attempt_timeout=section.seconds("attempt_timeout", defaults.attempt_timeout, 0.001),
        concurrency=section.integer("concurrency", defaults.concurrency, minimum=1),
    )
    section.finish()
    return delivery


def _parse_receivers(
    root: Section,
    where: Where,
    notifiers: Mapping[str, NotifierType[Any]],
    env: Mapping[str, str],
) -> dict[str, ReceiverConfig]:
    receivers: dict[str, ReceiverConfig] = {}
    items = root.items("receivers")
    if not items and not root.has("receivers"):
        where.add(root.node, "config: missing required key 'receivers' (a list of receivers)")
    for node, index in items:
        section = Section(where, node, f"receivers[{index}]", env)
        name = section.text("name")
        if name:
            section.context = f"receivers[{index}] {name!r}"
        send_resolved = section.flag("send_resolved", True)
        present = [key for key in notifiers if section.has(key)]
        settings: Any = None
        if len(present) == 1:
            kind = notifiers[present[0]]
            child = section.child(present[0], f"{section.context}: {present[0]}")
            if child.valid:
                settings = kind.parse_settings(child)
            child.finish()
        else:
            for key in notifiers:  # mark them read so finish() does not call them unknown
                section.value_node(key)
            if section.valid:
                what = "names no notifier" if not present else f"names {len(present)} notifiers"
                where.add(
                    node,
                    f"{section.context}: {what}; give exactly one of {', '.join(notifiers)}"
                    " (use one receiver per notifier)",
                )
        section.finish()
        if not name or len(present) != 1:
            continue
        if name in receivers:
            where.add(node, f"{section.context}: a receiver named {name!r} exists already")
            continue
        receivers[name] = ReceiverConfig(
            name, present[0], notifiers[present[0]], settings, send_resolved
        )
    return receivers


def _parse_group_by(section: Section, inherited: tuple[str, ...]) -> tuple[str, ...]:
    if not section.has("group_by"):
        section.value_node("group_by")
        return inherited
    node = section.value_node("group_by")
    names = tuple(section.texts("group_by"))
    for name in names:
        if name != GROUP_BY_ALL and not _LABEL_NAME.match(name):
            section.where.add(node, f"{section.context}: group_by: {name!r} is not a label name")
    if GROUP_BY_ALL in names and len(names) > 1:
        section.where.add(node, f"{section.context}: group_by: '...' stands alone (every label)")
    return names


def _parse_route(
    section: Section,
    route_id: str,
    parent: Route,
    receivers: Mapping[str, ReceiverConfig],
    kind: Literal["root", "child", "tier"],
) -> Route:
    # The root matches everything and a tier route is chosen by tier: only children match.
    receiver = parent.receiver
    receiver_node = section.value_node("receiver")
    if receiver_node is not None:
        receiver = section.text("receiver")
        if receiver and receivers and receiver not in receivers:
            section.where.add(
                receiver_node,
                f"{route_id}: receiver {receiver!r} is not defined;"
                f" defined receivers: {', '.join(sorted(receivers)) or 'none'}",
            )
    matchers: list[Matcher] = []
    if kind == "child":
        for node, _ in section.items("matchers"):
            text = scalar_text(node)
            if text is None:
                section.where.add(node, f"{route_id}: each matcher must be a string")
                continue
            try:
                matchers.append(parse_matcher(text))
            except InvalidArgument as exc:
                section.where.add(node, f"{route_id}: {exc}")
    here = Route(
        route_id,
        tuple(matchers),
        receiver,
        _parse_group_by(section, parent.group_by),
        section.seconds("group_wait", parent.group_wait),
        section.seconds("group_interval", parent.group_interval, minimum=0.001),
        section.seconds("repeat_interval", parent.repeat_interval, minimum=0.001),
        section.flag("continue", False) if kind == "child" else False,
    )
    if kind == "tier":
        return here  # the tier parser reads ack_timeout, then reports unknown keys
    children = []
    for node, index in section.items("routes"):
        child_id = f"{route_id}.routes[{index}]"
        child = Section(section.where, node, child_id)
        children.append(_parse_route(child, child_id, here, receivers, "child"))
    section.finish()
    return replace(here, routes=tuple(children))


def _parse_tiers(
    section: Section, route: Route, receivers: Mapping[str, ReceiverConfig]
) -> dict[str, TierConfig]:
    tiers: dict[str, TierConfig] = {}
    for tier in TIERS:
        if not section.has(tier):
            section.value_node(tier)
            continue
        child = section.child(tier, f"tiers.{tier}", required=False)
        if not child.has("receiver") and child.valid:
            section.where.add(child.node, f"tiers.{tier}: missing required key 'receiver'")
        # A tier route takes the root route's grouping and timing unless it sets its own.
        tier_route = _parse_route(child, f"tiers.{tier}", route, receivers, "tier")
        ack_timeout = child.seconds("ack_timeout", 0.0) or None
        child.finish()
        if tier_route.receiver is not None and child.has("receiver"):
            tiers[tier] = TierConfig(tier, tier_route.receiver, ack_timeout, tier_route)
    section.finish()
    return tiers
