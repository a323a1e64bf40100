"""Contract and trend reports, computed in the server from the database (docs/desk.md).

A contract report covers one client's calendar month in the client's time zone (the zone its
sites share, else that of its site with the most agents, or one the operator names):
- availability of each agent: the share of its counted time it was not offline, where counted
  time is its enrolled time in the month (enrolment to revocation) less the planned maintenance
  windows covering it; offline time inside a window is excluded from both sides;
- alerts by severity: how many fired, median and 90th percentile time to acknowledge and to
  resolve, and how many met the contract's SLA targets (24x7 or business hours, as the
  contract says, in the alert's site's time zone);
- tickets opened, resolved and closed by tier; hours used and left, the billable amount;
- patch compliance of the client's agents (as `rmm patches report` counts it, now).
A report is a JSON-ready dict; `render_html` makes one self-contained page of it.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, case, func, or_, select

from rmm_common.errors import InvalidArgument, NotFound
from rmm_server.desk.contracts import SEVERITIES, business_calendar
from rmm_server.desk.tickets import TIERS, business_deadline, client_zone
from rmm_server.storage import Store, schema
from rmm_server.storage.availability import AvailabilityStore
from rmm_server.storage.desk import ContractRecord, DeskStore
from rmm_server.storage.patches import PatchStore
from rmm_server.storage.suppressions import MaintenanceWindow, SuppressionStore

MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
MAX_TREND_SECONDS = 366 * 86400.0
MAX_TREND_LIMIT = 1000
Interval = tuple[float, float]


# --- interval arithmetic: lists of [start, end) merged and sorted ---------------------------


def merged(intervals: Iterable[Interval]) -> list[Interval]:
    """Return the union of intervals as sorted, disjoint, non-empty intervals."""
    out: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def clipped(intervals: Iterable[Interval], start: float, end: float) -> list[Interval]:
    """Return the merged intervals cut to [start, end)."""
    return merged((max(s, start), min(e, end)) for s, e in intervals)


def length(intervals: Iterable[Interval]) -> float:
    """Return the total length of disjoint intervals."""
    return sum(end - start for start, end in intervals)


def overlap(a: Sequence[Interval], b: Sequence[Interval]) -> float:
    """Return how long two merged interval lists overlap."""
    total, i, j = 0.0, 0, 0
    while i < len(a) and j < len(b):
        total += max(0.0, min(a[i][1], b[j][1]) - max(a[i][0], b[j][0]))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def availability(
    span: Interval, maintenance: Iterable[Interval], offline: Iterable[Interval]
) -> tuple[float, float, float, float | None]:
    """Return (enrolled, maintenance, offline outside maintenance, availability) seconds of one
    agent over `span`; availability is None when no time counts (all of it maintenance)."""
    start, end = span
    windows = clipped(maintenance, start, end)
    down = clipped(offline, start, end)
    enrolled = max(0.0, end - start)
    planned = length(windows)
    unplanned = length(down) - overlap(down, windows)
    counted = enrolled - planned
    ratio = (counted - unplanned) / counted if counted > 0 else None
    return enrolled, planned, unplanned, ratio


def occurrences(window: MaintenanceWindow, start: float, end: float) -> list[Interval]:
    """Return the window's occurrences overlapping [start, end), cut to when the window existed
    (from its creation to its end): a window made afterwards does not excuse an outage."""
    alive_from = window.created_at
    alive_to = window.ended_at if window.ended_at is not None else math.inf
    found: list[Interval] = []
    if window.start_at is not None:
        found.append((window.start_at, window.start_at + window.duration_seconds))
    else:
        endless = replace(window, ended_at=None)
        cursor = start - window.duration_seconds
        while True:
            begins = endless.next_start(cursor)
            if begins is None or begins >= end:
                break
            found.append((begins, begins + window.duration_seconds))
            cursor = begins + 1.0  # cron fires on minutes: one second on is past this one
    return clipped(found, max(start, alive_from), min(end, alive_to))


# --- small figures ---------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float | None:
    """Return the nearest-rank percentile of `values` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def median(values: Sequence[float]) -> float | None:
    """Return the median of `values` (None when empty)."""
    return float(statistics.median(values)) if values else None


def parse_month(text: str) -> tuple[int, int]:
    """Return (year, month) of `YYYY-MM`, or raise InvalidArgument."""
    found = MONTH_RE.match(text.strip())
    if not found:
        raise InvalidArgument(f"month {text!r} is not YYYY-MM: write e.g. --month 2026-11")
    return int(found.group(1)), int(found.group(2))


def month_bounds(year: int, month: int, zone: ZoneInfo) -> Interval:
    """Return the month's start and end (unix times) on the wall clock of `zone`."""
    following = (year + 1, 1) if month == 12 else (year, month + 1)
    return (
        datetime(year, month, 1, tzinfo=zone).timestamp(),
        datetime(following[0], following[1], 1, tzinfo=zone).timestamp(),
    )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(
            f"time zone {name!r} is unknown: use an IANA name like Europe/Berlin"
        ) from None


# --- the contract report ---------------------------------------------------------------------


class Reports:
    """Build contract and trend reports from the database."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.desk = DeskStore(store)
        self.clock = clock

    def contract(self, client: str, month: str, time_zone: str = "") -> dict[str, Any]:
        """Return the contract report of `client` for `month` (YYYY-MM)."""
        year, number = parse_month(month)
        client = client.strip()
        record = self.desk.get_client(client)  # NotFound: the clearest error first
        sites = {site.name: site for site in self.desk.list_sites(client)}
        zone_name = time_zone.strip() or client_zone(sites.values())
        zone = _zone(zone_name)
        start, end = month_bounds(year, number, zone)
        now = self.clock()
        if start > now:
            raise InvalidArgument(
                f"month {month} has not begun in {zone_name}: a report covers a month that "
                "has begun (the current one up to now)"
            )
        until = min(end, now)
        try:
            contract: ContractRecord | None = self.desk.get_contract(client)
        except NotFound:
            contract = None
        zones = {name: site.time_zone for name, site in sites.items()}
        agents = self._agents(client, start, until)
        return {
            "client": record.name,
            "month": f"{year:04}-{number:02}",
            "time_zone": zone_name,
            "start": start,
            "end": until,
            "complete": until >= end,
            "generated_at": now,
            "contract": _contract_terms(contract),
            "availability": self._availability(record.name, agents, start, until, now),
            "alerts": self._alerts(client, contract, zones, start, until, now),
            "tickets": self._tickets(record.id, start, until),
            "hours": self._hours(record.id, contract, f"{year:04}-{number:02}"),
        }

    def _agents(self, client: str, start: float, until: float) -> list[dict[str, Any]]:
        agents, tags = schema.agents, schema.agent_tags
        with self.store.transaction(f"read the agents of {client}") as conn:
            rows = conn.execute(
                select(
                    agents.c.id,
                    agents.c.hostname,
                    agents.c.site,
                    agents.c.enrolled_at,
                    agents.c.revoked_at,
                )
                .where(
                    agents.c.client == client,
                    agents.c.enrolled_at < until,
                    agents.c.revoked_at.is_(None) | (agents.c.revoked_at > start),
                )
                .order_by(agents.c.site, agents.c.hostname, agents.c.id)
            ).all()
            tagged: dict[str, set[str]] = defaultdict(set)
            for agent_id, tag in conn.execute(
                select(tags.c.agent_id, tags.c.tag)
                .join(agents, agents.c.id == tags.c.agent_id)
                .where(agents.c.client == client)
            ):
                tagged[agent_id].add(tag)
        return [
            {
                "id": row.id,
                "hostname": row.hostname,
                "site": row.site,
                "client": client,
                "enrolled_at": row.enrolled_at,
                "revoked_at": row.revoked_at,
                "tags": frozenset(tagged.get(row.id, ())),
            }
            for row in rows
        ]

    def _availability(
        self, client: str, agents: list[dict[str, Any]], start: float, until: float, now: float
    ) -> dict[str, Any]:
        ids = [agent["id"] for agent in agents]
        offline = AvailabilityStore(self.store).periods(ids, start, until)
        known = set(ids)
        # Only windows that may cover one of these agents: fleet-wide windows and the client's
        # (a window per agent elsewhere in the fleet would be checked for every agent here).
        windows = [
            window
            for window in SuppressionStore(self.store).windows()
            if (not window.clients or client in window.clients)
            and (not window.agents or known.intersection(window.agents))
        ]
        occurring = [(window, occurrences(window, start, until)) for window in windows]
        compliance = {row.agent_id: row for row in PatchStore(self.store).compliance(ids, now)}
        rows: list[dict[str, Any]] = []
        total_counted = total_up = 0.0
        for agent in agents:
            span = (
                max(start, agent["enrolled_at"]),
                min(until, agent["revoked_at"] if agent["revoked_at"] is not None else until),
            )
            maintenance = [
                interval
                for window, intervals in occurring
                if intervals
                and window.covers(agent["client"], agent["site"], agent["id"], agent["tags"])
                for interval in intervals
            ]
            down = [
                (period.started_at, period.ended_at if period.ended_at is not None else until)
                for period in offline.get(agent["id"], ())
            ]
            enrolled, planned, unplanned, ratio = availability(span, maintenance, down)
            total_counted += enrolled - planned
            total_up += enrolled - planned - unplanned
            patches = compliance.get(agent["id"])
            rows.append(
                {
                    "agent_id": agent["id"],
                    "hostname": agent["hostname"],
                    "site": agent["site"],
                    "enrolled_seconds": enrolled,
                    "maintenance_seconds": planned,
                    "offline_seconds": unplanned,
                    "availability": ratio,
                    "patch_compliant": (
                        patches.compliant if patches is not None and patches.listed else None
                    ),
                }
            )
        listing = [row for row in rows if row["patch_compliant"] is not None]
        compliant = sum(1 for row in listing if row["patch_compliant"])
        return {
            "agents": rows,
            "overall": total_up / total_counted if total_counted > 0 else None,
            "patches": {
                "agents_listing": len(listing),
                "compliant": compliant,
                "ratio": compliant / len(listing) if listing else None,
            },
        }

    def _alerts(
        self,
        client: str,
        contract: ContractRecord | None,
        zones: dict[str, str],
        start: float,
        until: float,
        now: float,
    ) -> dict[str, Any]:
        alerts = schema.alerts
        with self.store.transaction(f"read the alerts of {client}") as conn:
            rows = conn.execute(
                select(
                    alerts.c.severity,
                    alerts.c.site,
                    alerts.c.fired_at,
                    alerts.c.acknowledged_at,
                    alerts.c.resolved_at,
                ).where(
                    alerts.c.client == client,
                    alerts.c.fired_at >= start,
                    alerts.c.fired_at < until,
                )
            ).all()
        hours = business_calendar(contract) if contract else None
        by_severity: dict[str, list[Any]] = defaultdict(list)
        for row in rows:
            by_severity[row.severity].append(row)
        out: dict[str, Any] = {}
        for severity in [*SEVERITIES, *sorted(set(by_severity) - set(SEVERITIES))]:
            found = by_severity.get(severity, [])
            target = contract.sla.get(severity) if contract else None
            ack_times, resolve_times = [], []
            sla = {"acknowledge": Counter[str](), "resolve": Counter[str]()}
            for row in found:
                # Resolving answers an alert too (a ticket counts as acknowledged when resolved).
                answered = min(
                    (t for t in (row.acknowledged_at, row.resolved_at) if t is not None),
                    default=None,
                )
                if answered is not None:
                    ack_times.append(answered - row.fired_at)
                if row.resolved_at is not None:
                    resolve_times.append(row.resolved_at - row.fired_at)
                if target is None:
                    continue
                zone = zones.get(row.site, "UTC")
                for name, seconds, done in (
                    ("acknowledge", target.acknowledge_seconds, answered),
                    ("resolve", target.resolve_seconds, row.resolved_at),
                ):
                    if done is not None and done - row.fired_at <= seconds:
                        # Business time never runs faster than the wall clock: met, and no
                        # calendar walk needed (most alerts of a month).
                        sla[name]["met"] += 1
                        continue
                    due = (
                        business_deadline(row.fired_at, seconds, hours, zone)
                        if target.clock == "business" and hours is not None
                        else row.fired_at + seconds
                    )
                    sla[name][_outcome(done, due, now)] += 1
            out[severity] = {
                "count": len(found),
                "acknowledged": len(ack_times),
                "resolved": len(resolve_times),
                "acknowledge_median_seconds": median(ack_times),
                "acknowledge_p90_seconds": percentile(ack_times, 0.9),
                "resolve_median_seconds": median(resolve_times),
                "resolve_p90_seconds": percentile(resolve_times, 0.9),
                "sla": (
                    {
                        "clock": target.clock,
                        "acknowledge_seconds": target.acknowledge_seconds,
                        "resolve_seconds": target.resolve_seconds,
                        **{
                            f"{name}_{outcome}": sla[name][outcome]
                            for name in ("acknowledge", "resolve")
                            for outcome in ("met", "missed", "open")
                        },
                    }
                    if target is not None
                    else None
                ),
            }
        return out

    def _tickets(self, client_id: str, start: float, until: float) -> dict[str, Any]:
        tickets = schema.tickets

        def within(column: Any) -> Any:
            return and_(column >= start, column < until)

        def count(column: Any) -> Any:
            return func.sum(case((within(column), 1), else_=0))

        query = (
            select(
                tickets.c.tier,
                count(tickets.c.opened_at),
                count(tickets.c.resolved_at),
                count(tickets.c.closed_at),
                func.sum(
                    case(
                        (and_(within(tickets.c.opened_at), tickets.c.sla_breaches != ""), 1),
                        else_=0,
                    )
                ),
            )
            .where(
                tickets.c.client_id == client_id,
                or_(
                    within(tickets.c.opened_at),
                    within(tickets.c.resolved_at),
                    within(tickets.c.closed_at),
                ),
            )
            .group_by(tickets.c.tier)
        )
        with self.store.transaction("count a client's tickets") as conn:
            rows = conn.execute(query).all()
        out = {tier: {"opened": 0, "resolved": 0, "closed": 0, "sla_breached": 0} for tier in TIERS}
        for tier, opened, resolved, closed, breached in rows:
            out[tier] = {
                "opened": int(opened or 0),
                "resolved": int(resolved or 0),
                "closed": int(closed or 0),
                "sla_breached": int(breached or 0),
            }
        return out

    def _hours(
        self, client_id: str, contract: ContractRecord | None, period: str
    ) -> dict[str, Any]:
        time_table = schema.ticket_time
        with self.store.transaction("sum a client's time") as conn:
            minutes, billable, entries = conn.execute(
                select(
                    func.coalesce(func.sum(time_table.c.minutes), 0.0),
                    func.sum(time_table.c.billable_amount),
                    func.count(),
                ).where(time_table.c.client_id == client_id, time_table.c.period == period)
            ).one()
        used = float(minutes) / 60.0
        included = contract.hours_per_period if contract is not None else None
        return {
            "period": period,  # time counts against the UTC month it was logged in
            "entries": int(entries),
            "used": used,
            "included": included,
            "left": included - used if included is not None else None,
            "billable_amount": float(billable) if billable is not None else None,
            "currency": contract.currency if contract is not None else None,
        }

    # --- trends ----------------------------------------------------------------------------

    def trends(self, since_seconds: float, client: str = "", limit: int = 10) -> dict[str, Any]:
        """Return the most frequent alert rules, hosts, clients and ticket categories over the
        last `since_seconds`, each with its count in the period before (as long) to compare."""
        if not math.isfinite(since_seconds) or not 0 < since_seconds <= MAX_TREND_SECONDS:
            raise InvalidArgument(
                f"--since {since_seconds:g}s is out of range: give a period from 1s to 366d"
            )
        if not 0 < limit <= MAX_TREND_LIMIT:
            raise InvalidArgument(f"--limit {limit} is out of range: give 1 to {MAX_TREND_LIMIT}")
        client = client.strip()
        client_id = self.desk.client_id(client) if client else ""
        now = self.clock()
        middle, first = now - since_seconds, now - 2 * since_seconds
        alerts, tickets = schema.alerts, schema.tickets

        def grouped(time_column: Any, keys: Sequence[Any], where: Sequence[Any]) -> list[Any]:
            current = func.sum(case((time_column >= middle, 1), else_=0))
            before = func.sum(case((time_column < middle, 1), else_=0))
            query = (
                select(*keys, current, before)
                .where(time_column >= first, time_column < now, *where)
                .group_by(*keys)
            )
            with self.store.transaction("count trends") as conn:
                return list(conn.execute(query).all())

        alert_where = [alerts.c.client == client] if client else []
        ticket_where = [tickets.c.client_id == client_id] if client else []
        rules = grouped(alerts.c.fired_at, [alerts.c.rule_name], alert_where)
        hosts = grouped(
            alerts.c.fired_at, [alerts.c.agent_id, alerts.c.hostname, alerts.c.client], alert_where
        )
        clients = grouped(alerts.c.fired_at, [alerts.c.client], alert_where)
        # A ticket's own category, else its alert's rule; "" (shown "(none)") for neither.
        category = func.coalesce(
            func.nullif(tickets.c.category, ""), func.coalesce(alerts.c.rule_name, "")
        )
        categories_query = (
            select(
                category,
                func.sum(case((tickets.c.opened_at >= middle, 1), else_=0)),
                func.sum(case((tickets.c.opened_at < middle, 1), else_=0)),
            )
            .select_from(tickets.outerjoin(alerts, alerts.c.id == tickets.c.alert_id))
            .where(tickets.c.opened_at >= first, tickets.c.opened_at < now, *ticket_where)
            .group_by(category)
        )
        with self.store.transaction("count ticket categories") as conn:
            categories = list(conn.execute(categories_query).all())

        def ranked(rows: list[Any], name: Callable[[Any], dict[str, Any]]) -> list[dict[str, Any]]:
            items = [
                {**name(row), "count": int(row[-2] or 0), "previous": int(row[-1] or 0)}
                for row in rows
            ]
            items = [item for item in items if item["count"]]
            for item in items:
                item["change"] = item["count"] - item["previous"]
            items.sort(key=lambda item: (-item["count"], -item["change"], str(item)))
            return items[:limit]

        return {
            "since_seconds": since_seconds,
            "start": middle,
            "end": now,
            "client": client,
            "alert_rules": ranked(rules, lambda row: {"rule": row[0]}),
            "hosts": ranked(
                hosts, lambda row: {"agent_id": row[0], "hostname": row[1], "client": row[2]}
            ),
            "clients": ranked(clients, lambda row: {"client": row[0]}),
            # A ticket's category (rmm tickets open --category), else its alert's rule, else
            # "(none)".
            "ticket_categories": ranked(categories, lambda row: {"category": row[0] or "(none)"}),
        }


def _outcome(done: float | None, due: float, now: float) -> str:
    if done is not None:
        return "met" if done <= due else "missed"
    return "missed" if now > due else "open"


def _contract_terms(contract: ContractRecord | None) -> dict[str, Any] | None:
    if contract is None:
        return None
    return {
        "type": contract.type,
        "hours_per_period": contract.hours_per_period,
        "rate": contract.rate,
        "currency": contract.currency,
        "business_hours": contract.business_hours,
    }
