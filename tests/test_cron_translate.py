"""Golden tests: every accepted construct and the default jobs translate to the expected OnCalendar= values,
and systemd (systemd-analyze calendar) accepts each value and fires on the expected days."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from memsched.config.load import parse_config
from memsched.cron.calendar import to_on_calendar
from memsched.cron.parse import parse_cron
from memsched.errors import CronError
from memsched.systemd.analyze import calendar_next, normalize_calendar

GOLDEN = [
    # default jobs (6 fields, seconds first)
    ("0 0 1 * * *", ["*-*-* 01:00:00 UTC"]),
    ("0 0 2 * * 0", ["Sun *-*-* 02:00:00 UTC"]),
    ("0 0 3 1 * *", ["*-*-01 03:00:00 UTC"]),
    ("0 0 4 * * 0", ["Sun *-*-* 04:00:00 UTC"]),
    ("0 0 5 1 1 *", ["*-01-01 05:00:00 UTC"]),
    # 5 fields, and OR of day-of-month and day-of-week
    ("0 0 1-7 * 1", ["*-*-01..07 00:00:00 UTC", "Mon *-*-* 00:00:00 UTC"]),
    ("30 4 1,15 * 5", ["*-*-01,15 04:30:00 UTC", "Fri *-*-* 04:30:00 UTC"]),
    ("0 12 * JAN-MAR MON-FRI", ["Mon..Fri *-01..03-* 12:00:00 UTC"]),
    ("0 0 ? * 7", ["Sun *-*-* 00:00:00 UTC"]),
    ("0 0 * * 0,7", ["Sun *-*-* 00:00:00 UTC"]),
    ("0 0 * * 5-7", ["Fri..Sun *-*-* 00:00:00 UTC"]),
    ("0 0 * * sat,sun", ["Sat,Sun *-*-* 00:00:00 UTC"]),
    # steps
    ("*/15 * * * *", ["*-*-* *:00..45/15:00 UTC"]),
    ("*/7 * * * *", ["*-*-* *:00..56/7:00 UTC"]),
    ("5/20 * * * *", ["*-*-* *:05..45/20:00 UTC"]),
    ("0 8-18/2 * * *", ["*-*-* 08..18/2:00:00 UTC"]),
    ("0 0 */2 * *", ["*-*-01..31/2 00:00:00 UTC"]),
    ("0 0 1 */3 *", ["*-01..10/3-01 00:00:00 UTC"]),
    ("*/10 * * * * *", ["*-*-* *:*:00..50/10 UTC"]),
    ("0 22-23,0-2 * * *", ["*-*-* 00..02,22,23:00:00 UTC"]),
    # macros (@weekly is Sunday, unlike systemd's own "weekly")
    ("@yearly", ["*-01-01 00:00:00 UTC"]),
    ("@annually", ["*-01-01 00:00:00 UTC"]),
    ("@monthly", ["*-*-01 00:00:00 UTC"]),
    ("@weekly", ["Sun *-*-* 00:00:00 UTC"]),
    ("@daily", ["*-*-* 00:00:00 UTC"]),
    ("@midnight", ["*-*-* 00:00:00 UTC"]),
    ("@hourly", ["*-*-* *:00:00 UTC"]),
    # 7 fields with a year
    ("0 0 12 ? * WED 2027-2029", ["Wed 2027..2029-*-* 12:00:00 UTC"]),
    ("0 0 0 1 1 ? 2028", ["2028-01-01 00:00:00 UTC"]),
    # Quartz words
    ("0 0 L * *", ["*-*~01 00:00:00 UTC"]),
    ("0 0 L-3 * *", ["*-*~04 00:00:00 UTC"]),
    ("0 0 LW * *", ["Mon..Fri *-*~01 00:00:00 UTC", "Fri *-*~02,03 00:00:00 UTC"]),
    ("0 0 15W * *", ["Mon..Fri *-*-15 00:00:00 UTC", "Fri *-*-14 00:00:00 UTC", "Mon *-*-16 00:00:00 UTC"]),
    ("0 0 1W * *", ["Mon..Fri *-*-01 00:00:00 UTC", "Mon *-*-02,03 00:00:00 UTC"]),
    (
        "0 0 28W * *",
        [
            "Mon..Fri *-*-28 00:00:00 UTC",
            "Fri *-*-27 00:00:00 UTC",
            "Mon *-*-29 00:00:00 UTC",
            "Fri *-02~03 00:00:00 UTC",
        ],
    ),
    ("0 0 31W * *", ["Mon..Fri *-*~01 00:00:00 UTC", "Fri *-*~02,03 00:00:00 UTC"]),
    ("0 0 * * 5L", ["Fri *-*~01..07 00:00:00 UTC"]),
    ("0 0 * * FRIL", ["Fri *-*~01..07 00:00:00 UTC"]),
    ("0 0 * * MON#2", ["Mon *-*-08..14 00:00:00 UTC"]),
    ("0 0 * * 3#5", ["Wed *-*-29..31 00:00:00 UTC"]),
    (
        "0 0 1,15 * 5L,MON#1",
        ["*-*-01,15 00:00:00 UTC", "Mon *-*-01..07 00:00:00 UTC", "Fri *-*~01..07 00:00:00 UTC"],
    ),
]


@pytest.mark.parametrize("expr,expected", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_translation(expr: str, expected: list[str]) -> None:
    values = to_on_calendar(parse_cron(expr), "UTC")
    assert values == expected
    for value in values:
        # systemd parses each value and normalizes it to the same text
        assert normalize_calendar(value) == value


def test_timezone_suffix_on_every_line() -> None:
    values = to_on_calendar(parse_cron("0 0 1-7 * 1"), "Europe/Berlin")
    assert values == ["*-*-01..07 00:00:00 Europe/Berlin", "Mon *-*-* 00:00:00 Europe/Berlin"]


def test_days_1_to_7_or_monday_fire_on_both() -> None:
    """The issue's acceptance case: '0 0 1-7 * 1' fires on days 1-7 and on every Monday."""
    values = to_on_calendar(parse_cron("0 0 1-7 * 1"), "UTC")
    fires = calendar_next(values, datetime(2026, 12, 31, tzinfo=timezone.utc), 200)
    days = {f.date() for f in fires}
    start, end = min(days), max(days)
    expected = set()
    d = start
    while d <= end:
        if d.day <= 7 or d.weekday() == 0:
            expected.add(d)
        d = d.fromordinal(d.toordinal() + 1)
    assert days == expected
    assert any(d.day > 7 for d in days) and any(d.weekday() != 0 for d in days)


def test_default_jobs_translate_to_golden_values() -> None:
    config = parse_config({})
    assert {n: list(j.on_calendar) for n, j in config.jobs.items()} == {
        "toc_rollup_day": ["*-*-* 01:00:00 UTC"],
        "toc_rollup_week": ["Mon *-*-* 02:00:00 UTC"],
        "toc_rollup_month": ["*-*-01 03:00:00 UTC"],
        "toc_rollup_year": ["*-01-01 05:00:00 UTC"],
        "compaction": ["Sun *-*-* 04:00:00 UTC"],
        "store_verify": ["*-*-01 06:00:00 UTC"],
    }


REFUSED = [
    ("", "empty"),
    ("* * * *", "has 4 fields"),
    ("* * * * * * * *", "has 8 fields"),
    ("H * * * *", "Jenkins 'H'"),
    ("H(0-29) * * * *", "Jenkins 'H'"),
    ("0 H/2 * * *", "Jenkins 'H'"),
    ("R * * * *", "random 'R'"),
    ("@reboot", "'@reboot' is not a calendar"),
    ("@every 5m", "'@every'"),
    ("@fortnightly", "unknown macro"),
    ("60 * * * *", "60 is out of range 0-59"),
    ("* 24 * * *", "24 is out of range 0-23"),
    ("* * 0 * *", "0 is out of range 1-31"),
    ("* * * 13 *", "13 is out of range 1-12"),
    ("* * * * 8", "8 is out of range 0-7"),
    ("* * * FOO *", "'FOO' is not a valid name"),
    ("* * * * MONDAY", "'MONDAY' is not a valid name"),
    ("*/0 * * * *", "a step must be at least 1"),
    ("*/x * * * *", "is not a number"),
    ("5-1 * * * *", "runs backwards"),
    ("1,,2 * * * *", "empty list element"),
    ("? * * * *", "'?' is only allowed"),
    ("0 0 L-28 * *", "L-28 cannot be expressed"),
    ("0 0 32W * *", "out of range 1-31"),
    ("0 0 * * L", "'L' alone in the day-of-week field"),
    ("0 0 * * MON#6", "'#' takes 1 to 5"),
    ("0 0 31 2 *", "never fires"),
    ("0 0 30 2 *", "never fires"),
    ("0 0 0 1 1 ? 1969", "out of range 1970-2099"),
    ("0\n0 * * *", "control characters"),
]


@pytest.mark.parametrize("expr,message", REFUSED, ids=[r[0] or "empty" for r in REFUSED])
def test_refused_with_named_construct(expr: str, message: str) -> None:
    with pytest.raises(CronError) as info:
        parse_cron(expr)
    assert message in str(info.value)
