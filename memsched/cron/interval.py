"""A job's expected interval: the longest time between two consecutive fire times of its calendar.

Alerting calls a job late when it has not succeeded within this interval (plus
allowances, :mod:`memsched.late`), so the interval must come from the job's own
calendar: a yearly job's is a year, a weekday job's is the weekend (three days),
``0 0 1,2 * *``'s is the month's long stretch, not its one-day step.

The fire times are the ones systemd uses: the dates come from the same date
patterns the ``OnCalendar=`` values are rendered from
(:func:`memsched.cron.calendar.date_lines`), the times of day from the spec.
The walk covers a window around the given instant (one year before, nine after,
so leap days and weekday/date coincidences are inside it) and is pure
arithmetic: no systemd call, no iteration over every second of a per-second job.

Daylight-saving time: a wall-clock gap grows by the shift at a fall-back fold,
and a fire time inside a spring-forward gap does not happen at all (systemd
skips it), so the interval around that transition spans from the fire before
the gap to the one after it. Both are computed for every transition in the window.
"""

from __future__ import annotations

import bisect
import calendar as _calendar
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

from memsched.cron.calendar import date_lines
from memsched.cron.parse import CronSpec, DaySpec, WeekdaySpec, parse_cron

DAY_S = 86_400
_BEFORE_DAYS = 366
_AFTER_DAYS = 9 * 366


def expected_interval_ms(spec: CronSpec | str, tz: str = "UTC", around: datetime | None = None) -> int | None:
    """Return the longest time (ms) between two consecutive fire times near ``around`` (default: now).

    ``spec`` is a parsed :class:`CronSpec` or an expression. Returns None when the
    calendar fires fewer than twice in the window (e.g. a year field that has run
    out): such a job has no interval to be late by. Raises :class:`CronError` for
    an invalid expression and ``ZoneInfoNotFoundError`` for an unknown zone.
    """
    if isinstance(spec, str):
        spec = parse_cron(spec)
    when = (around or datetime.now(timezone.utc)).astimezone(timezone.utc)
    seconds = _interval_s(spec, tz, when.date().toordinal())
    return None if seconds is None else seconds * 1000


@lru_cache(maxsize=256)
def _interval_s(spec: CronSpec, tz: str, today: int) -> int | None:
    times = _times_of_day(spec)
    days = _matching_days(spec.months, spec.dom, spec.dow, spec.years, today - _BEFORE_DAYS, today + _AFTER_DAYS)
    if not times or not days or (len(days) == 1 and len(times) == 1):
        return None
    longest = _longest_gap(times) if len(times) > 1 else 0
    if len(days) > 1:
        # The longest stretch between fire days, from the last time of one to the first of the next.
        longest = max(longest, _longest_day_gap(days) * DAY_S - (times[-1] - times[0]))
    if tz not in ("UTC", "Etc/UTC", "UTC0"):
        longest = max(longest, _dst_longest(days, times, tz, today - _BEFORE_DAYS, today + _AFTER_DAYS))
    return longest


def _times_of_day(spec: CronSpec) -> list[int]:
    """Every fire second of a day (sorted); at most 86,400 values."""
    return sorted(h * 3600 + m * 60 + s for h in spec.hours for m in spec.minutes for s in spec.seconds)


def _longest_gap(values: list[int]) -> int:
    return max(b - a for a, b in zip(values, values[1:]))


@lru_cache(maxsize=64)
def _longest_day_gap(days: tuple[int, ...]) -> int:
    """The most days between two consecutive fire days (cached: jobs share their date fields)."""
    return max(b - a for a, b in zip(days, days[1:]))


@lru_cache(maxsize=64)
def _matching_days(
    months: frozenset[int], dom: DaySpec | None, dow: WeekdaySpec | None, years: frozenset[int] | None, first: int, last: int
) -> tuple[int, ...]:
    """Return the ordinals of the days in [first, last] a calendar with these date fields fires on.

    Keyed on the date fields alone, so jobs that differ only in their time of day share one walk.
    """
    lines = date_lines(CronSpec("", frozenset({0}), frozenset({0}), frozenset({0}), months, dom, dow, years))
    out: list[int] = []
    for ordinal in range(first, last + 1):
        day = date.fromordinal(ordinal)
        if years is not None and day.year not in years:
            continue
        weekday = (day.weekday() + 1) % 7  # cron numbering: 0 = Sunday
        length = _calendar.monthrange(day.year, day.month)[1]
        for line in lines:
            if day.month not in line.months or (line.weekdays is not None and weekday not in line.weekdays):
                continue
            if line.days is None or (length - day.day + 1 if line.from_end else day.day) in line.days:
                out.append(ordinal)
                break
    return tuple(out)


def _dst_longest(days: tuple[int, ...], times: list[int], tz: str, first: int, last: int) -> int:
    """Return the longest real time between fire times that straddle a transition of ``tz`` (0 if none)."""
    longest = 0
    for tr in _transitions(tz, first, last):
        w0, w1 = tr.wall_window()
        shift = int(abs((tr.after - tr.before).total_seconds()))
        if tr.kind == "gap":
            # Wall times in [w0, w1) do not exist: the fire before w0 is followed by the first at or after w1.
            before, after = _last_before(days, times, w0), _first_at_or_after(days, times, w1)
            if before is not None and after is not None:
                longest = max(longest, after - before - shift)
        else:
            # [w0, w1) happens twice and runs once, on its first pass: the fire before w1 is followed,
            # one shift later than the wall clock says, by the first at or after w1.
            before, after = _last_before(days, times, w1), _first_at_or_after(days, times, w1)
            if before is not None and after is not None:
                longest = max(longest, after - before + shift)
    return longest


@lru_cache(maxsize=16)
def _transitions(tz: str, first: int, last: int) -> tuple:
    """The zone's transitions from the day before ``first`` to two days after ``last`` (ordinals), once per zone."""
    from memsched.cron.zones import transitions

    start = datetime.combine(date.fromordinal(first), datetime.min.time(), timezone.utc) - timedelta(days=1)
    end = datetime.combine(date.fromordinal(last), datetime.min.time(), timezone.utc) + timedelta(days=2)
    return tuple(transitions(tz, start, end, step=timedelta(days=1)))  # ten years: sampled daily


def _wall_seconds(ordinal: int, tod: int) -> int:
    return ordinal * DAY_S + tod


def _split(wall: datetime) -> tuple[int, int]:
    return wall.date().toordinal(), wall.hour * 3600 + wall.minute * 60 + wall.second


def _last_before(days: tuple[int, ...], times: list[int], wall: datetime) -> int | None:
    """The last fire strictly before the naive wall time, as wall seconds (None when outside the window)."""
    ordinal, tod = _split(wall)
    i = bisect.bisect_left(days, ordinal)
    if i < len(days) and days[i] == ordinal:
        j = bisect.bisect_left(times, tod)
        if j > 0:
            return _wall_seconds(ordinal, times[j - 1])
    return _wall_seconds(days[i - 1], times[-1]) if i > 0 else None


def _first_at_or_after(days: tuple[int, ...], times: list[int], wall: datetime) -> int | None:
    """The first fire at or after the naive wall time, as wall seconds (None when outside the window)."""
    ordinal, tod = _split(wall)
    i = bisect.bisect_left(days, ordinal)
    if i < len(days) and days[i] == ordinal:
        j = bisect.bisect_left(times, tod)
        if j < len(times):
            return _wall_seconds(ordinal, times[j])
        i += 1
    return _wall_seconds(days[i], times[0]) if i < len(days) else None
