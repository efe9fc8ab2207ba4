"""Small text helpers shared by the config, cron, unit-rendering, store and summarizer code."""

from __future__ import annotations


def first_control_char(text: str) -> str | None:
    """Return the first ASCII control character (C0 or DEL) in ``text``, or None.

    Such a character in a value written into a unit file would end the line and
    start a new directive, so every value memsched writes is checked with this.
    """
    return next((c for c in text if ord(c) < 32 or ord(c) == 127), None)


def clip(text: str, limit: int) -> str:
    """Return ``text`` with whitespace collapsed, cut at a word boundary to at most ``limit`` chars (with "...")."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 3]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "..."
