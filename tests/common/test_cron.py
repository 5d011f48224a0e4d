"""Cron expressions: fields, names, steps, day-field OR, the latest tick and the next one (UTC)."""

from __future__ import annotations

import calendar

import pytest

from common.cron import CronError, parse_cron


def at(text: str) -> float:
    """``"2026-12-07 03:00"`` (UTC) as unix time."""
    day, clock = text.split()
    y, mo, d = map(int, day.split("-"))
    h, mi = map(int, clock.split(":"))
    return calendar.timegm((y, mo, d, h, mi, 0))


@pytest.mark.parametrize(("expr", "now", "latest", "following"), [
    ("0 3 * * *", "2026-12-07 02:59", "2026-12-06 03:00", "2026-12-07 03:00"),
    ("0 3 * * *", "2026-12-07 03:00", "2026-12-07 03:00", "2026-12-08 03:00"),
    ("*/15 9-17 * * mon-fri", "2026-12-05 12:00", "2026-12-04 17:45", "2026-12-07 09:00"),  # a Saturday
    ("30 2 1,15 * *", "2026-12-10 00:00", "2026-12-01 02:30", "2026-12-15 02:30"),
    ("0 0 * * 7", "2026-12-07 00:00", "2026-12-06 00:00", "2026-12-13 00:00"),  # 7 is Sunday
    ("0 0 13 * fri", "2026-12-10 00:00", "2026-12-04 00:00", "2026-12-11 00:00"),  # either day field matches
    ("0 0 29 feb *", "2026-12-07 00:00", "2024-02-29 00:00", "2028-02-29 00:00"),
    ("@hourly", "2026-12-07 10:30", "2026-12-07 10:00", "2026-12-07 11:00"),
    ("5/20 * * * *", "2026-12-07 10:30", "2026-12-07 10:25", "2026-12-07 10:45"),
])
def test_latest_and_next_tick(expr: str, now: str, latest: str, following: str):
    cron = parse_cron(expr)
    assert cron.latest(at(now)) == at(latest)
    assert cron.next(at(now)) == at(following)


@pytest.mark.parametrize(("expr", "message"), [
    ("0 3 * *", "has 4 fields; cron takes 5: minute hour day-of-month month day-of-week"),
    ("60 * * * *", "minute 60 is out of range 0-59"),
    ("0 0 0 * *", "day of month 0 is out of range 1-31"),
    ("0 0 * 13 *", "month 13 is out of range 1-12"),
    ("0 0 * * funday", "day of week 'funday' is not a number or a name"),
    ("*/0 * * * *", "minute field '*/0': step '0' must be a positive number"),
    ("10-5 * * * *", "minute field '10-5': range '10-5' runs backwards"),
    ("1,,2 * * * *", "minute field '1,,2' has an empty list item"),
    ("0 0 31 4 *", "never fires (no month has such a day)"),
    ("@often", "unknown macro '@often' (known: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)"),
])
def test_invalid_expressions_say_which_field(expr: str, message: str):
    with pytest.raises(CronError) as caught:
        parse_cron(expr)
    assert str(caught.value) == message
