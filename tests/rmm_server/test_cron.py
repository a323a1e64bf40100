"""Cron expressions read as cron reads them (rmm_server/cron.py), not as APScheduler's crontab."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from rmm_server.cron import cron_weekdays_as_names, crontab_trigger
from rmm_server.storage.suppressions import MaintenanceWindow

MONDAY = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # a Monday


def next_weekday(expression: str) -> str:
    fire: datetime | None = crontab_trigger(expression, ZoneInfo("UTC")).get_next_fire_time(
        None, MONDAY
    )
    assert fire is not None
    return fire.strftime("%a")


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("0", "sun"),
        ("7", "sun"),
        ("6", "sat"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("0,6", "sun,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("1-5/2", "mon,wed,fri"),
        ("1/3", "mon,thu,sun"),
        ("sat", "sat"),
        ("mon-fri", "mon-fri"),
        ("*", "*"),
        ("0,7", "sun"),
    ],
)
def test_weekday_numbers_become_the_names_cron_means(field: str, names: str) -> None:
    assert cron_weekdays_as_names(field) == names


@pytest.mark.parametrize(("expression", "day"), [("0 2 * * 0", "Sun"), ("0 2 * * 6", "Sat"),
                                                  ("0 2 * * 7", "Sun"), ("0 2 * * 2", "Tue"),
                                                  ("0 2 * * sun", "Sun")])  # fmt: skip
def test_a_trigger_fires_on_the_day_cron_would(expression: str, day: str) -> None:
    assert next_weekday(expression) == day


@pytest.mark.parametrize("expression", ["0 2 * * 8", "0 2 * * 3-1", "0 2 * *", "0 2 * * * *"])
def test_what_is_not_a_cron_expression_is_refused(expression: str) -> None:
    with pytest.raises(ValueError):
        crontab_trigger(expression, ZoneInfo("UTC"))


def test_a_maintenance_window_on_sundays_opens_on_sunday() -> None:
    # APScheduler's own crontab reading counts Monday as 0: this window opened on Mondays.
    window = MaintenanceWindow.create(
        id="w", name="sunday", duration_seconds=3600, timezone="UTC", created_by="t",
        created_at=0.0, schedule="0 2 * * 0",
    )  # fmt: skip
    start = window.next_start(MONDAY.timestamp())
    assert start is not None
    assert datetime.fromtimestamp(start, UTC).strftime("%a %H:%M") == "Sun 02:00"
