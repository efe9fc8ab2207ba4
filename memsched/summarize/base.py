"""The summarizer interface: what every summarizer takes and returns.

``summarize_events(events)`` summarises a segment's events; ``summarize_children(summaries)``
summarises the children of a period (days, weeks, months, years). Both return a
:class:`Summary`: a one-line title, 3 to 5 bullets and 3 to 7 keywords.

How titles are used: every TOC node keeps its own title (a period's "January 2024",
a segment's "January 15, 2024 at 14:30"), so navigation never depends on a model. The
summarizer's title is stored beside it as the node's ``summary_title`` (its topic line),
shown by ``memsched toc`` and handed to the parent's summarizer as the child's title.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from memsched.errors import MemschedError
from memsched.store.models import Bullet, Event
from memsched.text import clip

MIN_BULLETS, MAX_BULLETS = 3, 5
MIN_KEYWORDS, MAX_KEYWORDS = 3, 7
MAX_TITLE_CHARS = 120
MAX_BULLET_CHARS = 400


class SummarizerError(MemschedError):
    """A summarizer could not produce a summary (API unreachable, refused, or answering nonsense)."""


class SummarizerStopped(SummarizerError):
    """The summarizer gave up because a stop was requested (a safe point: nothing was written)."""


@dataclass(frozen=True)
class Summary:
    """A title, 3-5 bullets and 3-7 keywords.

    ``label`` is input-only context for :meth:`Summarizer.summarize_children`: the
    child node's own title (e.g. "Monday, January 15, 2024"); summarizers leave it empty.
    """

    title: str
    bullets: tuple[Bullet, ...]
    keywords: tuple[str, ...]
    label: str = ""


@runtime_checkable
class Summarizer(Protocol):
    """Anything that can summarise events and children. ``name`` identifies it in run metadata."""

    name: str

    def summarize_events(self, events: Sequence[Event]) -> Summary:
        """Return the summary of a segment's events (in order). Raises :class:`SummarizerError`."""
        ...

    def summarize_children(self, summaries: Sequence[Summary]) -> Summary:
        """Return the summary of a period from its children's summaries (in order). Raises :class:`SummarizerError`."""
        ...


def checked_summary(title: object, bullets: object, keywords: object) -> Summary:
    """Return a :class:`Summary` built from loosely typed parts (an API's JSON).

    Bullets may be strings or ``{"text": ...}`` objects. Texts are whitespace-collapsed
    and clipped; duplicate keywords are dropped. Raises ValueError saying what is wrong
    (not a string, 2 bullets, 9 keywords...).
    """
    if not isinstance(title, str) or not title.strip():
        raise ValueError("title must be a non-empty string")
    if not isinstance(bullets, list):
        raise ValueError("bullets must be a list")
    texts = []
    for item in bullets:
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str) or not text.strip():
            raise ValueError("each bullet must be a non-empty string")
        texts.append(clip(text, MAX_BULLET_CHARS))
    if not MIN_BULLETS <= len(texts) <= MAX_BULLETS:
        raise ValueError(f"expected {MIN_BULLETS} to {MAX_BULLETS} bullets, got {len(texts)}")
    if not isinstance(keywords, list) or not all(isinstance(k, str) and k.strip() for k in keywords):
        raise ValueError("keywords must be a list of non-empty strings")
    unique = list(dict.fromkeys(" ".join(k.split()).lower() for k in keywords))
    if not MIN_KEYWORDS <= len(unique) <= MAX_KEYWORDS:
        raise ValueError(f"expected {MIN_KEYWORDS} to {MAX_KEYWORDS} distinct keywords, got {len(unique)}")
    return Summary(clip(title, MAX_TITLE_CHARS), tuple(Bullet(t) for t in texts), tuple(unique))
