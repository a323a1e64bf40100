"""The records patching shares: updates, approval rules, manual decisions, schedules, rings.

Every class is frozen: settings and decisions are values computed from the policy set in force
and the manual records, passed between the policy loader, the approval function, the per-agent
state and the rollout. Add fields at the end with defaults so that every reader keeps working.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from rmm_server.policy.model import AgentContext, Provenance

# The agent's classifications (rmm_agent/patching/base.py CLASSIFICATIONS; the server may not
# import the agent, tests/server/patching checks the two lists are the same).
SECURITY = "security"
CRITICAL = "critical"
BUGFIX = "bugfix"
FEATURE = "feature"
DRIVER = "driver"
FIRMWARE = "firmware"
THIRD_PARTY = "third-party"
CLASSIFICATIONS = (SECURITY, CRITICAL, BUGFIX, FEATURE, DRIVER, FIRMWARE, THIRD_PARTY)
# Drivers and firmware change how a host boots and talks to its hardware: only a rule naming
# their classification approves them, never a rule written for software.
DEVICE_CLASSIFICATIONS = frozenset({DRIVER, FIRMWARE})

# What became of one update for one agent.
APPROVED = "approved"
DECLINED = "declined"
PENDING = "pending"  # no rule or record approves it (yet: a deferral may end)
DECISION_STATES = (APPROVED, DECLINED, PENDING)

# What a rule or a manual record says.
APPROVE = "approve"
DECLINE = "decline"
ACTIONS = (APPROVE, DECLINE)

# Where a manual record applies, widest first; a narrower record wins over a wider one.
EVERYWHERE = "everywhere"
CLIENT = "client"
SITE = "site"
AGENT = "agent"
MANUAL_SCOPES = (EVERYWHERE, CLIENT, SITE, AGENT)

# When a host is rebooted after an install.
REBOOT_NEVER = "never"
REBOOT_IF_REQUIRED = "if-required"
REBOOT_ALWAYS = "always"
REBOOT_MODES = (REBOOT_NEVER, REBOOT_IF_REQUIRED, REBOOT_ALWAYS)
# How the logged-in user hears of the reboot: through the consent layer (docs/consent.md).
REBOOT_CONSENT = ("unattended", "warn", "ask")

# Where a schedule's wall-clock time is read: the agent's site's time zone, or a fixed IANA name.
SITE_TIME_ZONE = "site"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True, slots=True)
class UpdateFacts:
    """What the server knows of one pending update on one agent (the agent's PendingUpdate)."""

    id: str  # "<backend>:<key>", as the agent sends it
    name: str
    current: str | None
    available: str
    classification: str  # one of CLASSIFICATIONS
    backend: str
    severity: str = ""  # the vendor's word, "" where unknown
    published: float | None = None  # epoch seconds, None where the backend does not say
    size_bytes: int | None = None
    reboot_required: bool = False
    source: str = ""  # repository, origin or catalog
    # Hardware ids the update is for (drivers and firmware; "" / () where unknown).
    hardware_ids: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UpdateFacts:
        """Return the update from the agent's JSON form (PendingUpdate.to_dict)."""
        published = data.get("published")
        size = data.get("size_bytes")
        hardware = data.get("hardware_ids") or ()
        return cls(
            id=str(data["id"]),
            name=str(data.get("name", "")),
            current=None if data.get("current") is None else str(data["current"]),
            available=str(data.get("available", "")),
            classification=str(data.get("classification", "")),
            backend=str(data.get("backend", "")),
            severity=str(data.get("severity") or ""),
            published=None if published is None else float(published),
            size_bytes=None if size is None else int(size),
            reboot_required=bool(data.get("reboot_required", False)),
            source=str(data.get("source") or ""),
            hardware_ids=tuple(str(item) for item in hardware),
        )


@dataclass(frozen=True, slots=True)
class NamePattern:
    """A name glob (`openssl*`) or a whole-name regular expression, compiled at load."""

    text: str  # as written: "glob:..." is not used; kind says which
    kind: str  # "glob" or "regex"
    pattern: re.Pattern[str] = field(compare=False, repr=False)

    @classmethod
    def glob(cls, text: str) -> NamePattern:
        """Return a case-insensitive glob pattern."""
        return cls(text, "glob", re.compile(fnmatch.translate(text), re.IGNORECASE))

    @classmethod
    def regex(cls, text: str) -> NamePattern:
        """Return a regular expression matched against the whole name (re.error if invalid)."""
        return cls(text, "regex", re.compile(text))

    def matches(self, name: str) -> bool:
        """Return whether `name` matches."""
        return self.pattern.fullmatch(name) is not None

    def __str__(self) -> str:
        return self.text if self.kind == "glob" else f"/{self.text}/"


@dataclass(frozen=True, slots=True)
class ApprovalRule:
    """One rule of a patch policy: which updates it approves (or declines), after how long."""

    name: str
    action: str = APPROVE  # one of ACTIONS
    classifications: frozenset[str] = frozenset()  # empty: every software classification
    severities: frozenset[str] = frozenset()  # casefolded; empty: any severity
    min_age_seconds: float = 0.0  # deferral since `published`
    include: tuple[NamePattern, ...] = ()  # empty: every name; matched against id and name
    exclude: tuple[NamePattern, ...] = ()
    hardware_ids: frozenset[str] = frozenset()  # drivers/firmware pinned to these ids (casefold)
    policy: str = ""
    source: str = ""  # file:line of the rule
    layer: str = ""


@dataclass(frozen=True, slots=True)
class ManualDecision:
    """An operator's approve or decline of an update id (or id glob) in a scope."""

    update: str  # an update id, or a glob over ids ("apt:linux-*")
    action: str  # one of ACTIONS
    scope: str  # one of MANUAL_SCOPES
    target: str  # "" everywhere; a client; "client/site"; an agent id
    by: str
    at: float
    comment: str = ""

    @property
    def is_glob(self) -> bool:
        """Return whether `update` is a glob rather than one id."""
        return any(char in self.update for char in "*?[")

    def applies_to(self, agent_id: str, client: str, site: str) -> bool:
        """Return whether this record's scope holds the agent."""
        if self.scope == EVERYWHERE:
            return True
        if self.scope == CLIENT:
            return self.target == client
        if self.scope == SITE:
            return self.target == f"{client}/{site}"
        return self.target == agent_id

    def matches(self, update_id: str) -> bool:
        """Return whether the record names `update_id`."""
        if self.is_glob:
            return fnmatch.fnmatchcase(update_id, self.update)
        return self.update == update_id


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether one update is approved for one agent, and what decided it."""

    state: str  # one of DECISION_STATES
    why: str  # for people: "rule security-now (policies/patching.yaml:14)", "declined by bob"
    rule: str = ""  # "policy/rule" of the deciding rule, "" when none or manual
    source: str = ""  # file:line of the deciding rule
    manual: ManualDecision | None = None
    # A rule approves it once its deferral ends at this time (epoch seconds); None otherwise.
    not_before: float | None = None


@dataclass(frozen=True, slots=True)
class PatchSchedule:
    """When patch windows open: a cron expression, or the Nth weekday of the month + K days."""

    name: str
    duration_seconds: float
    cron: str | None = None  # five fields, minute hour day month weekday
    nth: int | None = None  # 1..5, or -1 for the last one in the month
    weekday: str | None = None  # one of WEEKDAYS
    offset_days: int = 0
    time: str = "00:00"  # HH:MM, for nth-weekday schedules
    time_zone: str = SITE_TIME_ZONE  # "site" or an IANA name
    policy: str = ""
    source: str = ""

    def describe(self) -> str:
        """Return the schedule in words."""
        if self.cron is not None:
            when = f"cron {self.cron!r}"
        else:
            nth = {1: "1st", 2: "2nd", 3: "3rd", -1: "last"}.get(self.nth or 0, f"{self.nth}th")
            when = f"{nth} {self.weekday} + {self.offset_days} days at {self.time}"
        hours = self.duration_seconds / 3600
        return f"{when} for {hours:g}h ({self.time_zone} time)"


class AgentSelector(Protocol):
    """Anything that says whether an agent is in (a policy loader Scope)."""

    def matches(self, agent: AgentContext) -> bool: ...


@dataclass(frozen=True, slots=True)
class Ring:
    """One rollout ring: which agents, and when the next ring may start after it."""

    name: str
    order: int  # 0 installs first
    selector: AgentSelector = field(compare=False)
    selector_text: str = ""  # as written, for people
    # The ring is healthy when its installs succeeded, every rebooted agent reported again
    # (when required), and no new critical alert fired on its agents for soak_seconds.
    soak_seconds: float = 3600.0
    require_reboot_report: bool = True
    no_new_critical_alert: bool = True
    policy: str = ""
    source: str = ""


@dataclass(frozen=True, slots=True)
class ScriptStep:
    """A script-library script run before or after an install."""

    script: str
    args: tuple[str, ...] = ()
    timeout_seconds: float = 600.0
    # The library script's declared parameters (`params:`), name and value as written: checked
    # against its header when the policies load and again when sent (script_params.py).
    params: tuple[tuple[str, str], ...] = ()
    source: str = field(default="", compare=False)  # file:line:col of the step, for errors


@dataclass(frozen=True, slots=True)
class RebootPolicy:
    """Whether the host reboots after installing, and how its user is told or asked."""

    mode: str = REBOOT_IF_REQUIRED  # one of REBOOT_MODES
    consent: str = "warn"  # one of REBOOT_CONSENT
    max_deferrals: int = 3
    deferral_seconds: float = 3600.0


@dataclass(frozen=True)
class PatchSettings:
    """The effective patch settings for one agent, after scope and layering, with provenance."""

    agent_id: str
    enabled: bool = True
    rules: tuple[ApprovalRule, ...] = ()
    schedule: PatchSchedule | None = None
    ring: Ring | None = None  # the first ring, in order, whose selector holds the agent
    rings: tuple[Ring, ...] = ()  # every ring, in order
    reboot: RebootPolicy = field(default_factory=RebootPolicy)
    pre_install: tuple[ScriptStep, ...] = ()
    post_install: tuple[ScriptStep, ...] = ()
    # After a window, an agent that installed or rebooted must report within this time.
    report_back_seconds: float = 3600.0
    provenance: tuple[Provenance, ...] = ()

    def set_by(self, field_name: str) -> Provenance | None:
        """Return who set `field_name` last, or None when it kept its default."""
        found = None
        for item in self.provenance:
            if item.field == field_name:
                found = item
        return found
