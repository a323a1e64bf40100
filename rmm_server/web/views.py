"""What the dashboard's pages show, computed from the fleet and alerts without any HTTP: the
routes only read a request's parameters, call these, and render a template."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import text_format

from rmm_proto import agent_pb2, commands_pb2
from rmm_server.commands import decode_result, result_note
from rmm_server.fleet import Fleet
from rmm_server.storage import AgentRecord
from rmm_server.storage.alerts import AlertRecord
from rmm_server.storage.commands import CommandRecord

PAGE_SIZE = 100
SEVERITIES = ("critical", "warning", "info")
SORT_KEYS = ("hostname", "client", "site", "os", "status", "last_seen", "alerts")


@dataclass(frozen=True, slots=True)
class FleetFilter:
    """An overview's filters, sort and page, as its URL carries them."""

    client: str = ""
    site: str = ""
    tag: str = ""
    os: str = ""
    status: str = ""  # "", "online" or "offline"
    q: str = ""  # part of a hostname, any case
    sort: str = "hostname"
    desc: bool = False
    page: int = 1

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> FleetFilter:
        """Read the filters from a URL's query; unknown values fall back to the defaults."""
        sort = query.get("sort", "hostname")
        status = query.get("status", "")
        try:
            page = max(1, int(query.get("page", "1")))
        except ValueError:
            page = 1
        return cls(
            client=query.get("client", "").strip(),
            site=query.get("site", "").strip(),
            tag=query.get("tag", "").strip(),
            os=query.get("os", "").strip(),
            status=status if status in ("online", "offline") else "",
            q=query.get("q", "").strip(),
            sort=sort if sort in SORT_KEYS else "hostname",
            desc=query.get("desc", "") == "1",
            page=page,
        )

    def matches(self, agent: AgentRecord, online: bool) -> bool:
        """Say whether an agent passes every filter."""
        return (
            (not self.client or agent.client == self.client)
            and (not self.site or agent.site == self.site)
            and (not self.tag or self.tag in agent.tags)
            and (not self.os or agent.os == self.os)
            and (not self.status or (self.status == "online") == online)
            and (not self.q or self.q.lower() in agent.hostname.lower())
        )


@dataclass(slots=True)
class SiteRow:
    """One client and site: how many agents are online and offline, firing alerts by severity."""

    client: str
    site: str
    online: int = 0
    offline: int = 0
    firing: Counter[str] = field(default_factory=Counter)
    # Patch compliance: agents that list their updates, and of those the ones missing none
    # approved (rmm patches report's rule); (0, 0) where no agent lists its updates.
    patch_listed: int = 0
    patch_compliant: int = 0


@dataclass(frozen=True, slots=True)
class AgentRow:
    """One agent in the overview's table."""

    id: str
    hostname: str
    client: str
    site: str
    os: str
    tags: Sequence[str]
    online: bool
    last_seen: float | None
    firing: int
    worst: str  # the most severe firing alert's severity, "" when none


@dataclass(slots=True)
class Overview:
    """The fleet overview: per site counts, one page of agents, and the filter choices."""

    sites: list[SiteRow]
    agents: list[AgentRow]
    matched: int
    pages: int
    total: int
    clients: list[str]
    oses: list[str]
    tags: list[str]
    firing: Counter[str]


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def overview(
    agents: Iterable[AgentRecord],
    open_alerts: Iterable[AlertRecord],
    now: float,
    filt: FleetFilter,
    compliance: Mapping[str, bool] | None = None,
) -> Overview:
    """Build the overview of `agents` with their firing alerts, filtered, sorted and paged.

    `compliance` says, of each agent that lists its updates, whether it misses none approved.
    """
    firing_of: dict[str, list[str]] = {}
    for alert in open_alerts:
        if alert.state == "firing":
            firing_of.setdefault(alert.agent_id, []).append(alert.severity)
    sites: dict[tuple[str, str], SiteRow] = {}
    # Rows are made for the shown page only: a frozen dataclass for each of 10,000 agents was
    # a sizeable part of a render.
    matched: list[_Matched] = []
    clients: set[str] = set()
    oses: set[str] = set()
    tags: set[str] = set()
    fleet_firing: Counter[str] = Counter()
    total = 0
    for agent in agents:
        if agent.revoked_at is not None:
            continue
        total += 1
        online = agent.online(now)
        severities = firing_of.get(agent.id, [])
        clients.add(agent.client)
        if agent.os:
            oses.add(agent.os)
        tags.update(agent.tags)
        site = sites.get((agent.client, agent.site))
        if site is None:
            site = sites[(agent.client, agent.site)] = SiteRow(agent.client, agent.site)
        if online:
            site.online += 1
        else:
            site.offline += 1
        if severities:  # most agents have none: Counter.update of nothing is not free
            site.firing.update(severities)
            fleet_firing.update(severities)
        compliant = (compliance or {}).get(agent.id)
        if compliant is not None:
            site.patch_listed += 1
            site.patch_compliant += int(compliant)
        if filt.matches(agent, online):
            matched.append((agent, online, severities))
    matched.sort(key=_sort_key(filt.sort), reverse=filt.desc)
    pages = max(1, math.ceil(len(matched) / PAGE_SIZE))
    page = min(filt.page, pages)
    return Overview(
        sites=sorted(sites.values(), key=lambda s: (s.client, s.site)),
        agents=[_row(*m) for m in matched[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]],
        matched=len(matched),
        pages=pages,
        total=total,
        clients=sorted(clients),
        oses=sorted(oses),
        tags=sorted(tags),
        firing=fleet_firing,
    )


# An agent that passed the filters: its record, whether it is online, its firing severities.
_Matched = tuple[AgentRecord, bool, list[str]]


def _row(agent: AgentRecord, online: bool, severities: list[str]) -> AgentRow:
    return AgentRow(
        id=agent.id,
        hostname=agent.hostname,
        client=agent.client,
        site=agent.site,
        os=agent.os_name or agent.os,
        tags=agent.tags,
        online=online,
        last_seen=agent.last_seen,
        firing=len(severities),
        worst=min(severities, key=_rank) if severities else "",
    )


def _sort_key(sort: str) -> Callable[[_Matched], Any]:
    keys: dict[str, Callable[[_Matched], Any]] = {
        "hostname": lambda m: (m[0].hostname.lower(), m[0].id),
        "client": lambda m: (m[0].client, m[0].site, m[0].hostname.lower()),
        "site": lambda m: (m[0].site, m[0].client, m[0].hostname.lower()),
        "os": lambda m: (m[0].os_name or m[0].os, m[0].hostname.lower()),
        "status": lambda m: (m[1], m[0].hostname.lower()),
        "last_seen": lambda m: (m[0].last_seen or 0.0, m[0].hostname.lower()),
        "alerts": lambda m: (len(m[2]), m[0].hostname.lower()),
    }
    return keys[sort]


@dataclass(frozen=True, slots=True)
class CollectorView:
    """One collector's latest result on the agent page."""

    name: str
    ok: bool
    error: str
    duration_seconds: float
    samples: list[tuple[str, str, float]]  # name, labels as text, value


def collectors_of(report: agent_pb2.Report | None, per_collector: int = 50) -> list[CollectorView]:
    """Return each collector's latest samples (at most `per_collector`) and its error."""
    if report is None:
        return []
    views = []
    for collector in report.collectors:
        samples = [
            (
                sample.name,
                ", ".join(f"{k}={v}" for k, v in sorted(sample.labels.items())),
                sample.value,
            )
            for sample in list(collector.samples)[:per_collector]
        ]
        views.append(
            CollectorView(
                collector.name, collector.ok, collector.error, collector.duration_seconds, samples
            )
        )
    return sorted(views, key=lambda v: (v.ok, v.name))


# What the agent page shows of one command's output; the whole is `rmm commands show ID`'s.
OUTPUT_CHARS = 4000


@dataclass(frozen=True, slots=True)
class CommandView:
    """One recent command on the agent page: what, who, when, how it ended, its output."""

    id: str
    issued_at: float
    operator: str
    action: str
    summary: str
    status: str
    error: str
    exit_code: int | None
    output: str


def command_view(record: CommandRecord) -> CommandView:
    """Return what the agent page shows of a command, its output cut to OUTPUT_CHARS."""
    result = decode_result(record)
    exit_code: int | None = None
    output = ""
    if result is not None:
        kind = result.WhichOneof("result")
        if kind == "script":
            exit_code = result.script.exit_code
            output = result.script.stdout + (
                "\n[stderr]\n" + result.script.stderr if result.script.stderr else ""
            )
        elif kind == "file":
            # Never the data: a pulled file of 8 MiB as text is ~2 s of CPU on the loop, for
            # every view of the page; its run's page has the download.
            output = result_note(result)
        elif kind is not None:
            output = text_format.MessageToString(getattr(result, kind), as_utf8=True)
    elif record.result_note:  # a pulled file's result, left out of listings
        output = record.result_note
    if len(output) > OUTPUT_CHARS:
        output = output[:OUTPUT_CHARS] + f"\n… ({len(output) - OUTPUT_CHARS} more characters)"
    status = commands_pb2.CommandStatus.Name(record.status) if record.status else "UNKNOWN"
    return CommandView(
        id=record.id,
        issued_at=record.issued_at,
        operator=record.operator,
        action=record.action,
        summary=record.summary,
        status=status.removeprefix("COMMAND_").lower(),
        error=record.error,
        exit_code=exit_code,
        output=output,
    )


# What the agent page shows of each inventory section; `rmm agents show` has the whole.
INVENTORY_SECTION_CHARS = 20_000


def inventory_sections(data: bytes | None) -> list[tuple[str, int, str]]:
    """Return the stored inventory's sections as (name, entries, indented JSON cut to size)."""
    if not data:
        return []
    try:
        inventory = json.loads(data)
    except ValueError:
        return [("inventory", 0, "the stored inventory is not JSON")]
    if not isinstance(inventory, dict):
        inventory = {"inventory": inventory}
    sections = []
    for name, value in sorted(inventory.items()):
        text = json.dumps(value, indent=1, ensure_ascii=False, sort_keys=True)
        if len(text) > INVENTORY_SECTION_CHARS:
            text = text[:INVENTORY_SECTION_CHARS] + "\n… (cut: rmm agents show has all of it)"
        entries = len(value) if isinstance(value, list | dict) else 1
        sections.append((str(name), entries, text))
    return sections


# How stale the overview's last-seen times may get between two full live updates.
LIVE_SLOT_SECONDS = 60
# How late an agent going offline (time passing, no event) may show on a live overview.
ONLINE_RECOUNT_SECONDS = 10.0


class OnlineCount:
    """How many agents are online, counted at most every ONLINE_RECOUNT_SECONDS.

    Shared by every open overview, so their polls cost no walk of the fleet. Coming online,
    joining, leaving and moving bump Fleet.version at once; between two bumps the set of
    online agents can only shrink, so its size alone tells whether someone went offline.
    """

    def __init__(self, fleet: Fleet, every: float = ONLINE_RECOUNT_SECONDS) -> None:
        self.fleet = fleet
        self.every = every
        self._counted_at = -math.inf
        self._count = 0

    def count(self, now: float) -> int:
        """Return the count, walking the fleet only when the last count is older than `every`
        (or the clock went back)."""
        if not 0.0 <= now - self._counted_at < self.every:
            self._count = sum(1 for state in self.fleet.snapshot() if state.record.online(now))
            self._counted_at = now
        return self._count


def live_version(
    fleet_version: int,
    alerts_version: int,
    online: int,
    now: float,
    query: str,
    compliance_version: int,
) -> str:
    """Return a tag that changes when what a live overview must show at once may have changed:
    the fleet (agents joining, leaving, moving, coming online: Fleet.version), the open alerts
    (AlertManager.version), how many are online (going offline), the patch figures (their
    version: bumped when a read finds other figures), the filters; and every LIVE_SLOT_SECONDS
    (last-seen times). O(1): no walk of the fleet."""
    slot = int(now // LIVE_SLOT_SECONDS)
    key = repr((query, fleet_version, alerts_version, online, slot, compliance_version))
    return hashlib.blake2b(key.encode(), digest_size=12).hexdigest()
