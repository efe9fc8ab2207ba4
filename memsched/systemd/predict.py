"""Predict fire times: systemd's (authoritative) checked against croniter's.

systemd decides when a timer elapses, so the times memsched shows come from
``systemd-analyze calendar`` on the translated ``OnCalendar=`` values. croniter
evaluates the cron expression independently; the two must agree everywhere
except at daylight-saving transitions, where they differ by design:

* **gap** (clocks jump forward): a wall time inside the gap does not exist.
  croniter (like vixie cron) runs it after the jump; systemd skips it.
* **fold** (clocks fall back): a wall time inside the fold happens twice.
  croniter runs both; systemd runs it once (the first occurrence for fixed
  times in ordinary zones; mktime decides in zones with negative DST).

Any other difference is a bug in the translation and is reported as such.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from croniter import croniter

from memsched.cron.calendar import to_on_calendar
from memsched.cron.zones import Transition, transitions
from memsched.cron.parse import DOW_NAMES, CronSpec, DaySpec, WeekdaySpec
from memsched.systemd.analyze import calendar_next

# Constructs croniter cannot evaluate; fire times of these come from systemd alone.
CRONITER_UNSUPPORTED = frozenset({"L-n", "LW"})


@dataclass(frozen=True)
class FireTime:
    """One predicted instant and how the two engines saw it."""

    at: datetime  # aware, UTC
    systemd: bool
    croniter: bool | None  # None when croniter could not evaluate the expression
    dst: str | None = None  # "gap" or "fold" when the difference is the documented DST one
    note: str | None = None
    wall: str | None = None  # the local wall time (ISO, naive) when ``at`` cannot show it: one a gap removes

    @property
    def disagreement(self) -> bool:
        """True when the engines differ for a reason other than DST."""
        return self.croniter is not None and self.systemd != self.croniter and self.dst is None


@dataclass
class Prediction:
    """The next fire times of one expression in one time zone."""

    expression: str
    timezone: str
    on_calendar: list[str]
    times: list[FireTime] = field(default_factory=list)
    checked: bool = True  # False when croniter cannot evaluate the expression

    @property
    def disagreements(self) -> list[FireTime]:
        return [t for t in self.times if t.disagreement]


def croniter_branches(spec: CronSpec) -> list[tuple[str, bool]] | None:
    """Split ``spec`` into croniter expressions whose union is the spec.

    Each branch restricts at most one day field, so croniter's own handling of
    combined day fields never comes into play. Returns ``(expression, day_or)``
    pairs, or None when the spec uses a construct croniter lacks.
    """
    if spec.constructs & CRONITER_UNSUPPORTED:
        return None
    time = " ".join(
        _croniter_list(values) for values in (spec.seconds, spec.minutes, spec.hours)
    )
    months = _croniter_list(spec.months)
    year = "*" if spec.years is None else _croniter_list(spec.years)
    days: list[tuple[str, str]] = []
    if spec.dom is None and spec.dow is None:
        days.append(("*", "*"))
    if spec.dom is not None:
        days.extend((d, "*") for d in _dom_branches(spec.dom))
    if spec.dow is not None:
        days.extend(("*", w) for w in _dow_branches(spec.dow))
    return [(f"{time} {dom} {months} {dow} {year}", True) for dom, dow in days]


def _croniter_list(values: frozenset[int]) -> str:
    return ",".join(str(v) for v in sorted(values))


def _dom_branches(dom: DaySpec) -> list[str]:
    out = []
    if dom.days:
        out.append(_croniter_list(dom.days))
    if 0 in dom.last_offsets:
        out.append("L")
    out.extend(f"{d}W" for d in sorted(dom.nearest_weekdays))
    return out


def _dow_branches(dow: WeekdaySpec) -> list[str]:
    out = []
    if dow.weekdays:
        out.append(_croniter_list(dow.weekdays))
    out.extend(f"{DOW_NAMES[w]}#{n}" for w, n in sorted(dow.nth))
    out.extend(f"L{w}" for w in sorted(dow.last))
    return out


def croniter_next(spec: CronSpec, tz: str, after: datetime, count: int) -> list[datetime] | None:
    """Return croniter's first ``count`` fire times strictly after ``after`` (UTC), or None if unsupported."""
    branches = croniter_branches(spec)
    if branches is None:
        return None
    zone = ZoneInfo(tz)
    start = after.astimezone(zone)
    iterators = []
    for expr, day_or in branches:
        it = croniter(expr, start, day_or=day_or, second_at_beginning=True)
        iterators.append(_take(it, count))
    merged: list[datetime] = []
    for when in heapq.merge(*iterators):
        utc = when.astimezone(timezone.utc)
        if merged and merged[-1] == utc:
            continue
        merged.append(utc)
        if len(merged) == count:
            break
    return merged


def _take(it: croniter, count: int):
    for _ in range(count):
        try:
            yield it.get_next(datetime).astimezone(timezone.utc)
        except Exception:  # croniter raises CroniterBadDateError when the calendar runs out
            return


def classify_dst(spec: CronSpec, tz: str, at: datetime) -> tuple[str, str] | None:
    """Explain a fire time only one engine has by a daylight-saving transition.

    Returns ``("gap", note)``, ``("fold", note)``, ``("missed", note)`` (an existing
    wall time systemd loses on a DST day, a systemd bug), or None when ``at`` is not
    such an instant.
    """
    zone = ZoneInfo(tz)
    local = at.astimezone(zone)
    matches = local.hour in spec.hours and local.minute in spec.minutes and local.second in spec.seconds
    before = (at - timedelta(hours=3)).astimezone(zone).utcoffset()
    offset = local.utcoffset()
    if not matches and before is not None and offset is not None and offset > before:
        return (
            "gap",
            f"the wall time falls into the daylight-saving gap that ends at "
            f"{local:%H:%M:%S} {local.tzname()}: cron runs it after the jump, systemd skips it",
        )
    naive = local.replace(tzinfo=None)
    if naive.replace(fold=0, tzinfo=zone).utcoffset() != naive.replace(fold=1, tzinfo=zone).utcoffset():
        return (
            "fold",
            f"{local:%H:%M:%S} happens twice when the clocks fall back: "
            "cron runs both, systemd runs it once",
        )
    from memsched.systemd.dst import transitions

    if matches and transitions(tz, at - timedelta(days=1), at + timedelta(seconds=1)):
        return (
            "missed",
            f"{local:%H:%M:%S} exists, but systemd does not run it: its calendar code loses runs after this "
            "zone's daylight-saving change (seen with Europe/Dublin in systemd 252; `memsched validate` warns)",
        )
    return None


def predict(spec: CronSpec, tz: str, after: datetime, count: int) -> Prediction:
    """Return the next ``count`` fire times from systemd, each checked against croniter.

    The times listed are systemd's; croniter-only instants are listed too, marked,
    so that a DST difference is visible and any other difference is flagged.
    Raises :class:`memsched.errors.UsageError` when systemd rejects the calendar.
    """
    values = to_on_calendar(spec, tz)
    systemd_times = calendar_next(values, after, count)
    prediction = Prediction(spec.expression, tz, values)
    extra = 8  # room for croniter's additional DST instants
    cron_times = croniter_next(spec, tz, after, count + extra)
    if cron_times is None:
        prediction.checked = False
        prediction.times = [FireTime(t, True, None) for t in systemd_times]
        return prediction
    # Compare only the span both lists cover completely.
    limits = []
    if len(systemd_times) == count:
        limits.append(systemd_times[-1])
    if len(cron_times) == count + extra:
        limits.append(cron_times[-1])
    limit = min(limits) if limits else None
    cron_set = {t for t in cron_times if limit is None or t <= limit}
    for at in sorted(set(systemd_times) | cron_set):
        in_sd = at in systemd_times
        if limit is not None and at > limit:
            prediction.times.append(FireTime(at, in_sd, None))
            continue
        in_cron = at in cron_set
        dst = note = None
        if in_sd != in_cron:
            explained = classify_dst(spec, tz, at)
            if explained:
                dst, note = explained
            else:
                note = "croniter fires here, systemd does not" if in_cron else "systemd fires here, croniter does not"
        prediction.times.append(FireTime(at, in_sd, in_cron, dst, note))
    _mark_transitions(prediction, spec, tz, after, limit)
    return prediction


def _mark_transitions(prediction: Prediction, spec: CronSpec, tz: str, after: datetime, limit: datetime | None) -> None:
    """Mark what the two engines agree on but a reader would miss, at each DST change in the listed span.

    * fold: with ``after`` inside the repeated hour, systemd lists the second occurrence of a
      wall time whose first occurrence already passed (a timer running through the fold
      never runs it twice): such a time is marked, naming the first occurrence.
    * gap: a wall time the gap removes is listed (not run) when cron's run after the jump
      coincides with another slot, so that neither engine shows it.
    """
    listed = [t.at for t in prediction.times if t.systemd]
    end = limit or (max(listed) if listed else after + timedelta(days=1))
    if not listed or end <= after:
        return
    zone = ZoneInfo(tz)
    naive_lines = to_on_calendar(spec, "UTC")  # the wall times the expression names, without a zone
    for tr in transitions(tz, after - timedelta(hours=3), end):
        window_start, window_end = tr.wall_window()
        base = window_start.replace(tzinfo=timezone.utc) - timedelta(seconds=1)
        named = [w.replace(tzinfo=None) for w in calendar_next(naive_lines, base, 7200)]
        named = [w for w in named if w < window_end]
        if tr.kind == "fold":
            _mark_repeats(prediction, named, zone, after)
        else:
            _add_removed(prediction, named, zone, tr, window_start, window_end, after, end, len(spec.hours) == 24)
    prediction.times.sort(key=lambda t: (t.at, t.systemd))


def _mark_repeats(prediction: Prediction, named: list[datetime], zone: ZoneInfo, after: datetime) -> None:
    walls = set(named)
    for i, t in enumerate(prediction.times):
        local = t.at.astimezone(zone)
        wall = local.replace(tzinfo=None)
        if not t.systemd or t.dst or not local.fold or wall not in walls:
            continue
        first = wall.replace(tzinfo=zone, fold=0).astimezone(timezone.utc)
        if first > after:
            continue
        first_local = first.astimezone(zone)
        prediction.times[i] = replace(
            t,
            dst="fold",
            note=(
                f"{wall:%H:%M:%S} is repeated when the clocks fall back: it already happened at {first:%H:%M:%S}Z "
                f"({first_local:%H:%M} {first_local.tzname()}); systemd lists it again only because the start "
                f"time is inside the repeated hour (a timer running through the fold runs it once, at {first:%H:%M:%S}Z)"
            ),
        )


def _add_removed(
    prediction: Prediction, named: list[datetime], zone: ZoneInfo, tr: Transition, window_start: datetime,
    window_end: datetime, after: datetime, end: datetime, every_hour: bool,
) -> None:
    if not after < tr.at <= end:
        return
    # croniter's own row for the jump (it runs the removed times then) says less than these: replaced
    cron_row = [t for t in prediction.times if t.at == tr.at and not t.systemd and t.dst == "gap"]
    for row in cron_row:
        prediction.times.remove(row)
    jumped = tr.at.astimezone(zone)
    for wall in named:
        note = (
            f"{wall:%H:%M:%S} does not exist on {wall:%Y-%m-%d} (the clocks jump from {window_start:%H:%M} to "
            f"{window_end:%H:%M} {jumped.tzname()}): systemd skips it; "
            + (
                "so does vixie cron, for a job that runs every hour"
                if every_hour
                else f"vixie cron runs it right after the jump, at {jumped:%H:%M:%S} {jumped.tzname()}"
            )
        )
        prediction.times.append(FireTime(tr.at, False, True if prediction.checked else None, "gap", note, wall=wall.isoformat()))
