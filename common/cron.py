"""Cron expressions (five fields, UTC) for workflow schedules: parsed strictly, ticks computed.

    minute hour day-of-month month day-of-week
    "0 3 * * *"  "*/15 * * * 1-5"  "30 2 1,15 * *"  "0 0 * * sun"  "@daily"

Each field is ``*``, a number, a range ``a-b``, any of these with a step
(``*/15``, ``1-30/5``, ``5/10``), or a comma list of them; months and days of
the week also take English three-letter names, and day of week 7 is Sunday like
0. As in Vixie cron, when both day fields are restricted a day matches if
either does. ``@hourly``, ``@daily`` (``@midnight``), ``@weekly``,
``@monthly`` and ``@yearly`` (``@annually``) stand for the usual lines.

``latest(t)`` is the last tick at or before ``t``: a scheduler that wakes up
after an outage runs that one tick, not every tick it missed.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from common.errors import SolsticeError

_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
_MONTHS = {name: n for n, name in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                               "nov", "dec"), start=1)}
_DAYS = {name: n for n, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (name, low, high, names)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}), ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS))
SEARCH_DAYS = 366 * 8  # a day matching month and day fields recurs within 8 years (Feb 29 on a weekday: 28 in theory,
# but with OR semantics a restricted day of week matches every week)


class CronError(SolsticeError):
    """A cron expression that is not valid; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed expression: the allowed values of each field."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month is *
    any_weekday: bool  # day of week is *

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return dow
        if self.any_weekday:
            return dom
        return dom or dow

    def latest(self, at: float) -> float | None:
        """The last tick at or before unix time ``at`` (None if there is none within ``SEARCH_DAYS``)."""
        moment = datetime.fromtimestamp(at, UTC)
        day = moment.date()
        for n in range(SEARCH_DAYS):
            if self.day_matches(day):
                limit = (moment.hour, moment.minute) if n == 0 else (23, 59)
                best = max(((h, m) for h in self.hours for m in self.minutes if (h, m) <= limit), default=None)
                if best is not None:
                    return _epoch(day, *best)
            day -= timedelta(days=1)
        return None

    def next(self, after: float) -> float | None:
        """The first tick strictly after unix time ``after`` (None if there is none within ``SEARCH_DAYS``)."""
        moment = datetime.fromtimestamp(after, UTC)
        day = moment.date()
        for n in range(SEARCH_DAYS):
            if self.day_matches(day):
                floor = (moment.hour, moment.minute) if n == 0 else (-1, -1)
                best = min(((h, m) for h in self.hours for m in self.minutes if (h, m) > floor), default=None)
                if best is not None:
                    return _epoch(day, *best)
            day += timedelta(days=1)
        return None


def _epoch(day: date, hour: int, minute: int) -> float:
    return calendar.timegm((day.year, day.month, day.day, hour, minute, 0))


def parse_cron(text: str) -> Cron:
    """``text`` as a ``Cron``; ``CronError`` saying what is wrong (and in which field)."""
    line = _MACROS.get(text.strip().lower(), text) if text.strip().startswith("@") else text
    if line.strip().startswith("@"):
        raise CronError(f"unknown macro {text.strip()!r} (known: {', '.join(_MACROS)})")
    parts = line.split()
    if len(parts) != 5:
        raise CronError(f"has {len(parts)} field{'s' if len(parts) != 1 else ''}; cron takes 5: "
                        "minute hour day-of-month month day-of-week")
    values = [_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(0 if d == 7 else d for d in values[4])
    cron = Cron(text, tuple(sorted(values[0])), tuple(sorted(values[1])), frozenset(values[2]), frozenset(values[3]),
                weekdays, parts[2] == "*", parts[4] == "*")
    if not any(cron.day_matches(date(year, month, day)) for year in (2024, 2025, 2026, 2027)
               for month in cron.months for day in range(1, calendar.monthrange(year, month)[1] + 1)):
        raise CronError("never fires (no month has such a day)")
    return cron


def _field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    out: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"{name} field {text!r} has an empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name} field {text!r}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _value(a, name, low, high, names), _value(b, name, low, high, names)
            if first > last:
                raise CronError(f"{name} field {text!r}: range {base!r} runs backwards")
        else:
            first = _value(base, name, low, high, names)
            last = high if slash else first
        out.update(range(first, last + 1, step))
    return out


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        raise CronError(f"{name} {text!r} is not a number" + (" or a name" if names else ""))
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"{name} {value} is out of range {low}-{high}")
    return value
