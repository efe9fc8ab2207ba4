"""Small text checks shared by the config, cron and unit-rendering code."""

from __future__ import annotations


def first_control_char(text: str) -> str | None:
    """Return the first ASCII control character (C0 or DEL) in ``text``, or None.

    Such a character in a value written into a unit file would end the line and
    start a new directive, so every value memsched writes is checked with this.
    """
    return next((c for c in text if ord(c) < 32 or ord(c) == 127), None)
