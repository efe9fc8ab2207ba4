"""Durations as config values: seconds as a number, or systemd-style text ("5min", "1h 30min").

The one rule of a duration, shared by config validation and the unit renderer: the text
is read with systemd's own units (parse_time() in src/basic/time-util.c, case-sensitive
as there), narrowed to what reads back unchanged: whole milliseconds, no ambiguous ``M``,
finite, at most :data:`DURATION_MAX_MS`. Rendered for systemd as ``Ns`` or ``Nms``.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

# systemd's time span units, in milliseconds. Left out: "M" (a month in systemd, a minute to many
# readers: ambiguous) and us/usec/µs/ns/nsec (memsched keeps durations in whole milliseconds).
DURATION_UNITS_MS = {
    "ms": 1,
    "msec": 1,
    "s": 1000,
    "sec": 1000,
    "second": 1000,
    "seconds": 1000,
    "m": 60_000,
    "min": 60_000,
    "minute": 60_000,
    "minutes": 60_000,
    "h": 3_600_000,
    "hr": 3_600_000,
    "hour": 3_600_000,
    "hours": 3_600_000,
    "d": 86_400_000,
    "day": 86_400_000,
    "days": 86_400_000,
    "w": 604_800_000,
    "week": 604_800_000,
    "weeks": 604_800_000,
    "month": 2_629_800_000,  # 30.44 days, as systemd counts a month
    "months": 2_629_800_000,
    "y": 31_557_600_000,  # 365.25 days
    "year": 31_557_600_000,
    "years": 31_557_600_000,
}
_SUB_MS_UNITS = ("us", "usec", "µs", "μs", "ns", "nsec")

# Longest duration any key takes unless its schema entry says less: systemd's "1y". Far below
# systemd's own limit (2^64 µs) and below what Python's timeouts take (threading.TIMEOUT_MAX).
DURATION_MAX_MS = 31_557_600_000
EXPECTED = 'expected seconds (e.g. 300) or a duration such as "5min", "1h 30min", "250ms"'
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)[ ]*([^0-9. ]*)[ ]*", re.ASCII)


def parse_duration_ms(value: object, maximum_ms: int = DURATION_MAX_MS) -> int:
    """Return a duration in whole milliseconds, from 0 to ``maximum_ms``.

    Accepts a non-negative, finite number of seconds (int or float) or text: one or more
    ``<number>[ ]<unit>`` parts (``"300"``, ``"5min"``, ``"1h 30min"``, ``"250ms"``), a part
    without a unit being seconds, as in systemd. Refuses ``M`` (a month in systemd), units
    finer than a millisecond, fractions of a millisecond, and more than ``maximum_ms``.
    Raises ValueError saying what is expected.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(EXPECTED)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number; {EXPECTED}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"must not be negative; {EXPECTED}")
        # repr() of a float is the shortest text that reads back as it, so 0.001 is exactly 1 ms.
        total = Fraction(value) * 1000 if isinstance(value, int) else Fraction(repr(value)) * 1000
    else:
        total = _parse_text(value)
    if total > maximum_ms:
        raise ValueError(f"{_shown(value)} is longer than the maximum, {humanize_ms(maximum_ms)}")
    if total.denominator != 1:
        raise ValueError(f"{_shown(value)} has a fraction of a millisecond; durations are whole milliseconds")
    return int(total)


def _shown(value: object) -> str:
    if isinstance(value, int) and value.bit_length() > 128:
        return "a number that large"  # repr() of an int past 4300 digits raises in Python 3.11
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_text(value: str) -> Fraction:
    text = value.strip(" ")
    if not text:
        raise ValueError(f"is empty; {EXPECTED}")
    total = Fraction(0)
    pos = 0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            raise ValueError(f"{_shown(value)} is not a duration; {EXPECTED}")
        number, unit = match.groups()
        unit = unit or "s"
        if unit not in DURATION_UNITS_MS:
            raise ValueError(f"{_shown(value)}: {_unit_problem(unit)}")
        whole, _, fraction = number.partition(".")
        whole, fraction = whole.lstrip("0") or "0", fraction.rstrip("0")
        # Past these lengths the part is over the maximum or finer than a millisecond for every
        # unit; checking first keeps Python's int() from refusing (or spending time on) huge digit strings.
        if len(whole) > 20:
            raise ValueError(f"{_shown(value)} is longer than the maximum, {humanize_ms(DURATION_MAX_MS)}")
        if len(fraction) > 30:
            raise ValueError(f"{_shown(value)} has a fraction of a millisecond; durations are whole milliseconds")
        total += Fraction(f"{whole}.{fraction or 0}") * DURATION_UNITS_MS[unit]
        pos = match.end()
    return total


def _unit_problem(unit: str) -> str:
    if unit == "M":
        return "'M' is a month in systemd and a minute to many readers; write 'min' or 'month'"
    if unit in _SUB_MS_UNITS:
        return f"unit {unit!r} is finer than memsched's durations, which are whole milliseconds"
    return f"unknown unit {unit[:20]!r} (units: ms, s, min, h, d, w, month, y, and their long names)"


def format_duration_ms(ms: int) -> str:
    """Return a systemd time span for ``ms`` milliseconds: ``"300s"``, ``"250ms"``, ``"0"``."""
    if ms == 0:
        return "0"
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"


def humanize_ms(ms: int) -> str:
    """Return a short, exact form (``"5min"``, ``"1h 30min"``, ``"250ms"``) that parses back to ``ms``."""
    if ms == 0:
        return "0"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            count, ms = divmod(ms, size)
            parts.append(f"{count}{unit}")
    return " ".join(parts)
