"""JQL dates: literals ("2026-01-31", "2026/01/31 14:00"), relative offsets (-7d, 4h, -2w) and the
date functions (now(), startOfDay(), endOfWeek(-1w) ...), all resolved against a `now` passed in.

Dates without a zone are read in UTC (Jira reads them in the searching user's zone); weeks start on
Monday (Jira follows the user's locale).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.routing.jql.syntax import JqlError

# A date expression: a function of the evaluation time.
DateFn = Callable[[datetime], datetime]

_ABSOLUTE = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:[ T](\d{1,2}):(\d{2}))?")
_RELATIVE = re.compile(r"([-+]?)\s*((?:\d+\s*[wdhm]\s*)+)")
_INCREMENT = re.compile(r"([-+]?)\s*(\d+)\s*([yMwdhm])")
_UNIT_PART = re.compile(r"(\d+)\s*([wdhmyM])")
_MINUTES = {"w": 7 * 24 * 60, "d": 24 * 60, "h": 60, "m": 1}


def parse_absolute(text: str) -> datetime | None:
    m = _ABSOLUTE.fullmatch(text.strip())
    if m is None:
        return None
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    hour, minute = (int(m[4]), int(m[5])) if m[4] else (0, 0)
    try:
        return datetime(year, month, day, hour, minute, tzinfo=UTC)
    except ValueError:
        return None


def _relative_minutes(text: str) -> int | None:
    m = _RELATIVE.fullmatch(text.strip())
    if m is None:
        return None
    total = sum(int(n) * _MINUTES[unit] for n, unit in _UNIT_PART.findall(m[2]))
    return -total if m[1] == "-" else total


def literal(text: str, column: int) -> DateFn:
    """A date literal or relative offset; JqlError when it is neither."""
    absolute = parse_absolute(text)
    if absolute is not None:
        return lambda now: absolute
    minutes = _relative_minutes(text)
    if minutes is not None:
        delta = timedelta(minutes=minutes)
        return lambda now: now + delta
    raise JqlError(
        f'"{text}" is not a date: write "2026-01-31", "2026-01-31 14:00", or an offset such as -7d, -2w, 4h',
        column,
    )


def _add(moment: datetime, increment: str | None, column: int) -> datetime:
    if not increment:
        return moment
    m = _INCREMENT.fullmatch(increment.strip())
    if m is None:
        raise JqlError(f'"{increment}" is not an increment such as -1d, +2w, 1M', column)
    n = int(m[2]) * (-1 if m[1] == "-" else 1)
    unit = m[3]
    if unit == "y":
        return _add_months(moment, 12 * n)
    if unit == "M":
        return _add_months(moment, n)
    return moment + timedelta(minutes=n * _MINUTES[unit])


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _day(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _start_of(unit: str, now: datetime) -> datetime:
    day = _day(now)
    if unit == "day":
        return day
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def _end_of(unit: str, now: datetime) -> datetime:
    start = _start_of(unit, now)
    if unit == "day":
        nxt = start + timedelta(days=1)
    elif unit == "week":
        nxt = start + timedelta(weeks=1)
    elif unit == "month":
        nxt = _add_months(start, 1)
    else:
        nxt = start.replace(year=start.year + 1)
    return nxt - timedelta(milliseconds=1)


DATE_FUNCTIONS = frozenset(
    {
        "now",
        *(f"{edge}of{unit}" for edge in ("start", "end") for unit in ("day", "week", "month", "year")),
    }
)


def function(name: str, args: tuple[str, ...], column: int) -> DateFn:
    """now(), startOfDay([inc]) ... endOfYear([inc]); `name` lower-cased."""
    if len(args) > 1 or (name == "now" and args):
        raise JqlError(
            f"{name}() takes {'no argument' if name == 'now' else 'at most one increment'}", column
        )
    increment = args[0] if args else None
    _add(datetime(2000, 1, 1, tzinfo=UTC), increment, column)  # check the increment now
    if name == "now":
        return lambda now: now
    edge, unit = name[: name.index("of")], name[name.index("of") + 2 :]
    if edge == "start":
        return lambda now: _add(_start_of(unit, now), increment, column)
    return lambda now: _add(_end_of(unit, now), increment, column)


def parse_field_date(raw: str) -> datetime | None:
    """A date as Jira writes it in a payload: 2026-01-31T10:00:00.000+0000, or 2026-01-31."""
    raw = raw.strip()
    try:
        if len(raw) == 10:
            return datetime.fromisoformat(raw).replace(tzinfo=UTC)
        if len(raw) >= 5 and raw[-5] in "+-" and raw[-4:].isdigit():
            raw = raw[:-2] + ":" + raw[-2:]  # +0000 -> +00:00 for Python 3.11
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
