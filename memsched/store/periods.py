"""TOC periods: bounds, node ids, titles and parents, all in UTC.

Levels, outermost first: year > month > week > day > segment. Each period's bounds
come from the period itself: a day is its UTC calendar day, a week its ISO week
(Monday 00:00 to Sunday 23:59:59.999), a month its calendar month, a year its
calendar year. A period ends 1 ms before the next one begins. Timestamps end at
:data:`MAX_TIMESTAMP_MS` (the last millisecond of 9999, the last instant a
``datetime`` can name): December 9999 and the year 9999 end there, and so does the
last ISO week, 9999-W52, whose Sunday would fall in year 10000.

The tree is strict: a day's parent is its ISO week, a week's parent is the month
that holds its Thursday (so 2024-W05, Jan 29 to Feb 4, is a child of February
2024 while keeping its own bounds), a month's parent is its year. Consequently a
day may sit under a month (and a year) other than its calendar month: Monday
2024-12-30 belongs to 2025-W01, January 2025, 2025.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from memsched.errors import UsageError

LEVELS = ("year", "month", "week", "day", "segment")
PERIOD_LEVELS = ("year", "month", "week", "day")
ROLLUP_ORDER = ("day", "week", "month", "year")  # children before parents
DAY_MS = 86_400_000
_EPOCH = date(1970, 1, 1)
_EPOCH_DATETIME = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_TIMESTAMP_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: the last day a datetime.date can name

MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_NODE_ID = re.compile(
    r"^toc:(?:"
    r"year:(?P<year>\d{4})"
    r"|month:(?P<m_year>\d{4}):(?P<month>\d{2})"
    r"|week:(?P<w_year>\d{4}):W(?P<week>\d{2})"
    r"|day:(?P<day>\d{4}-\d{2}-\d{2})"
    r"|segment:(?P<s_day>\d{4}-\d{2}-\d{2}):(?P<ulid>[0-9A-HJKMNP-TV-Z]{26})"
    r")$"
)


@dataclass(frozen=True)
class Period:
    """One TOC period: its level, node id, title, bounds (ms, inclusive) and parent's node id."""

    level: str
    node_id: str
    title: str
    start_ms: int
    end_ms: int
    parent_id: str | None


def _ms(day: date) -> int:
    return (day - _EPOCH).days * DAY_MS


def _end_before(year: int, month: int) -> int:
    """Return the last millisecond before the first of ``month`` of ``year`` (month 13 = next January).

    Computed from the month's last day rather than from the following first day,
    which for December 9999 would be a date Python cannot represent.
    """
    if month == 13:
        year, month = year + 1, 1
    if month == 1:
        return _ms(date(year - 1, 12, 31)) + DAY_MS - 1
    return _ms(date(year, month, 1) - timedelta(days=1)) + DAY_MS - 1


def day_number(ts_ms: int) -> int:
    """Return the UTC day (days since 1970-01-01) holding ``ts_ms``."""
    return ts_ms // DAY_MS


def utc_datetime(ts_ms: int) -> datetime:
    """Return the UTC datetime of ``ts_ms`` exactly (``fromtimestamp(ms / 1000)`` goes through a float and can lose the last millisecond)."""
    return _EPOCH_DATETIME + timedelta(milliseconds=ts_ms)


def date_of_day_number(day: int) -> date:
    """Return the calendar date of a day number."""
    return _EPOCH + timedelta(days=day)


def utc_date(ts_ms: int) -> date:
    """Return the UTC calendar date holding ``ts_ms``."""
    return date_of_day_number(day_number(ts_ms))


def day_period(day: date) -> Period:
    """Return the day period of ``day``; its parent is the ISO week holding it."""
    iso_year, iso_week, _ = day.isocalendar()
    start = _ms(day)
    return Period(
        "day",
        f"toc:day:{day.isoformat()}",
        f"{WEEKDAY_NAMES[day.weekday()]}, {MONTH_NAMES[day.month - 1]} {day.day}, {day.year}",
        start,
        start + DAY_MS - 1,
        week_id(iso_year, iso_week),
    )


def week_id(iso_year: int, iso_week: int) -> str:
    """Return the node id of an ISO week, e.g. ``toc:week:2024:W03``."""
    return f"toc:week:{iso_year:04d}:W{iso_week:02d}"


def week_period(iso_year: int, iso_week: int) -> Period:
    """Return an ISO week's period; its parent is the month holding its Thursday.

    Raises ValueError for a week the ISO year does not have.
    """
    monday = date.fromisocalendar(iso_year, iso_week, 1)
    thursday = monday + timedelta(days=3)
    start = _ms(monday)
    return Period(
        "week",
        week_id(iso_year, iso_week),
        f"Week {iso_week} of {iso_year}",
        start,
        min(start + 7 * DAY_MS - 1, MAX_TIMESTAMP_MS),
        month_id(thursday.year, thursday.month),
    )


def month_id(year: int, month: int) -> str:
    """Return the node id of a month, e.g. ``toc:month:2024:01``."""
    return f"toc:month:{year:04d}:{month:02d}"


def month_period(year: int, month: int) -> Period:
    """Return a calendar month's period; its parent is its year. Raises ValueError for a month that does not exist."""
    start = _ms(date(year, month, 1))  # first: raises ValueError for a month that does not exist
    return Period(
        "month",
        month_id(year, month),
        f"{MONTH_NAMES[month - 1]} {year}",
        start,
        _end_before(year, month + 1),
        f"toc:year:{year:04d}",
    )


def year_period(year: int) -> Period:
    """Return a calendar year's period (no parent)."""
    return Period("year", f"toc:year:{year:04d}", f"{year}", _ms(date(year, 1, 1)), _end_before(year, 13), None)


def parent_of(period: Period) -> Period | None:
    """Return the parent period of a period (None for a year)."""
    if period.parent_id is None:
        return None
    return period_of_node_id(period.parent_id)


def chain_for_day(day: date) -> list[Period]:
    """Return [day, week, month, year] periods for ``day``, each the parent of the one before."""
    chain = [day_period(day)]
    while (parent := parent_of(chain[-1])) is not None:
        chain.append(parent)
    return chain


def segment_node_id(day: date, first_event_id: str) -> str:
    """Return a segment's node id: ``toc:segment:<day>:<its first event's ULID>``."""
    return f"toc:segment:{day.isoformat()}:{first_event_id}"


def segment_title(start_ms: int) -> str:
    """Return a segment's title from its start, e.g. "January 15, 2024 at 14:30" (UTC)."""
    when = utc_datetime(start_ms)
    return f"{MONTH_NAMES[when.month - 1]} {when.day}, {when.year} at {when:%H:%M}"


def period_of_node_id(node_id: str) -> Period:
    """Return the period a year/month/week/day node id names.

    Raises :class:`UsageError` for a malformed id, an impossible date, or a segment id
    (a segment's bounds are its events', not a calendar's).
    """
    match = _NODE_ID.match(node_id)
    if match is None or match["ulid"]:
        raise UsageError(f"{node_id!r} is not a period node id (expected e.g. toc:year:2024, toc:month:2024:01, toc:week:2024:W03, toc:day:2024-01-15)")
    try:
        if match["year"]:
            return year_period(int(match["year"]))
        if match["month"]:
            return month_period(int(match["m_year"]), int(match["month"]))
        if match["week"]:
            return week_period(int(match["w_year"]), int(match["week"]))
        return day_period(date.fromisoformat(match["day"]))
    except ValueError:
        raise UsageError(f"{node_id!r} names a period that does not exist") from None


def check_node_id(node_id: str) -> str:
    """Return the level of a well-formed node id; raise :class:`UsageError` otherwise."""
    match = _NODE_ID.match(node_id)
    if match is None:
        raise UsageError(
            f"{node_id!r} is not a TOC node id (expected e.g. toc:year:2024, toc:month:2024:01, "
            "toc:week:2024:W03, toc:day:2024-01-15, toc:segment:2024-01-15:<ULID>)"
        )
    return node_id.split(":", 2)[1]
