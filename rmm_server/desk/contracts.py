"""Contracts: one per client, its type, what it buys and its SLA targets (docs/desk.md).

Every term is checked before anything is written, and every problem is named at once: a
contract is stored whole or not at all.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

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
BUSINESS_HOURS_RE = re.compile(
    r"^(mon|tue|wed|thu|fri|sat|sun)(?:-(mon|tue|wed|thu|fri|sat|sun))?\s+"
    r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$"
)
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """The days (0 = Monday) and the local hours a business-hours SLA clock runs."""

    first_day: int
    last_day: int
    start_minute: int
    end_minute: int


def parse_business_hours(text: str) -> BusinessHours:
    """Parse `mon-fri 08:00-18:00` (in the site's time zone), or raise InvalidArgument."""
    found = BUSINESS_HOURS_RE.match(text.strip().lower())
    if not found:
        raise InvalidArgument(
            f"business hours {text!r} are not understood: write DAY[-DAY] HH:MM-HH:MM, e.g. "
            f"{DEFAULT_BUSINESS_HOURS!r}"
        )
    first, last, h1, m1, h2, m2 = found.groups()
    start, end = int(h1) * 60 + int(m1), int(h2) * 60 + int(m2)
    if end <= start or end > 24 * 60:
        raise InvalidArgument(
            f"business hours {text!r} end at or before they start: the day's end comes after "
            "its start (hours that cross midnight are not supported)"
        )
    first_day = DAYS.index(first)
    last_day = DAYS.index(last) if last else first_day
    return BusinessHours(first_day, last_day, start, end)


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
        parse_business_hours(record.business_hours)
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
            business_hours=(terms.business_hours or DEFAULT_BUSINESS_HOURS).strip().lower(),
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
            business_hours=terms.business_hours.strip().lower() or current.business_hours,
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


def _kept(given: float | None, current: float | None, applies: bool) -> float | None:
    if given is not None:
        return given
    return current if applies else None
