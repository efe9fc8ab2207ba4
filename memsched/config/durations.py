"""Durations as config values: seconds as a number, or systemd-style text ("5min", "1h 30min")."""

from __future__ import annotations

import re

_UNITS_MS = {
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
}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")


def parse_duration_ms(value: object) -> int:
    """Return a duration in milliseconds.

    Accepts a non-negative number of seconds (int or float) or text such as
    ``"300"``, ``"5min"``, ``"1h 30min"``, ``"250ms"``.
    Raises ValueError with a message saying what is expected.
    """
    expected = 'expected seconds (e.g. 300) or a duration such as "5min", "1h 30min", "250ms"'
    if isinstance(value, bool):
        raise ValueError(expected)
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"must not be negative; {expected}")
        return int(round(value * 1000))
    if not isinstance(value, str):
        raise ValueError(expected)
    text = value.strip().lower()
    if not text:
        raise ValueError(f"is empty; {expected}")
    total = 0.0
    pos = 0
    for match in _PART.finditer(text):
        if text[pos : match.start()].strip():
            raise ValueError(f"{value!r} is not a duration; {expected}")
        number, unit = match.groups()
        unit = unit or "s"
        if unit not in _UNITS_MS:
            raise ValueError(f"{value!r}: unknown unit {unit!r}; {expected}")
        total += float(number) * _UNITS_MS[unit]
        pos = match.end()
    if pos == 0 or text[pos:].strip():
        raise ValueError(f"{value!r} is not a duration; {expected}")
    return int(round(total))


def format_duration_ms(ms: int) -> str:
    """Return a systemd time span for ``ms`` milliseconds: ``"300s"``, ``"250ms"``, ``"0"``."""
    if ms == 0:
        return "0"
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"


def humanize_ms(ms: int) -> str:
    """Return a short human form (``"5min"``, ``"1h 30min"``, ``"250ms"``) for docs and tables."""
    if ms == 0:
        return "0"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            count, ms = divmod(ms, size)
            parts.append(f"{count}{unit}")
    return " ".join(parts)
