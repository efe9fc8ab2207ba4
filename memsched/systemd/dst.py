"""Find a job's local fire times that fall into daylight-saving gaps or folds.

A transition's affected wall times are found with zoneinfo; whether the job
fires at one of them is asked of systemd itself, by evaluating the job's
calendar with a UTC suffix (UTC has no transitions, so it walks wall-clock
time naively, which is exactly "the wall times the expression names").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from memsched.cron.calendar import to_on_calendar
from memsched.cron.zones import Transition, transitions
from memsched.cron.parse import CronSpec
from memsched.errors import UsageError
from memsched.systemd.analyze import calendar_next


@dataclass(frozen=True)
class DstWarning:
    """A wall time the job names that a transition skips or repeats, and what systemd does.

    ``fatal`` marks a transition systemd itself cannot get past: its calendar code
    fails to compute the next elapse, so the timer would silently stop firing.
    """

    transition: Transition
    wall_time: datetime | None  # naive local time
    message: str
    fatal: bool = False


def dst_warnings(spec: CronSpec, zone_name: str, start: datetime, months: int = 12) -> list[DstWarning]:
    """Return the job's fire times inside DST gaps or folds in the next ``months`` months."""
    end = start + timedelta(days=31 * months)
    naive_lines = to_on_calendar(spec, "UTC")
    zone_lines = to_on_calendar(spec, zone_name)
    warnings = []
    for tr in transitions(zone_name, start, end):
        window_start, window_end = tr.wall_window()
        try:
            calendar_next(zone_lines, tr.at - timedelta(seconds=1), 1)
        except UsageError as exc:
            warnings.append(
                DstWarning(
                    tr,
                    None,
                    f"systemd cannot compute this job's next run across the daylight-saving change on "
                    f"{tr.at.astimezone(ZoneInfo(zone_name)):%Y-%m-%d} in {zone_name} ({exc}); the timer "
                    f"would stop firing there. Move the time out of {window_start:%H:%M}-{window_end:%H:%M} "
                    "local time or use another time zone",
                    fatal=True,
                )
            )
            continue
        missed = _missed_after_change(naive_lines, zone_lines, zone_name, tr)
        if missed:
            warnings.append(
                DstWarning(
                    tr,
                    missed[0],
                    f"systemd will not run it at {missed[0]:%Y-%m-%d %H:%M:%S} {zone_name} "
                    f"({len(missed)} run(s) that day after the daylight-saving change), although that time exists: "
                    "systemd's calendar code loses them in this zone (seen with Europe/Dublin's negative DST in "
                    "systemd 252); run the job by hand that day or use another time zone",
                )
            )
        # The first wall time the expression names at or after the window start.
        base = window_start.replace(tzinfo=timezone.utc) - timedelta(seconds=1)
        hits = calendar_next(naive_lines, base, 1)
        if not hits or hits[0].replace(tzinfo=None) >= window_end:
            continue
        wall = hits[0].replace(tzinfo=None)
        span = f"{window_start:%H:%M}-{window_end:%H:%M}"
        if tr.kind == "gap":
            message = (
                f"fires at {wall:%Y-%m-%d %H:%M:%S} {zone_name}, inside the daylight-saving gap "
                f"({span} does not exist that day): systemd skips that run"
                + (
                    " (so does cron for jobs that run every hour)"
                    if len(spec.hours) == 24
                    else f" (vixie cron would run it at {window_end:%H:%M} instead)"
                )
            )
        else:
            message = (
                f"fires at {wall:%Y-%m-%d %H:%M:%S} {zone_name}, inside the daylight-saving fold "
                f"({span} happens twice that night): systemd runs it once "
                "(vixie cron may run it twice)"
            )
        warnings.append(DstWarning(tr, wall, message))
    return warnings


def _missed_after_change(naive_lines: list[str], zone_lines: list[str], zone_name: str, tr: Transition) -> list[datetime]:
    """Return wall times (naive) in the hours after a transition that exist but systemd does not fire.

    The wall times the calendar names come from its UTC-suffixed twin (naive
    wall-clock time); each one that exists that day must be among systemd's
    elapses in the zone. Times inside the gap, and second occurrences in a fold,
    are systemd's documented behaviour and not reported here.
    """
    zone = ZoneInfo(zone_name)
    window_start, window_end = tr.wall_window()
    check_until = window_end + timedelta(hours=3)
    named = [
        t.replace(tzinfo=None)
        for t in calendar_next(naive_lines, window_end.replace(tzinfo=timezone.utc) - timedelta(seconds=1), 2000)
        if t.replace(tzinfo=None) < check_until
    ]
    if not named:
        return []
    expected = {}
    for wall in named:
        if tr.kind == "fold" and window_start <= wall < window_end:
            continue  # repeated wall time: which occurrence runs is the fold rule's business
        instant = wall.replace(tzinfo=zone).astimezone(timezone.utc)
        if instant.astimezone(zone).replace(tzinfo=None) != wall:
            continue  # does not exist (inside a gap)
        expected[instant] = wall
    first = min(expected) if expected else None
    if first is None:
        return []
    actual = set(calendar_next(zone_lines, first - timedelta(seconds=1), len(expected) + 10))
    return sorted(wall for instant, wall in expected.items() if instant not in actual)
