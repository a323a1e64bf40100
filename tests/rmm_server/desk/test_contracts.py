"""Contracts on SQLite and PostgreSQL: one per client, each type's terms, SLA targets per
severity, every wrong term named at once and nothing written."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import date

import pytest

from rmm_common.errors import AlreadyExists, InvalidArgument, NotFound
from rmm_server.cluster import Cluster
from rmm_server.desk.contracts import Contracts, ContractTerms, parse_business_hours
from rmm_server.desk.places import Places
from rmm_server.fleet import Fleet
from rmm_server.storage import Store, open_store
from rmm_server.storage.desk import SlaTarget

HOUR = 3600.0


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    Places(store, Fleet(), Cluster("local")).create_client("acme", "admin")
    yield store
    store.close()


@pytest.fixture
def contracts(store: Store) -> Contracts:
    return Contracts(store, clock=lambda: 1_800_000_000.0)


def block_hours(**changes: object) -> ContractTerms:
    terms = ContractTerms(
        type="block-hours",
        hours_per_period=20,
        warn_below_hours=5,
        sla={
            "critical": SlaTarget(0.25 * HOUR, 4 * HOUR, "24x7"),
            "warning": SlaTarget(HOUR, 16 * HOUR, "business"),
        },
    )
    return replace(terms, **changes)  # type: ignore[arg-type]


def test_a_block_hours_contract_is_stored_whole_and_read_back(contracts: Contracts) -> None:
    created = contracts.create("acme", block_hours(), "boss")
    got = contracts.get("acme")
    assert got == created
    assert (got.type, got.hours_per_period, got.warn_below_hours, got.rate) == (
        "block-hours", 20, 5, None,
    )  # fmt: skip
    assert (got.period, got.currency, got.business_hours) == ("month", "USD", "mon-fri 08:00-18:00")
    assert got.sla == {
        "critical": SlaTarget(900.0, 14400.0, "24x7"),
        "warning": SlaTarget(3600.0, 57600.0, "business"),
    }
    assert [c.client for c in contracts.list()] == ["acme"]
    with pytest.raises(AlreadyExists, match="has a contract already: change it with"):
        contracts.create("acme", block_hours(), "boss")


def test_each_type_takes_only_its_own_terms(contracts: Contracts) -> None:
    with pytest.raises(InvalidArgument, match="needs its hourly rate"):
        contracts.create("acme", ContractTerms(type="time-and-materials"), "boss")
    with pytest.raises(InvalidArgument, match="belong to block-hours contracts, not managed"):
        contracts.create("acme", ContractTerms(type="managed", hours_per_period=10), "boss")
    with pytest.raises(InvalidArgument, match="rate belongs to time-and-materials"):
        contracts.create("acme", block_hours(rate=90.0), "boss")
    with pytest.raises(InvalidArgument, match="give its type"):
        contracts.create("acme", ContractTerms(), "boss")
    made = contracts.create(
        "acme", ContractTerms(type="time-and-materials", rate=120, currency="eur"), "boss"
    )
    assert (made.rate, made.currency, made.hours_per_period) == (120, "EUR", None)


def test_bad_terms_are_all_named_and_nothing_is_written(contracts: Contracts, store: Store) -> None:
    bad = block_hours(
        hours_per_period=-4.0,
        sla={
            "critical": SlaTarget(4 * HOUR, HOUR, "24x7"),
            "urgent": SlaTarget(HOUR, 2 * HOUR, "sometimes"),
        },
        business_hours="weekdays 9-5",
    )
    with pytest.raises(InvalidArgument) as refused:
        contracts.create("acme", bad, "boss")
    message = str(refused.value)
    for part in (
        "contract of client 'acme' not saved",
        "hours per period is negative",
        "time to resolve is shorter than the time to acknowledge",
        "cannot be met by its own definition",
        "'urgent': unknown severity",
        "clock 'sometimes' is not one of 24x7, business",
        "--business-hours 'weekdays 9-5': 'weekdays' is not a day",
    ):
        assert part in message, message
    with pytest.raises(NotFound, match="client 'acme' has no contract: create one"):
        contracts.get("acme")
    with pytest.raises(NotFound, match="unknown client 'initech'"):
        contracts.create("initech", block_hours(), "boss")
    with pytest.raises(InvalidArgument, match=r"warning threshold \(25 h\) must be below"):
        contracts.create("acme", block_hours(warn_below_hours=25.0), "boss")


def test_an_update_changes_only_what_is_given_and_checks_the_whole(contracts: Contracts) -> None:
    contracts.create("acme", block_hours(), "boss")
    more = contracts.update(
        "acme",
        ContractTerms(hours_per_period=40, sla={"info": SlaTarget(HOUR, 48 * HOUR, "business")}),
        "ceo",
    )
    assert (more.hours_per_period, more.warn_below_hours, more.updated_by) == (40, 5, "ceo")
    assert sorted(more.sla) == ["critical", "info", "warning"]
    with pytest.raises(InvalidArgument, match="resolve is shorter"):
        contracts.update(
            "acme", ContractTerms(sla={"critical": SlaTarget(HOUR, 60.0, "24x7")}), "ceo"
        )
    assert contracts.get("acme").sla["critical"] == SlaTarget(900.0, 14400.0, "24x7")
    # A new type drops the old type's terms: block hours do not linger on T&M.
    tm = contracts.update("acme", ContractTerms(type="time-and-materials", rate=95), "ceo")
    assert (tm.type, tm.rate, tm.hours_per_period, tm.warn_below_hours) == (
        "time-and-materials", 95, None, None,
    )  # fmt: skip
    with pytest.raises(InvalidArgument, match="nothing to change"):
        contracts.update("acme", ContractTerms(rate=95), "ceo")


def test_business_hours_parse() -> None:
    hours = parse_business_hours("Mon-Fri 08:00-18:00")
    assert hours.week == ((((480, 1080),),) * 5) + ((), ())
    assert parse_business_hours("sat 10:00-24:00").week[5] == ((600, 1440),)
    with pytest.raises(InvalidArgument, match="ends at or before it starts"):
        parse_business_hours("mon-fri 18:00-08:00")


def test_business_hours_per_weekday_with_holidays() -> None:
    hours = parse_business_hours(
        "mon-thu 08:00-12:00,13:00-17:00; fri 08:00-14:00;  SAT 09:00-12:00", ["2026-12-25"]
    )
    assert hours.week[0] == hours.week[3] == ((480, 720), (780, 1020))
    assert hours.week[4] == ((480, 840),) and hours.week[5] == ((540, 720),)
    assert hours.week[6] == ()
    assert hours.ranges(date(2026, 12, 25)) == ()  # a Friday, but a holiday
    assert hours.ranges(date(2026, 12, 18)) == ((480, 840),)
    # Lists of days, and a range over the weekend.
    assert parse_business_hours("mon,wed 09:00-10:00").week[2] == ((540, 600),)
    wrapped = parse_business_hours("fri-mon 10:00-11:00").week
    assert [bool(day) for day in wrapped] == [True, False, False, False, True, True, True]


@pytest.mark.parametrize(
    ("text", "holidays", "message"),
    [
        ("", [], "--business-hours is empty"),
        ("mon-fri", [], "--business-hours 'mon-fri' is not understood"),
        ("mon-fry 08:00-18:00", [], "'mon-fry' is not a day"),
        ("mon 8-18", [], "'8-18' is not HH:MM-HH:MM"),
        ("mon 08:00-18:00; mon 19:00-20:00", [], "mon is given twice"),
        ("mon 08:00-12:00,11:00-13:00", [], "its hours overlap"),
        ("mon 22:00-02:00", [], "hours that cross midnight are not supported"),
        ("mon 08:00-18:00", ["2026-02-30"], "--holiday '2026-02-30' is not a date"),
        ("mon 08:00-18:00", ["25.12.2026"], "write YYYY-MM-DD"),
    ],
)
def test_business_hours_errors_name_the_field(text: str, holidays: list[str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        parse_business_hours(text, holidays)


def test_holidays_are_stored_replaced_and_cleared(contracts: Contracts) -> None:
    created = contracts.create(
        "acme",
        block_hours(
            business_hours="Mon-Fri 08:00-18:00;sat 09:00-12:00",
            holidays=("2026-12-26", "2026-12-25", "2026-12-25"),
        ),
        "ceo",
    )
    assert created.business_hours == "mon-fri 08:00-18:00;sat 09:00-12:00"
    assert created.holidays == ("2026-12-25", "2026-12-26")  # sorted, once each
    assert contracts.get("acme").holidays == ("2026-12-25", "2026-12-26")
    replaced = contracts.update("acme", ContractTerms(holidays=("2027-01-01",)), "ceo")
    assert replaced.holidays == ("2027-01-01",)
    kept = contracts.update("acme", ContractTerms(rate=None, hours_per_period=30), "ceo")
    assert kept.holidays == ("2027-01-01",)  # not given: kept
    assert contracts.update("acme", ContractTerms(holidays=()), "ceo").holidays == ()
    with pytest.raises(InvalidArgument, match=r"not saved: --holiday '2027-13-01' is not a date"):
        contracts.update("acme", ContractTerms(holidays=("2027-13-01",)), "ceo")
    with pytest.raises(InvalidArgument, match="mon is given twice"):
        contracts.update(
            "acme", ContractTerms(business_hours="mon 08:00-09:00; mon-fri 10:00-11:00"), "ceo"
        )
    assert contracts.get("acme").holidays == ()  # nothing half written
