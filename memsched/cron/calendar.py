"""Translate a :class:`CronSpec` into systemd ``OnCalendar=`` values.

systemd's calendar syntax is ``[WEEKDAYS] YEAR-MONTH-DAY HOUR:MINUTE:SECOND [TZ]``
where the weekday and the date must *both* match. Cron's day-of-month OR
day-of-week is therefore emitted as several lines (a timer elapses at the
union of its ``OnCalendar=`` lines, and coinciding elapses run once):

* the day-of-month branch: plain days (``*-*-01,15``), last days counted from
  the end with ``~`` (``L`` -> ``~01``, ``L-n`` -> ``~(n+1)``), and the Quartz
  weekday words expanded into weekday-and-date lines (``nW``, ``LW``);
* the day-of-week branch: weekdays (``Mon..Fri *-*-*``), the n-th weekday as
  a 7-day window (``Mon *-*-08..14``), the last weekday as the last 7 days
  (``Fri *-*~01..07``).

Lines that differ only in one component are merged, so the usual case is one
line per branch.
"""

from __future__ import annotations

from dataclasses import dataclass

from memsched.cron.parse import CronSpec, DaySpec, WeekdaySpec

WEEKDAY_NAMES = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
_ISO_ORDER = [1, 2, 3, 4, 5, 6, 0]  # Monday first, as systemd's ranges must run
_WORKDAYS = frozenset({1, 2, 3, 4, 5})

_MONTHS_31 = frozenset({1, 3, 5, 7, 8, 10, 12})
_MONTHS_30 = frozenset({4, 6, 9, 11})
_FEBRUARY = frozenset({2})


@dataclass(frozen=True)
class _DateLine:
    """One date pattern: weekdays (None = any), months, and days from the start or the end."""

    weekdays: frozenset[int] | None
    months: frozenset[int]
    from_end: bool
    days: frozenset[int] | None  # None = any day


def to_on_calendar(spec: CronSpec, timezone: str) -> list[str]:
    """Return the ``OnCalendar=`` values that fire exactly when ``spec`` does.

    Each value carries ``timezone`` as its suffix. The values are deterministic
    for a given spec (same input, same text), so rendered units are stable.
    """
    time = ":".join(
        (
            render_values(spec.hours, 0, 23),
            render_values(spec.minutes, 0, 59),
            render_values(spec.seconds, 0, 59),
        )
    )
    year = "*" if spec.years is None else render_values(spec.years, 1970, 2099, width=4)
    result = []
    for line in date_lines(spec):
        date = f"{year}-{render_values(line.months, 1, 12)}"
        date += ("~" if line.from_end else "-") + (
            "*" if line.days is None else render_values(line.days, 1, 31)
        )
        weekday = "" if line.weekdays is None else render_weekdays(line.weekdays) + " "
        result.append(f"{weekday}{date} {time} {timezone}")
    return result


def date_lines(spec: CronSpec) -> list[_DateLine]:
    """Return the date patterns of ``spec``, merged: a date fires when any line matches it.

    The same patterns the ``OnCalendar=`` values are rendered from, so code that walks
    dates with them (the expected interval of :mod:`memsched.cron.interval`) sees the
    days systemd fires on.
    """
    lines: list[_DateLine] = []
    if spec.dom is None and spec.dow is None:
        lines.append(_DateLine(None, spec.months, False, None))
    if spec.dom is not None:
        lines.extend(_dom_lines(spec.dom, spec.months))
    if spec.dow is not None:
        lines.extend(_dow_lines(spec.dow, spec.months))
    return _merge(lines)


def _dom_lines(dom: DaySpec, months: frozenset[int]) -> list[_DateLine]:
    lines = []
    if dom.days:
        lines.append(_DateLine(None, months, False, dom.days))
    if dom.last_offsets:
        lines.append(_DateLine(None, months, True, frozenset(n + 1 for n in dom.last_offsets)))
    if dom.last_weekday:
        lines.extend(_last_weekday_lines(months))
    for day in sorted(dom.nearest_weekdays):
        lines.extend(_nearest_weekday_lines(day, months))
    return lines


def _last_weekday_lines(months: frozenset[int]) -> list[_DateLine]:
    """LW: the last day if it is a workday, else the Friday before it (day ~2 or ~3)."""
    if not months:
        return []
    return [
        _DateLine(_WORKDAYS, months, True, frozenset({1})),
        _DateLine(frozenset({5}), months, True, frozenset({2, 3})),
    ]


def _nearest_weekday_lines(day: int, months: frozenset[int]) -> list[_DateLine]:
    """nW: the workday nearest ``day``, never leaving the month.

    A day past the end of a short month means that month's last day (croniter's
    rule), which makes nW equal to LW there. February needs care at 28, which is
    the last day only in common years.
    """
    lines: list[_DateLine] = []
    for group, length in ((_MONTHS_31, 31), (_MONTHS_30, 30)):
        chosen = months & group
        if not chosen:
            continue
        if day < length:
            lines.extend(_nearest_weekday_inside(day, chosen))
        else:
            lines.extend(_last_weekday_lines(chosen))
    if 2 in months:
        if day <= 27:
            lines.extend(_nearest_weekday_inside(day, _FEBRUARY))
        elif day == 28:
            # Common years: 28 is the last day (a Sunday 28th moves to Friday 26th = ~03).
            # Leap years: a Sunday 28th moves to Monday 29th. A Saturday 28th moves to
            # Friday 27th either way, and in leap years Friday ~03 is that same 27th.
            lines.extend(
                [
                    _DateLine(_WORKDAYS, _FEBRUARY, False, frozenset({28})),
                    _DateLine(frozenset({5}), _FEBRUARY, False, frozenset({27})),
                    _DateLine(frozenset({1}), _FEBRUARY, False, frozenset({29})),
                    _DateLine(frozenset({5}), _FEBRUARY, True, frozenset({3})),
                ]
            )
        else:
            lines.extend(_last_weekday_lines(_FEBRUARY))
    return lines


def _nearest_weekday_inside(day: int, months: frozenset[int]) -> list[_DateLine]:
    """nW for a day that is never the last of these months."""
    lines = [_DateLine(_WORKDAYS, months, False, frozenset({day}))]
    if day > 1:
        # Saturday the n-th moves back to Friday n-1.
        lines.append(_DateLine(frozenset({5}), months, False, frozenset({day - 1})))
    else:
        # Saturday the 1st cannot move back, so it moves to Monday the 3rd.
        lines.append(_DateLine(frozenset({1}), months, False, frozenset({3})))
    # Sunday the n-th moves forward to Monday n+1 (which exists: n is not the last day).
    lines.append(_DateLine(frozenset({1}), months, False, frozenset({day + 1})))
    return lines


def _dow_lines(dow: WeekdaySpec, months: frozenset[int]) -> list[_DateLine]:
    lines = []
    if dow.weekdays:
        lines.append(_DateLine(dow.weekdays, months, False, None))
    for weekday, n in sorted(dow.nth):
        first = 7 * (n - 1) + 1
        lines.append(_DateLine(frozenset({weekday}), months, False, frozenset(range(first, min(first + 6, 31) + 1))))
    for weekday in sorted(dow.last):
        lines.append(_DateLine(frozenset({weekday}), months, True, frozenset(range(1, 8))))
    return lines


def _merge(lines: list[_DateLine]) -> list[_DateLine]:
    """Merge lines that differ only in their days, then only in their months; drop duplicates."""
    changed = True
    current = list(dict.fromkeys(lines))
    while changed:
        changed = False
        for key_of, combine in (
            (lambda line: (line.weekdays, line.months, line.from_end, line.days is None), _union_days),
            (lambda line: (line.weekdays, line.from_end, line.days), _union_months),
        ):
            grouped: dict[object, _DateLine] = {}
            for line in current:
                key = key_of(line)
                grouped[key] = combine(grouped[key], line) if key in grouped else line
            merged = list(grouped.values())
            if len(merged) < len(current):
                current, changed = merged, True
    return current


def _union_days(a: _DateLine, b: _DateLine) -> _DateLine:
    days = None if a.days is None or b.days is None else a.days | b.days
    return _DateLine(a.weekdays, a.months, a.from_end, days)


def _union_months(a: _DateLine, b: _DateLine) -> _DateLine:
    return _DateLine(a.weekdays, a.months | b.months, a.from_end, a.days)


def render_values(values: frozenset[int], lo: int, hi: int, width: int = 2) -> str:
    """Render a set of values as a systemd calendar component.

    Returns ``*`` for the full range, ``a..b/n`` for an arithmetic
    progression of three or more, else runs (``a..b``) and single values.
    """
    ordered = sorted(values)
    if ordered == list(range(lo, hi + 1)):
        return "*"

    def fmt(v: int) -> str:
        return f"{v:0{width}d}"

    if len(ordered) >= 3:
        step = ordered[1] - ordered[0]
        if step > 1 and all(b - a == step for a, b in zip(ordered, ordered[1:])):
            # Always with an explicit end: systemd 252 mis-evaluates the open form "a/n"
            # in a time zone at local midnight (it skips the start value, seen with
            # "*:00/7:00 America/New_York" after 23:56); "a..b/n" is exact.
            return f"{fmt(ordered[0])}..{fmt(ordered[-1])}/{step}"
    parts = []
    for start, end in _runs(ordered):
        if end - start >= 2:
            parts.append(f"{fmt(start)}..{fmt(end)}")
        else:
            parts.extend(fmt(v) for v in range(start, end + 1))
    return ",".join(parts)


def render_weekdays(weekdays: frozenset[int]) -> str:
    """Render weekdays (0 = Sunday) Monday-first, with ``..`` for runs of three or more."""
    positions = sorted(_ISO_ORDER.index(d) for d in weekdays)
    parts = []
    for start, end in _runs(positions):
        names = [WEEKDAY_NAMES[_ISO_ORDER[p]] for p in range(start, end + 1)]
        parts.append(f"{names[0]}..{names[-1]}" if len(names) >= 3 else ",".join(names))
    return ",".join(parts)


def _runs(ordered: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for v in ordered:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs
