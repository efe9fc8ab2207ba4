"""Segmentation: cut one UTC day's events, in (timestamp, event_id) order, into segments.

Rules (REFERENCE.md), with the choices made where it is silent:

* A new segment starts when the gap to the previous event is more than 30 minutes, or
  when adding the event would take the segment past 4000 tokens (token counts come
  from :mod:`memsched.store.tokens`, tool results cut to 1000 characters first). An
  event bigger than the budget on its own gets a segment of its own.
* Segments never cross midnight UTC: a segment is a child of one day node.
* A segment carries, as overlap context, the previous segment's trailing events that
  lie within 5 minutes of that segment's last event and fit in 500 tokens together
  (walking back from the last event, stopping at the first that does not fit). The
  overlap is context only: it is not counted in the segment's 4000-token budget, is
  not a source of its bullets, and does not cross midnight either.

Segmentation is a greedy left-to-right scan whose only state at a segment boundary is
the previous segment's events. Re-running it from the start of any existing segment,
given the segment before it, therefore yields exactly what a full re-run of the day
would: this is what makes incremental building equal to building from scratch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from memsched.store.models import Event

GAP_MS = 30 * 60 * 1000
MAX_TOKENS = 4000
OVERLAP_MS = 5 * 60 * 1000
OVERLAP_TOKENS = 500


@dataclass(frozen=True)
class Segment:
    """A run of one day's events, with the previous segment's tail as context."""

    events: tuple[Event, ...]
    tokens: int
    overlap: tuple[Event, ...] = ()

    @property
    def first(self) -> Event:
        return self.events[0]

    @property
    def last(self) -> Event:
        return self.events[-1]


def trailing_context(events: Sequence[Event]) -> tuple[Event, ...]:
    """Return the overlap a segment made of ``events`` hands to the next one (chronological)."""
    if not events:
        return ()
    end_ts = events[-1].timestamp
    taken: list[Event] = []
    budget = OVERLAP_TOKENS
    for event in reversed(events):
        if end_ts - event.timestamp > OVERLAP_MS or event.tokens > budget:
            break
        budget -= event.tokens
        taken.append(event)
    taken.reverse()
    return tuple(taken)


def split_segments(events: Iterable[Event], previous: Sequence[Event] = ()) -> list[Segment]:
    """Return the segments of ``events`` (sorted by (timestamp, event_id), one UTC day).

    ``previous`` is the own events of the segment just before the first event (empty at
    the start of a day); it only provides the first segment's overlap context.
    """
    segments: list[Segment] = []
    overlap = trailing_context(previous)
    current: list[Event] = []
    tokens = 0
    for event in events:
        if current and (event.timestamp - current[-1].timestamp > GAP_MS or tokens + event.tokens > MAX_TOKENS):
            segments.append(Segment(tuple(current), tokens, overlap))
            overlap = trailing_context(current)
            current, tokens = [], 0
        current.append(event)
        tokens += event.tokens
    if current:
        segments.append(Segment(tuple(current), tokens, overlap))
    return segments
