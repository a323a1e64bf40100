"""The values the policy engine takes in and hands out: agents, samples, rules, conditions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("info", "warning", "critical")
TIERS = ("L1", "L2", "L3")
# Highest first: a lower layer overrides what a higher one set.
LAYERS = ("global", "client", "site", "agent")
# What an inhibition may require the inhibiting and the inhibited alert to share.
INHIBIT_EQUAL = ("agent", "site", "client")  # or any series label name
# What a host's logged-in users see of a remote action (docs/consent.md). The position of a
# mode is its rmm_proto commands_pb2.ConsentMode number.
CONSENT_MODES = ("unattended", "notify", "ask")
# Visible unless a policy says otherwise: a hidden remote session is what scams rely on.
DEFAULT_CONSENT = "notify"


@dataclass(frozen=True)
class AgentContext:
    """Describe one agent as the policy engine sees it at one evaluation."""

    agent_id: str
    hostname: str
    client: str
    site: str
    tags: frozenset[str]
    os: str
    interval_seconds: float
    # None when the agent never reported; exposed to CEL as 0.0 (see docs/policies.md).
    seconds_since_report: float | None
    # Collector name -> that collector's info dict from the latest report.
    info: Mapping[str, Any]
    inventory_added: tuple[str, ...] = ()
    inventory_removed: tuple[str, ...] = ()
    # The undecoded info of each collector `info` is read from (its JSON bytes), when the
    # caller has them: a rule calling an info function is then known to see the same info as
    # at its previous evaluation by comparing bytes (PolicySet.evaluate with reuse). None: not
    # known, so such rules are always evaluated.
    info_raw: Mapping[str, bytes] | None = None


@dataclass(frozen=True)
class SeriesSample:
    """One value of one metric (name without the `rmm_` prefix) with its labels."""

    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Matcher:
    """Match one label: `=` equal, `!=` not equal, `=~` / `!~` whole-value regex."""

    label: str
    op: str
    value: str
    pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Return whether `labels` satisfy this matcher (a missing label reads as "")."""
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.pattern is not None
        found = self.pattern.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f"{self.label}{self.op}{self.value!r}"


@dataclass(frozen=True)
class Inhibit:
    """Which alerts a firing rule suppresses: by rule name, shared keys and label matchers."""

    # Rule names, or "*" for every other rule.
    rules: tuple[str, ...]
    # The inhibited alert must have the same agent / site / client as the inhibiting one.
    equal: tuple[str, ...] = ("agent",)
    # Matchers on the inhibited alert's labels (rule labels and series labels).
    match: tuple[Matcher, ...] = ()

    def targets(self, rule_name: str, labels: Mapping[str, str], own_name: str = "") -> bool:
        """Return whether an alert of `rule_name` with `labels` is one this inhibits."""
        if rule_name == own_name:
            return False
        named = "*" in self.rules or rule_name in self.rules
        return named and all(m.matches(labels) for m in self.match)


@dataclass(frozen=True)
class Remediate:
    """The library script the server runs on the agent when the rule's alert fires."""

    script: str
    args: tuple[str, ...] = ()
    # At most one run per agent and rule within this many seconds.
    interval_seconds: float = 3600.0


@dataclass(frozen=True)
class Provenance:
    """Say which document set one field of an effective rule."""

    field: str
    source: str  # file:line
    layer: str
    policy: str


@dataclass(frozen=True)
class EffectiveRule:
    """One rule as it applies to one agent, after scope and layering."""

    key: str  # "policy/rule", stable across reloads
    name: str
    policy: str
    source: str  # file:line of the defining rule
    layer: str  # layer of the defining document
    severity: str
    tier: str
    for_seconds: float
    keep_firing_for_seconds: float
    has_clear: bool
    labels: Mapping[str, str]
    annotations: Mapping[str, str]  # templates, rendered per Condition
    inhibits: tuple[Inhibit, ...]
    remediate: Remediate | None
    provenance: tuple[Provenance, ...]
    expr: str
    clear: str | None
    value: str | None
    match: tuple[Matcher, ...]
    params: Mapping[str, Any]
    enabled: bool = True
    # Label names that make one alert of this rule unique (empty for agent-level rules).
    series_labels: tuple[str, ...] = ()
    # The tier at which a firing alert opens a ticket (docs/desk.md); "": none.
    ticket: str = ""

    def set_by(self, field_name: str) -> Provenance | None:
        """Return who set `field_name` last, or None when it kept its default."""
        found = None
        for item in self.provenance:
            if item.field == field_name:
                found = item
        return found


@dataclass(frozen=True)
class Condition:
    """The outcome of one rule on one series (or on the agent) at one evaluation."""

    rule: EffectiveRule
    series_labels: Mapping[str, str]
    active: bool
    clear: bool | None
    value: float | None
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class ConsentSetting:
    """The consent mode in force for one agent, and which policy document chose it."""

    mode: str  # one of CONSENT_MODES
    policy: str = ""  # "" when no document in scope sets it (the default applies)
    source: str = ""  # file:line of the `consent:` key
    layer: str = ""

    @property
    def number(self) -> int:
        """Return the mode as its rmm_proto commands_pb2.ConsentMode value."""
        return CONSENT_MODES.index(self.mode)
