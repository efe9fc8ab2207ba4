"""Parse cron expressions of several dialects into one normalized :class:`CronSpec`.

Accepted dialects:

* 5 fields (vixie): ``minute hour day-of-month month day-of-week``
* 6 fields, seconds first (the original scheduler's dialect):
  ``second minute hour day-of-month month day-of-week``
* 7 fields, seconds first and a year last (Quartz):
  ``second minute hour day-of-month month day-of-week year``
* the macros ``@yearly @annually @monthly @weekly @daily @midnight @hourly``

Every field takes ``*``, values, names (``JAN``..``DEC``, ``SUN``..``SAT``),
ranges ``a-b``, steps ``*/n``, ``a-b/n`` and ``a/n``, and comma lists. The day
fields also take ``?`` (same as ``*``). Day-of-week numbers follow vixie cron in
every dialect: ``0`` and ``7`` are Sunday, ``1`` is Monday.

Quartz words: day-of-month ``L`` (last day), ``L-n`` (n days before the last),
``nW`` (weekday nearest day n, never leaving the month), ``LW`` (last weekday);
day-of-week ``xL`` (last x-day of the month) and ``x#n`` (n-th x-day).

A field is *restricted* unless it is exactly ``*`` or ``?``. When both day
fields are restricted a time matches if **either** matches (vixie, POSIX and
croniter semantics); otherwise the restricted one alone decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from memsched.errors import CronError
from memsched.text import first_control_char

SECOND, MINUTE, HOUR, DOM, MONTH, DOW, YEAR = range(7)

FIELD_NAMES = {
    SECOND: "second",
    MINUTE: "minute",
    HOUR: "hour",
    DOM: "day-of-month",
    MONTH: "month",
    DOW: "day-of-week",
    YEAR: "year",
}
FIELD_BOUNDS = {
    SECOND: (0, 59),
    MINUTE: (0, 59),
    HOUR: (0, 23),
    DOM: (1, 31),
    MONTH: (1, 12),
    DOW: (0, 7),
    YEAR: (1970, 2099),
}
MONTH_NAMES = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DOW_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# Longest month length per month number, and the months of each length.
MAX_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
# systemd's "~" notation counts at most 28 days back from the end of a month.
MAX_FROM_END = 28

_NUMBER = re.compile(r"^\d+\Z", re.ASCII)  # \Z and ASCII: "$" passes a final newline, \d Unicode digits
_NAME = re.compile(r"^[A-Za-z]+\Z")


@dataclass(frozen=True)
class DaySpec:
    """A restricted day-of-month field."""

    days: frozenset[int] = frozenset()
    last_offsets: frozenset[int] = frozenset()  # L -> 0, L-n -> n
    nearest_weekdays: frozenset[int] = frozenset()  # nW
    last_weekday: bool = False  # LW


@dataclass(frozen=True)
class WeekdaySpec:
    """A restricted day-of-week field; weekdays are 0 (Sunday) to 6 (Saturday)."""

    weekdays: frozenset[int] = frozenset()
    nth: frozenset[tuple[int, int]] = frozenset()  # (weekday, n) for x#n
    last: frozenset[int] = frozenset()  # x for xL


@dataclass(frozen=True)
class CronSpec:
    """A parsed cron expression.

    ``dom``/``dow`` are ``None`` when the field is unrestricted (``*`` or ``?``);
    ``years`` is ``None`` when any year matches.
    """

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    dom: DaySpec | None
    dow: WeekdaySpec | None
    years: frozenset[int] | None = None
    constructs: frozenset[str] = field(default=frozenset())

    @property
    def days_or(self) -> bool:
        """True when both day fields are restricted, so either one matching is enough."""
        return self.dom is not None and self.dow is not None


def parse_cron(expression: str) -> CronSpec:
    """Parse a cron expression of any accepted dialect.

    Returns the normalized :class:`CronSpec`.
    Raises :class:`CronError` naming the offending field and construct.
    """
    if not isinstance(expression, str):
        raise CronError(f"a cron expression must be a string, not {type(expression).__name__}")
    text = expression.strip()
    if not text:
        raise CronError("the cron expression is empty")
    if first_control_char(text) is not None:
        raise CronError("the cron expression contains control characters")
    constructs: set[str] = set()
    if text.startswith("@"):
        text = _expand_macro(text)
        constructs.add("macro")
    fields = text.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    elif len(fields) == 6:
        pass
    elif len(fields) == 7:
        pass
    else:
        raise CronError(
            f"{expression!r} has {len(fields)} fields; expected 5 (minute hour day month weekday), "
            "6 (second first) or 7 (second first, year last)"
        )
    for raw in fields:
        _refuse_foreign_syntax(raw)

    seconds = _parse_plain(fields[SECOND], SECOND, constructs)
    minutes = _parse_plain(fields[MINUTE], MINUTE, constructs)
    hours = _parse_plain(fields[HOUR], HOUR, constructs)
    months = _parse_plain(fields[MONTH], MONTH, constructs)
    dom = _parse_dom(fields[DOM], constructs)
    dow = _parse_dow(fields[DOW], constructs)
    years = None
    if len(fields) == 7 and fields[YEAR] not in ("*", "?"):
        years = _parse_plain(fields[YEAR], YEAR, constructs)
    elif len(fields) == 7 and fields[YEAR] == "?":
        raise CronError("'?' is only allowed in the day-of-month and day-of-week fields, not in the year field")

    spec = CronSpec(
        expression=expression.strip(),
        seconds=seconds,
        minutes=minutes,
        hours=hours,
        months=months,
        dom=dom,
        dow=dow,
        years=years,
        constructs=frozenset(constructs),
    )
    _check_satisfiable(spec)
    return spec


def _expand_macro(text: str) -> str:
    name = text.split()[0].lower()
    if len(text.split()) != 1:
        raise CronError(f"the macro {text.split()[0]!r} takes no further fields")
    if name in MACROS:
        return MACROS[name]
    if name == "@reboot":
        raise CronError(
            "'@reboot' is not a calendar: systemd runs things at boot with a service that is "
            "WantedBy=default.target (or a timer with OnBootSec=), not with OnCalendar="
        )
    if name == "@every":
        raise CronError(
            "'@every' (Go cron) is an interval, not a calendar; write it as a step "
            "(e.g. '*/15 * * * *' for every 15 minutes)"
        )
    raise CronError(
        f"unknown macro {name!r}; known: {', '.join(sorted(MACROS))}"
    )


def _refuse_foreign_syntax(raw: str) -> None:
    """Reject constructs of other cron dialects with a message naming them."""
    upper = raw.upper()
    if re.search(r"(^|[,/(-])H(\(|$|/|,)", upper) or upper.startswith("H("):
        raise CronError(
            f"{raw!r}: Jenkins 'H' (hashed) values are not supported: systemd has no stable "
            "per-job hash. Pick a fixed value and spread jobs with the job's 'jitter' "
            "(RandomizedDelaySec=) and 'fixed_random_delay = true'"
        )
    if upper == "R" or upper.startswith("R("):
        raise CronError(
            f"{raw!r}: random 'R' values are not supported; pick a fixed value and use the job's "
            "'jitter' (RandomizedDelaySec=) for randomness"
        )


def _int(digits: str) -> int:
    """int() of an ASCII digit string; past 18 digits a stand-in as large (every bound is far smaller).

    Python refuses int() of more than 4300 digits, and would spend time on a long string anyway.
    """
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= 18 else 10**18


def _shown(digits: str) -> str:
    return digits if len(digits) <= 24 else digits[:21] + "..."


def _number(token: str, fld: int, raw: str) -> int:
    """Turn one value token (number or name) into an int, checking bounds."""
    name = FIELD_NAMES[fld]
    if _NUMBER.match(token):
        value = _int(token)
    elif _NAME.match(token) and fld == MONTH and token.upper() in MONTH_NAMES:
        value = MONTH_NAMES.index(token.upper()) + 1
    elif _NAME.match(token) and fld == DOW and token.upper() in DOW_NAMES:
        value = DOW_NAMES.index(token.upper())
    elif _NAME.match(token):
        hint = ""
        if fld == MONTH:
            hint = f" (month names are {MONTH_NAMES[0]}..{MONTH_NAMES[-1]})"
        elif fld == DOW:
            hint = f" (day names are {DOW_NAMES[0]}..{DOW_NAMES[-1]})"
        raise CronError(f"{raw!r} in the {name} field: {token!r} is not a valid name{hint}")
    else:
        raise CronError(f"{raw!r} in the {name} field: {token!r} is not a number")
    lo, hi = FIELD_BOUNDS[fld]
    if not lo <= value <= hi:
        raise CronError(f"{_shown(raw)!r} in the {name} field: {_shown(token) if _NUMBER.match(token) else value} is out of range {lo}-{hi}")
    return value


def _parse_plain(text: str, fld: int, constructs: set[str]) -> frozenset[int]:
    """Parse a field made of ``*``, values, ranges, steps and lists.

    Returns the set of matching values (day-of-week 7 folded onto 0).
    """
    name = FIELD_NAMES[fld]
    lo, hi = FIELD_BOUNDS[fld]
    if fld == DOW:
        hi = 7
    if text == "?":
        if fld not in (DOM, DOW):
            raise CronError(f"'?' is only allowed in the day-of-month and day-of-week fields, not in the {name} field")
        text = "*"
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"{text!r} in the {name} field: empty list element")
        step = 1
        body = item
        if "/" in item:
            body, _, step_text = item.partition("/")
            if not _NUMBER.match(step_text):
                raise CronError(f"{item!r} in the {name} field: the step {step_text!r} is not a number")
            step = _int(step_text)
            if step < 1:
                raise CronError(f"{item!r} in the {name} field: a step must be at least 1")
            constructs.add("step")
        if body == "*":
            start, end = lo, (6 if fld == DOW else hi)
        elif "-" in body:
            a, _, b = body.partition("-")
            if not a or not b:
                raise CronError(f"{item!r} in the {name} field: a range needs a start and an end (a-b)")
            start, end = _number(a, fld, item), _number(b, fld, item)
            if start > end:
                raise CronError(
                    f"{item!r} in the {name} field: the range runs backwards; "
                    f"write it as two ranges (e.g. {a}-{hi},{lo}-{b})"
                )
            constructs.add("range")
        else:
            start = _number(body, fld, item)
            # "a/n" runs from a to the end of the field (Quartz, croniter); 7/n is Sunday alone.
            end = (max(6, start) if fld == DOW else hi) if "/" in item else start
        values.update(range(start, end + 1, step))
    if fld == DOW and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


_DOM_LAST = re.compile(r"^L(?:-(\d+))?\Z", re.IGNORECASE | re.ASCII)
_DOM_NEAREST = re.compile(r"^(\d+)W\Z", re.IGNORECASE | re.ASCII)
_DOW_LAST = re.compile(r"^([A-Za-z]+|\d+)L\Z", re.IGNORECASE | re.ASCII)
_DOW_NTH = re.compile(r"^([A-Za-z]+|\d+)#(\d+)\Z", re.ASCII)


def _parse_dom(text: str, constructs: set[str]) -> DaySpec | None:
    if text in ("*", "?"):
        return None
    plain: list[str] = []
    offsets: set[int] = set()
    nearest: set[int] = set()
    last_weekday = False
    for item in text.split(","):
        upper = item.upper()
        if upper == "LW":
            last_weekday = True
            constructs.add("LW")
        elif m := _DOM_LAST.match(item):
            n = _int(m.group(1) or "0")
            if n > MAX_FROM_END - 1:
                raise CronError(
                    f"{_shown(item)!r} in the day-of-month field: systemd counts at most {MAX_FROM_END} days "
                    f"back from the end of a month (~{MAX_FROM_END}), so L-{_shown(m.group(1))} cannot be expressed; "
                    f"the largest offset is L-{MAX_FROM_END - 1}"
                )
            offsets.add(n)
            constructs.add("L-n" if m.group(1) else "L")
        elif m := _DOM_NEAREST.match(item):
            day = _int(m.group(1))
            if not 1 <= day <= 31:
                raise CronError(f"{_shown(item)!r} in the day-of-month field: {_shown(m.group(1))} is out of range 1-31")
            nearest.add(day)
            constructs.add("W")
        elif "L" in upper or "W" in upper:
            raise CronError(
                f"{item!r} in the day-of-month field: 'L' and 'W' are only understood as L, L-n, nW "
                "and LW, each as its own list element"
            )
        else:
            plain.append(item)
    days = _parse_plain(",".join(plain), DOM, constructs) if plain else frozenset()
    return DaySpec(
        days=days,
        last_offsets=frozenset(offsets),
        nearest_weekdays=frozenset(nearest),
        last_weekday=last_weekday,
    )


def _parse_dow(text: str, constructs: set[str]) -> WeekdaySpec | None:
    if text in ("*", "?"):
        return None
    plain: list[str] = []
    nth: set[tuple[int, int]] = set()
    last: set[int] = set()
    for item in text.split(","):
        if m := _DOW_NTH.match(item):
            weekday = _number(m.group(1), DOW, item) % 7
            n = _int(m.group(2))
            if not 1 <= n <= 5:
                raise CronError(f"{_shown(item)!r} in the day-of-week field: '#' takes 1 to 5 (the n-th weekday of the month)")
            nth.add((weekday, n))
            constructs.add("#")
        elif m := _DOW_LAST.match(item):
            weekday = _number(m.group(1), DOW, item) % 7
            last.add(weekday)
            constructs.add("xL")
        elif item.upper() == "L":
            raise CronError(
                "'L' alone in the day-of-week field is ambiguous across dialects; "
                "write SAT for Saturday or xL (e.g. 5L or FRIL) for the last x-day of the month"
            )
        elif "#" in item or item.upper().endswith("L"):
            raise CronError(f"{item!r} in the day-of-week field: use x#n (e.g. MON#2) or xL (e.g. 5L)")
        else:
            plain.append(item)
    weekdays = _parse_plain(",".join(plain), DOW, constructs) if plain else frozenset()
    return WeekdaySpec(weekdays=weekdays, nth=frozenset(nth), last=frozenset(last))


def _check_satisfiable(spec: CronSpec) -> None:
    """Refuse expressions that can never fire, which systemd would accept silently."""
    if spec.dow is not None or spec.dom is None:
        return
    dom = spec.dom
    if dom.last_offsets or dom.nearest_weekdays or dom.last_weekday:
        return
    longest = max(MAX_DAYS[m] for m in spec.months)
    if min(dom.days) > longest:
        months = ",".join(MONTH_NAMES[m - 1] for m in sorted(spec.months))
        raise CronError(
            f"{spec.expression!r} never fires: no month in {months} has day {min(dom.days)}"
        )
