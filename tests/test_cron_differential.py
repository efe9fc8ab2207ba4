"""Differential test: systemd's fire times for the emitted OnCalendar= lines against croniter's.

systemd's side is `systemd-analyze calendar --iterations` on the translated
lines. croniter's side is croniter itself: on the original expression when no
Quartz word is used (an oracle independent of our code), else on the union of
one croniter expression per day branch. L-n and LW, which croniter lacks, are
checked against a plain reference model of the Quartz rules instead.

They must agree everywhere except at daylight-saving transitions, where
systemd's documented behaviour is asserted: a wall time inside a gap is
skipped (croniter runs it at the jump) and a wall time inside a fold runs once,
at its first occurrence (croniter may run both).
"""

from __future__ import annotations

import calendar as pycalendar
import os
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from memsched.cron.calendar import to_on_calendar
from memsched.systemd.dst import dst_warnings, transitions
from memsched.errors import UsageError
from memsched.cron.parse import MONTH_NAMES, DOW_NAMES, CronSpec, parse_cron
from memsched.systemd.predict import croniter_next
from memsched.systemd.analyze import calendar_next

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",  # 30-minute DST
    "America/Santiago",  # southern hemisphere, midnight transitions
    "Europe/Dublin",  # negative DST in the tz database
    "Asia/Kolkata",  # half-hour offset, no DST
    "Pacific/Chatham",  # 45-minute offset with DST
    "America/Havana",  # transitions at midnight
]
FIRE_TIMES = 50
# Zones where systemd 252 loses existing wall times after a DST change (negative DST in the tz
# database): measured, see docs/concepts.md. memsched warns about them; the test checks it does.
SYSTEMD_LOSES_RUNS_AFTER_DST = {"Europe/Dublin"}
WINDOW_START = datetime(2026, 1, 1, tzinfo=timezone.utc)
WINDOW_DAYS = 3 * 365  # base times spread over three years


# ---------------------------------------------------------------- strategies


def _values(lo: int, hi: int, names: list[str] | None = None, offset: int = 0) -> st.SearchStrategy[str]:
    def show(v: int) -> st.SearchStrategy[str]:
        if names is not None:
            return st.sampled_from([str(v), names[v - offset]])
        return st.just(str(v))

    return st.integers(lo, hi).flatmap(show)


def _item(lo: int, hi: int, names: list[str] | None = None, offset: int = 0) -> st.SearchStrategy[str]:
    single = _values(lo, hi, names, offset)
    # croniter reads an equal range "a-a" as the whole cycle; vixie (and memsched) as just a
    rng = st.tuples(st.integers(lo, hi), st.integers(lo, hi)).filter(lambda ab: ab[0] != ab[1]).map(
        lambda ab: f"{min(ab)}-{max(ab)}"
    )
    star_step = st.integers(1, max(1, (hi - lo) // 2 + 1)).map(lambda n: f"*/{n}")
    range_step = st.tuples(st.integers(lo, hi), st.integers(lo, hi), st.integers(1, 10)).filter(lambda t: t[0] != t[1]).map(
        lambda t: f"{min(t[0], t[1])}-{max(t[0], t[1])}/{t[2]}"
    )
    start_step = st.tuples(st.integers(lo, hi), st.integers(1, 12)).map(lambda t: f"{t[0]}/{t[1]}")
    return st.one_of(single, rng, star_step, range_step, start_step)


def _field(lo: int, hi: int, names: list[str] | None = None, offset: int = 0, star_weight: int = 3) -> st.SearchStrategy[str]:
    lists = st.lists(_item(lo, hi, names, offset), min_size=1, max_size=3).map(",".join)
    return st.one_of(*([st.just("*")] * star_weight), lists)


SECONDS = st.one_of(st.just("0"), st.just("*/20"), _values(0, 59), st.just("0,30"))
MINUTES = st.one_of(_values(0, 59), _field(0, 59, star_weight=1))
HOURS = _field(0, 23, star_weight=2)
MONTHS = _field(1, 12, MONTH_NAMES, offset=1)
PLAIN_DOM = _field(1, 31, star_weight=4)
PLAIN_DOW = st.one_of(_field(0, 7, DOW_NAMES + ["SUN"], star_weight=4), st.just("?"))
QUARTZ_DOM = st.one_of(
    st.just("L"),
    st.integers(0, 27).map(lambda n: f"L-{n}"),
    st.integers(1, 31).map(lambda n: f"{n}W"),
    st.just("LW"),
)
QUARTZ_DOW = st.one_of(
    st.tuples(st.integers(0, 7), st.integers(1, 5)).map(lambda t: f"{t[0]}#{t[1]}"),
    st.tuples(st.sampled_from(DOW_NAMES), st.integers(1, 5)).map(lambda t: f"{t[0]}#{t[1]}"),
    st.integers(0, 7).map(lambda d: f"{d}L"),
)


@st.composite
def cron_expressions(draw: st.DrawFn) -> str:
    dialect = draw(st.sampled_from([5, 6, 7]))
    dom = draw(st.one_of(PLAIN_DOM, PLAIN_DOM, QUARTZ_DOM, st.just("?")))
    dow = draw(st.one_of(PLAIN_DOW, PLAIN_DOW, QUARTZ_DOW))
    if dom == "?" and dow == "?":
        dom = "*"
    fields = [draw(MINUTES), draw(HOURS), dom, draw(MONTHS), dow]
    if dialect >= 6:
        fields.insert(0, draw(SECONDS))
    if dialect == 7:
        year = draw(st.one_of(st.just("*"), st.integers(2026, 2030).map(str), st.just("2026-2029"), st.just("2027/2")))
        fields.append(year)
    return " ".join(fields)


# ---------------------------------------------------------------- oracles


def _croniter_direct(expr: str, tz: str, after: datetime, count: int) -> list[datetime]:
    """croniter on the original text: the independent oracle for expressions without Quartz words."""
    it = croniter(expr, after.astimezone(ZoneInfo(tz)), second_at_beginning=len(expr.split()) > 5)
    out: list[datetime] = []
    for _ in range(count):
        try:
            out.append(it.get_next(datetime).astimezone(timezone.utc))
        except Exception:
            break
    return out


def _quartz_day(spec: CronSpec, d: date) -> bool:
    """Reference model of the day rules (cron OR semantics, Quartz words), written from their definitions."""
    last = pycalendar.monthrange(d.year, d.month)[1]
    weekday = (d.weekday() + 1) % 7  # 0 = Sunday

    def nearest_workday(n: int) -> int:
        n = min(n, last)
        wd = date(d.year, d.month, n).weekday()  # 0 = Monday
        if wd == 5:
            return n - 1 if n > 1 else n + 2
        if wd == 6:
            return n + 1 if n < last else n - 2
        return n

    def last_workday() -> int:
        wd = date(d.year, d.month, last).weekday()
        return last - max(0, wd - 4)

    dom_hit = dow_hit = False
    if spec.dom is not None:
        dom_hit = (
            d.day in spec.dom.days
            or any(d.day == last - n for n in spec.dom.last_offsets)
            or any(d.day == nearest_workday(n) for n in spec.dom.nearest_weekdays)
            or (spec.dom.last_weekday and d.day == last_workday())
        )
    if spec.dow is not None:
        dow_hit = (
            weekday in spec.dow.weekdays
            or any(weekday == w and (d.day - 1) // 7 + 1 == n for w, n in spec.dow.nth)
            or any(weekday == w and d.day > last - 7 for w in spec.dow.last)
        )
    if spec.dom is None and spec.dow is None:
        return True
    if spec.dom is None:
        return dow_hit
    if spec.dow is None:
        return dom_hit
    return dom_hit or dow_hit


def _reference_utc(spec: CronSpec, after: datetime, count: int) -> list[datetime]:
    """Fire times of the reference model in UTC (only used for UTC, where no DST applies)."""
    out: list[datetime] = []
    day = after.date()
    limit = date(2199, 12, 31)  # where systemd's calendar ends
    while len(out) < count and day <= limit:
        if day.month in spec.months and (spec.years is None or day.year in spec.years) and _quartz_day(spec, day):
            for h in sorted(spec.hours):
                for m in sorted(spec.minutes):
                    for s in sorted(spec.seconds):
                        at = datetime(day.year, day.month, day.day, h, m, s, tzinfo=timezone.utc)
                        if at > after:
                            out.append(at)
                            if len(out) == count:
                                return out
        day += timedelta(days=1)
    return out


def _croniter_quirk(expr: str, spec: CronSpec) -> bool:
    """True where croniter's reading of the text departs from cron's rules (then use the branch oracle).

    croniter treats a day field that lists every value as '*' when the other day
    field's text contains '*' (an optimisation that turns OR into AND), and reads
    '7/n' in day-of-week as every day.
    """
    fields = expr.split()
    dom_text, dow_text = (fields[2], fields[4]) if len(fields) == 5 else (fields[3], fields[5])
    dom_full = spec.dom is not None and spec.dom.days == frozenset(range(1, 32))
    dow_full = spec.dow is not None and spec.dow.weekdays == frozenset(range(7))
    return (
        (dom_full and "*" in dow_text)
        or (dow_full and "*" in dom_text)
        or any(item.startswith("7/") for item in dow_text.split(","))
    )


# ---------------------------------------------------------------- comparison


def _compare(spec: CronSpec, tz: str, after: datetime, sd: list[datetime], cr: list[datetime]) -> None:
    """Assert systemd's list equals croniter's except for documented DST differences."""
    assert sd, f"systemd never fires for {spec.expression!r} in {tz}"
    horizon = min(sd[-1], cr[-1]) if len(cr) >= FIRE_TIMES and len(sd) >= FIRE_TIMES else max(sd[-1], cr[-1] if cr else sd[-1])
    sd_set = {t for t in sd if t <= horizon}
    cr_set = {t for t in cr if t <= horizon}
    zone = ZoneInfo(tz)
    systemd_only = sd_set - cr_set
    assert not systemd_only, f"{spec.expression!r} {tz}: systemd fires at {sorted(systemd_only)[:3]}, croniter does not"
    gaps = [tr for tr in transitions(tz, after - timedelta(days=1), horizon + timedelta(days=1)) if tr.kind == "gap"]
    for at in sorted(cr_set - sd_set):
        local = at.astimezone(zone)
        wall = local.replace(tzinfo=None)
        if any(
            timedelta(0) <= at - tr.at <= timedelta(hours=3)
            and tr.wall_window()[0] <= wall - (tr.after - tr.before) < tr.wall_window()[1]
            for tr in gaps
        ):
            # gap: the named wall time does not exist; croniter runs it shifted past the jump, systemd skips it
            continue
        naive = local.replace(tzinfo=None)
        occurrences = {naive.replace(fold=f, tzinfo=zone).astimezone(timezone.utc) for f in (0, 1)}
        if len(occurrences) == 1 and tz in SYSTEMD_LOSES_RUNS_AFTER_DST:
            # A systemd bug, not the translation: memsched must flag it for `validate`.
            flagged = {w.wall_time for w in dst_warnings(spec, tz, at - timedelta(days=2), months=1) if w.wall_time}
            assert flagged, f"{spec.expression!r} {tz}: systemd loses {local}, and memsched does not warn"
            continue
        assert len(occurrences) == 2, f"{spec.expression!r} {tz}: croniter fires at {at} ({local}), systemd does not, and it is no DST instant"
        # fold: systemd runs this wall time once, at the other occurrence
        (other,) = occurrences - {at}
        assert other in sd_set or other <= after or other > horizon, (
            f"{spec.expression!r} {tz}: {local} happens twice; systemd runs neither occurrence"
        )


# CI runs a fixed set of examples (derandomized, so a run is reproducible); set
# MEMSCHED_HYPOTHESIS_EXAMPLES=5000 MEMSCHED_HYPOTHESIS_RANDOM=1 to search further.
@settings(
    derandomize=os.environ.get("MEMSCHED_HYPOTHESIS_RANDOM") != "1",
    max_examples=int(os.environ.get("MEMSCHED_HYPOTHESIS_EXAMPLES", "300")), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(
    expr=cron_expressions(),
    tz=st.sampled_from(ZONES),
    offset_days=st.integers(0, WINDOW_DAYS),
    offset_seconds=st.integers(0, 86_399),
)
def test_systemd_matches_croniter(expr: str, tz: str, offset_days: int, offset_seconds: int) -> None:
    spec = parse_cron(expr)
    after = WINDOW_START + timedelta(days=offset_days, seconds=offset_seconds)
    lines = to_on_calendar(spec, tz)
    try:
        sd = calendar_next(lines, after, FIRE_TIMES)
    except UsageError as exc:
        # systemd 252 cannot step over some DST gaps (seen in Pacific/Chatham): memsched must catch it
        assert "Failed to determine next elapse" in str(exc)
        assert any(w.fatal for w in dst_warnings(spec, tz, after, months=12 * 5)), f"{expr!r} {tz}: unflagged systemd failure"
        return
    assume(sd)  # e.g. a year field that has passed
    if spec.constructs & {"L-n", "LW"}:
        assume(tz == "UTC")
        ref = _reference_utc(spec, after, FIRE_TIMES)
        assert sd == ref[: len(sd)] and len(sd) == min(FIRE_TIMES, len(ref)), f"{expr!r}: {sd[:5]} vs {ref[:5]}"
        return
    if spec.constructs & {"L", "W", "#", "xL"} or _croniter_quirk(expr, spec):
        cr = croniter_next(spec, tz, after, FIRE_TIMES + 10)
    else:
        cr = _croniter_direct(expr, tz, after, FIRE_TIMES + 10)
    assert cr is not None
    _compare(spec, tz, after, sd, cr)


SPARSE = [
    "0 0 L * *",
    "0 0 15W * *",
    "0 0 1W * *",
    "0 0 28W * *",
    "0 0 29W * *",
    "0 0 30W * *",
    "0 0 31W * *",
    "0 0 28W 2 *",
    "0 0 * * 5L",
    "0 0 * * MON#1",
    "0 0 * * 0#5",
    "0 0 1,15 * 5L,MON#1",
    "0 0 13 * 5",
    "0 0 29 2 *",
    "0 0 1 1 *",
    "@monthly",
    "@weekly",
    "0 0 10W * MON",
]


@pytest.mark.parametrize("expr", SPARSE)
def test_sparse_expressions_over_years(expr: str) -> None:
    """Monthly and rarer expressions: 50 fire times reach years ahead (Feb 29, 5th weekdays, W at month ends)."""
    spec = parse_cron(expr)
    after = datetime(2026, 1, 1, tzinfo=timezone.utc)
    sd = calendar_next(to_on_calendar(spec, "UTC"), after, FIRE_TIMES)
    # systemd's calendar ends with the year 2199: Feb 29 has only 42 more occurrences
    assert len(sd) == (42 if expr == "0 0 29 2 *" else FIRE_TIMES)
    if expr not in ("@weekly", "0 0 13 * 5", "0 0 10W * MON", "0 0 1,15 * 5L,MON#1"):
        assert sd[-1] - sd[0] >= timedelta(days=2 * 365)
    assert sd == _reference_utc(spec, after, len(sd))
    cr = croniter_next(spec, "UTC", after, len(sd))
    assert cr == sd


@pytest.mark.parametrize("expr", ["0 0 L-2 * *", "0 0 L-27 * *", "0 0 LW * *", "0 30 9 LW,1 * *", "0 0 L-0,LW * MON"])
def test_words_croniter_lacks_against_reference_model(expr: str) -> None:
    spec = parse_cron(expr)
    after = datetime(2027, 6, 1, tzinfo=timezone.utc)
    sd = calendar_next(to_on_calendar(spec, "UTC"), after, FIRE_TIMES)
    assert len(sd) == FIRE_TIMES
    assert sd == _reference_utc(spec, after, FIRE_TIMES)


DST_CASES = [
    # zone, expression, base: one gap and one fold each
    ("Europe/Berlin", "30 2 * * *", datetime(2027, 3, 20, tzinfo=timezone.utc)),
    ("Europe/Berlin", "30 2 * * *", datetime(2027, 10, 25, tzinfo=timezone.utc)),
    ("America/New_York", "0 */15 2 * * *", datetime(2027, 3, 13, tzinfo=timezone.utc)),
    ("America/New_York", "0 */15 1 * * *", datetime(2027, 11, 6, tzinfo=timezone.utc)),
    ("Australia/Lord_Howe", "15 2 * * *", datetime(2027, 10, 1, tzinfo=timezone.utc)),
    ("Australia/Lord_Howe", "45 1 * * *", datetime(2027, 4, 1, tzinfo=timezone.utc)),
    ("America/Santiago", "30 0 * * *", datetime(2027, 9, 1, tzinfo=timezone.utc)),
    ("Europe/Dublin", "30 1 * * *", datetime(2027, 10, 29, tzinfo=timezone.utc)),
]


@pytest.mark.parametrize("tz,expr,after", DST_CASES, ids=[f"{c[0]}:{c[1]}:{c[2]:%m}" for c in DST_CASES])
def test_dst_transitions_follow_systemd_rules(tz: str, expr: str, after: datetime) -> None:
    spec = parse_cron(expr)
    sd = calendar_next(to_on_calendar(spec, tz), after, FIRE_TIMES)
    cr = _croniter_direct(expr, tz, after, FIRE_TIMES + 10)
    _compare(spec, tz, after, sd, cr)
    # each case is chosen to hit a transition: the lists really differ there
    assert set(sd) != set(cr[: len(sd)])
