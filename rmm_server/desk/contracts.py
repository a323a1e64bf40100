"""Contracts: one per client, its type, what it buys and its SLA targets (docs/desk.md).

Every term is checked before anything is written, and every problem is named at once: a
contract is stored whole or not at all.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from rmm_common.errors import InvalidArgument
from rmm_common.tokens import new_ident
from rmm_server.storage import Store
from rmm_server.storage.desk import ContractRecord, DeskStore, SlaTarget

log = logging.getLogger(__name__)

MANAGED = "managed"
BLOCK_HOURS = "block-hours"
TIME_AND_MATERIALS = "time-and-materials"
CONTRACT_TYPES = (MANAGED, BLOCK_HOURS, TIME_AND_MATERIALS)
SEVERITIES = ("critical", "warning", "info")  # as alert rules name them
CLOCKS = ("24x7", "business")
PERIOD = "month"
DEFAULT_CURRENCY = "USD"
DEFAULT_BUSINESS_HOURS = "mon-fri 08:00-18:00"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY = "(mon|tue|wed|thu|fri|sat|sun)"
DAY_ITEM_RE = re.compile(rf"^{_DAY}(?:-{_DAY})?$")
RANGE_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
MAX_BUSINESS_HOURS = 400  # characters: the column's width
MAX_HOLIDAYS = 1000  # about three years of every day: a list, not a calendar
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
# Ten years of calendar: ample for any SLA target, and a bound on a calendar with no hours.
_SEARCH_DAYS = 3700

Ranges = tuple[tuple[int, int], ...]  # (start minute, end minute) of one day, in order


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """When a business-hours SLA clock runs: per weekday (0 = Monday) the local hours, as
    minutes of the day, and the dates (holidays) with none. Wall-clock hours in the zone the
    deadline is asked for, so a daylight-saving change moves them with it."""

    week: tuple[Ranges, ...]  # seven entries, Monday first
    holidays: frozenset[date] = frozenset()

    def ranges(self, day: date) -> Ranges:
        """Return the business hours of one local date (none on a holiday)."""
        return () if day in self.holidays else self.week[day.weekday()]

    def _spans(self, day: date, tz: ZoneInfo) -> list[tuple[float, float]]:
        """Return the business hours of one local date as (opens, closes) unix times."""
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
        return [
            (
                (midnight + timedelta(minutes=first)).timestamp(),
                (midnight + timedelta(minutes=last)).timestamp(),
            )
            for first, last in self.ranges(day)
        ]

    def deadline(self, start: float, seconds: float, zone: str) -> float:
        """Return when `seconds` of business time after `start` have passed, on the local
        clock of `zone`; raise InvalidArgument when ten years do not hold that much."""
        tz = ZoneInfo(zone)
        cursor = datetime.fromtimestamp(start, tz)
        remaining = seconds
        for _day in range(_SEARCH_DAYS):
            day = cursor.date()
            for opens, closes in self._spans(day, tz):
                begin = max(cursor.timestamp(), opens)
                if begin >= closes:
                    continue
                if begin + remaining <= closes:
                    return begin + remaining
                remaining -= closes - begin
            following = day + timedelta(days=1)
            cursor = datetime(following.year, following.month, following.day, tzinfo=tz)
        raise InvalidArgument(
            "the business hours leave no time to meet the SLA target within ten years"
        )

    def elapsed(self, start: float, end: float, zone: str) -> float:
        """Return the business seconds between `start` and `end` on the local clock of `zone`."""
        if end <= start:
            return 0.0
        tz = ZoneInfo(zone)
        total = 0.0
        day = datetime.fromtimestamp(start, tz).date()
        last_day = datetime.fromtimestamp(end, tz).date()
        while day <= last_day:
            for opens, closes in self._spans(day, tz):
                total += max(0.0, min(end, closes) - max(start, opens))
            day += timedelta(days=1)
        return total


def _days(item: str, clause: str) -> list[int]:
    found = DAY_ITEM_RE.match(item)
    if not found:
        raise InvalidArgument(
            f"--business-hours {clause!r}: {item!r} is not a day or a range of days (mon, "
            "mon-fri, sat-sun)"
        )
    first = DAYS.index(found.group(1))
    last = DAYS.index(found.group(2)) if found.group(2) else first
    # fri-mon wraps over the weekend, as people write it.
    return [(first + step) % 7 for step in range((last - first) % 7 + 1)]


def _ranges(text: str, clause: str) -> Ranges:
    out: list[tuple[int, int]] = []
    for item in text.split(","):
        found = RANGE_RE.match(item.strip())
        if not found:
            raise InvalidArgument(
                f"--business-hours {clause!r}: {item.strip()!r} is not HH:MM-HH:MM (e.g. "
                "08:00-18:00; 24:00 ends at midnight)"
            )
        h1, m1, h2, m2 = (int(g) for g in found.groups())
        first, last = h1 * 60 + m1, h2 * 60 + m2
        if last <= first or last > 24 * 60:
            raise InvalidArgument(
                f"--business-hours {clause!r}: {item.strip()} ends at or before it starts: the "
                "day's end comes after its start (hours that cross midnight are not supported: "
                "write the two days' parts, e.g. fri 22:00-24:00; sat 00:00-02:00)"
            )
        out.append((first, last))
    out.sort()
    for (_, end), (start, _) in pairwise(out):
        if start < end:
            raise InvalidArgument(
                f"--business-hours {clause!r}: its hours overlap; give each time of day once"
            )
    return tuple(out)


def parse_business_hours(text: str, holidays: Iterable[str] = ()) -> BusinessHours:
    """Parse `mon-fri 08:00-18:00; sat 09:00-12:00` (each site's time zone) and the holiday
    dates (YYYY-MM-DD), or raise InvalidArgument naming the field and the part at fault.

    A clause is DAYS HOURS: days as `mon`, `mon-fri` or a list `mon,wed,fri`, hours as
    `08:00-18:00` or a list `08:00-12:00,13:00-17:00`; a day named in two clauses is an error.
    """
    normal = _normal(text)
    if not normal:
        raise InvalidArgument(
            f"--business-hours is empty: write DAYS HH:MM-HH:MM[; ...], e.g. "
            f"{DEFAULT_BUSINESS_HOURS!r}"
        )
    if len(normal) > MAX_BUSINESS_HOURS:
        raise InvalidArgument(
            f"--business-hours is {len(normal)} characters; at most {MAX_BUSINESS_HOURS}"
        )
    week: list[Ranges | None] = [None] * 7
    for clause in (c.strip() for c in normal.split(";")):
        if not clause:
            continue
        days_text, _, hours_text = clause.partition(" ")
        if not hours_text.strip():
            raise InvalidArgument(
                f"--business-hours {clause!r} is not understood: write DAYS HH:MM-HH:MM, e.g. "
                f"{DEFAULT_BUSINESS_HOURS!r} or 'mon-fri 08:00-18:00; sat 09:00-12:00'"
            )
        days = [day for item in days_text.split(",") for day in _days(item, clause)]
        ranges = _ranges(hours_text.replace(" ", ""), clause)
        for day in days:
            if week[day] is not None:
                raise InvalidArgument(
                    f"--business-hours {normal!r}: {DAYS[day]} is given twice; name each day "
                    "once (list its hours with commas: 08:00-12:00,13:00-17:00)"
                )
            week[day] = ranges
    return BusinessHours(tuple(day or () for day in week), frozenset(parse_holidays(holidays)))


def parse_holidays(texts: Iterable[str]) -> list[date]:
    """Return the holiday dates, sorted and once each, or raise InvalidArgument naming one."""
    days: set[date] = set()
    for text in texts:
        try:
            days.add(date.fromisoformat(text.strip()))
        except ValueError:
            raise InvalidArgument(
                f"--holiday {text!r} is not a date: write YYYY-MM-DD, e.g. 2026-12-25"
            ) from None
    if len(days) > MAX_HOLIDAYS:
        raise InvalidArgument(f"--holiday: {len(days)} dates; at most {MAX_HOLIDAYS}")
    return sorted(days)


def business_calendar(contract: ContractRecord) -> BusinessHours:
    """Return the business hours of a stored contract, with its holidays."""
    return parse_business_hours(contract.business_hours, contract.holidays)


@dataclass(frozen=True, slots=True)
class ContractTerms:
    """What an operator asks for; None (or empty) keeps what the contract has on update."""

    type: str = ""
    hours_per_period: float | None = None
    warn_below_hours: float | None = None
    rate: float | None = None
    currency: str = ""
    business_hours: str = ""
    sla: Mapping[str, SlaTarget] = field(default_factory=dict)
    holidays: tuple[str, ...] | None = None  # YYYY-MM-DD; None keeps them, () clears them


def check_sla(severity: str, target: SlaTarget) -> list[str]:
    """Return what is wrong with one severity's SLA target (nothing when it is right)."""
    problems = []
    where = f"SLA for {severity!r}"
    if severity not in SEVERITIES:
        problems.append(f"{where}: unknown severity; use {', '.join(SEVERITIES)}")
    if target.clock not in CLOCKS:
        problems.append(f"{where}: clock {target.clock!r} is not one of {', '.join(CLOCKS)}")
    for name, value in (
        ("acknowledge", target.acknowledge_seconds),
        ("resolve", target.resolve_seconds),
    ):
        if not math.isfinite(value) or value <= 0:
            problems.append(f"{where}: the time to {name} must be a positive duration")
    if 0 < target.resolve_seconds < target.acknowledge_seconds:
        problems.append(
            f"{where}: the time to resolve is shorter than the time to acknowledge, so the "
            "target cannot be met by its own definition: make resolve at least acknowledge"
        )
    return problems


def check_terms(record: ContractRecord) -> None:
    """Raise InvalidArgument naming every problem of a whole contract, or return."""
    problems: list[str] = []
    kind = record.type
    if kind not in CONTRACT_TYPES:
        problems.append(f"contract type {kind!r} is unknown: use {', '.join(CONTRACT_TYPES)}")
    hours, warn, rate = record.hours_per_period, record.warn_below_hours, record.rate
    for name, value in (("hours per period", hours), ("warning threshold", warn), ("rate", rate)):
        if value is not None and (not math.isfinite(value) or value < 0):
            problems.append(f"the {name} is negative or not a number ({value}): give 0 or more")
    if kind == BLOCK_HOURS:
        if hours is None or hours <= 0:
            problems.append("a block-hours contract needs its hours per period (--hours N, N > 0)")
        elif warn is not None and warn >= hours:
            problems.append(
                f"the warning threshold ({warn:g} h) must be below the hours per period "
                f"({hours:g} h), or the client is warned from the first hour"
            )
    elif hours is not None or warn is not None:
        problems.append(
            f"hours per period and a warning threshold belong to block-hours contracts, not "
            f"{kind}: drop --hours and --warn-below"
        )
    if kind == TIME_AND_MATERIALS:
        if rate is None or rate <= 0:
            problems.append("a time-and-materials contract needs its hourly rate (--rate N, N > 0)")
    elif rate is not None:
        problems.append(f"a rate belongs to time-and-materials contracts, not {kind}: drop --rate")
    if not CURRENCY_RE.match(record.currency):
        problems.append(f"currency {record.currency!r} is not a 3-letter code such as USD or EUR")
    try:
        parse_business_hours(record.business_hours, record.holidays)
    except InvalidArgument as exc:
        problems.append(str(exc))
    for severity, target in sorted(record.sla.items()):
        problems.extend(check_sla(severity, target))
    if problems:
        raise InvalidArgument(
            f"contract of client {record.client!r} not saved: " + "; ".join(problems)
        )


class Contracts:
    """Create, read and change clients' contracts."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.records = DeskStore(store)
        self.clock = clock

    def create(self, client: str, terms: ContractTerms, by: str) -> ContractRecord:
        """Add the contract of `client`; return it."""
        client = client.strip()
        client_id = self.records.client_id(client)  # NotFound first: the clearest error
        now = self.clock()
        record = ContractRecord(
            id=new_ident(),
            client_id=client_id,
            client=client,
            type=terms.type,
            period=PERIOD,
            currency=(terms.currency or DEFAULT_CURRENCY).strip().upper(),
            business_hours=_normal(terms.business_hours) or DEFAULT_BUSINESS_HOURS,
            holidays=_holidays(terms.holidays or ()),
            created_at=now,
            created_by=by,
            updated_at=now,
            updated_by=by,
            hours_per_period=terms.hours_per_period,
            warn_below_hours=terms.warn_below_hours,
            rate=terms.rate,
            sla=dict(terms.sla),
        )
        if not terms.type:
            raise InvalidArgument(
                f"contract of client {client!r}: give its type (--type {'|'.join(CONTRACT_TYPES)})"
            )
        check_terms(record)
        self.records.create_contract(record)
        log.info("contract of %s created by %s (%s)", client, by, record.type)
        return self.records.get_contract(client)

    def get(self, client: str) -> ContractRecord:
        """Return the contract of `client`."""
        return self.records.get_contract(client.strip())

    def list(self) -> list[ContractRecord]:
        """Return every contract."""
        return self.records.list_contracts()

    def update(self, client: str, terms: ContractTerms, by: str) -> ContractRecord:
        """Change the terms given; return the contract as it is now.

        A new type drops the terms the old type had and the new one does not take (a block of
        hours on a time-and-materials contract), unless they are given again. SLA targets are
        replaced severity by severity.
        """
        current = self.records.get_contract(client.strip())
        kind = terms.type or current.type
        changed = replace(
            current,
            type=kind,
            hours_per_period=_kept(
                terms.hours_per_period, current.hours_per_period, kind == BLOCK_HOURS
            ),
            warn_below_hours=_kept(
                terms.warn_below_hours, current.warn_below_hours, kind == BLOCK_HOURS
            ),
            rate=_kept(terms.rate, current.rate, kind == TIME_AND_MATERIALS),
            currency=terms.currency.strip().upper() or current.currency,
            business_hours=_normal(terms.business_hours) or current.business_hours,
            holidays=current.holidays if terms.holidays is None else _holidays(terms.holidays),
            sla={**current.sla, **terms.sla},
            updated_at=self.clock(),
            updated_by=by,
        )
        if changed == replace(current, updated_at=changed.updated_at, updated_by=by):
            raise InvalidArgument(
                f"the contract of {current.client!r} has these terms already: nothing to change"
            )
        check_terms(changed)
        self.records.replace_contract(changed)
        log.info("contract of %s updated by %s", current.client, by)
        return self.records.get_contract(current.client)


def _normal(business_hours: str) -> str:
    return " ".join(business_hours.lower().split())


def _holidays(given: Iterable[str]) -> tuple[str, ...]:
    """Return the dates as stored (sorted, once each); a wrong one is named by check_terms."""
    try:
        return tuple(day.isoformat() for day in parse_holidays(given))
    except InvalidArgument:
        return tuple(given)


def _kept(given: float | None, current: float | None, applies: bool) -> float | None:
    if given is not None:
        return given
    return current if applies else None
