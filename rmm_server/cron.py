"""Five-field cron expressions read as cron reads them, on APScheduler's CronTrigger.

APScheduler 3's `CronTrigger.from_crontab` counts the day of week from Monday = 0, where cron
(and every operator's habit) counts from Sunday = 0 with 7 also Sunday: "0 2 * * 0" would fire
on Mondays. Numbers in the day-of-week field are therefore rewritten to day names, which both
read the same way, before APScheduler sees them. Names and `*` pass through unchanged.
"""

from __future__ import annotations

import re
from datetime import tzinfo

from apscheduler.triggers.cron import CronTrigger

# Index = cron's number (0 and 7 are Sunday).
CRON_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NUMERIC_PART = re.compile(r"^(?:(\*)|(\d+)(?:-(\d+))?)(?:/(\d+))?$")


def cron_weekdays_as_names(field: str) -> str:
    """Return a cron day-of-week field with cron's numbers written as day names.

    Ranges and steps over numbers are expanded into lists ("1-5" → "mon,tue,wed,thu,fri",
    "*/2" → "sun,tue,thu,sat"), since a range of names cannot wrap past Sunday in APScheduler.
    Raise ValueError naming the part when a number is outside 0-7.
    """
    parts = []
    for part in field.split(","):
        match = _NUMERIC_PART.match(part)
        if match is None or (match.group(1) and match.group(4) is None):
            parts.append(part)  # a name, a name range, or a plain "*": the same in both
            continue
        star, first, last, step = match.groups()
        low, high = (0, 6) if star else (int(first), int(last if last is not None else first))
        if last is None and step is not None and not star:
            high = 7  # "1/2": from Monday every second day to the end of the week
        if not (0 <= low <= 7 and 0 <= high <= 7) or low > high:
            raise ValueError(f"day of week {part!r} is outside 0-7 (0 and 7 are Sunday)")
        days = range(low, high + 1, int(step) if step else 1)
        parts.append(",".join(dict.fromkeys(CRON_DAY_NAMES[day] for day in days)))
    return ",".join(dict.fromkeys(",".join(parts).split(",")))


def crontab_trigger(expression: str, timezone: tzinfo) -> CronTrigger:
    """Return the trigger of a 5-field cron expression, weekday numbers counted as cron does.

    Raise ValueError (APScheduler's, or ours for a day of week outside 0-7) when it is not one.
    """
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"wrong number of fields; got {len(fields)}, expected 5")
    minute, hour, day, month, day_of_week = fields
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=cron_weekdays_as_names(day_of_week),
        timezone=timezone,
    )
