"""Building the TOC from events: segment each day with new events, link segments to their periods.

Incremental: ingest queues every day it added events to (with the earliest new
event's time). Building a queued day re-runs segmentation from the last existing
segment that starts before the earliest new event (everything before it cannot
change, see :mod:`memsched.store.segment`), so appending to today touches only its
last segment, and the result always equals segmenting the whole day from scratch.

Late events: an event for an already segmented (even already rolled-up) day is
handled the same way. The day is re-segmented from the affected segment on;
segments whose content changed get a new version, segments that no longer exist
are retired (kept, with their versions, but unlinked from the day), and the day is
marked stale, so the next rollup re-rolls it and, if its summary changes, its
week, month and year in turn.

Segment nodes are summarised by the summarizer the caller passes in. Every caller
(ingest, the rollup job) passes the local extractive one, always: building runs
inside ingest, must never wait on a network, and must give the same segments
whichever process builds them. The summarizer is an argument rather than an import
because summarizers sit above the store (they read its events and write its
bullets); the store never imports upward. Each segment bullet gets a grip pointing
back to the events it was drawn from.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from memsched.store.base import DayView
from memsched.store.models import Bullet, DayChange, DayPlan, Event, Grip, NodeContent, PlannedSegment, SegmentInfo
from memsched.store.periods import chain_for_day, date_of_day_number, segment_node_id, segment_title
from memsched.store.segment import Segment, split_segments
from memsched.text import clip

GRIP_EXCERPT_CHARS = 200
TEXT_CHARS_FOR_SUMMARY = 1000  # event text read back for summarising is cut to this


class SegmentSummary(Protocol):
    """What building needs of a summary: a title, bullets (with the events each was drawn from) and keywords."""

    @property
    def title(self) -> str: ...
    @property
    def bullets(self) -> tuple[Bullet, ...]: ...
    @property
    def keywords(self) -> tuple[str, ...]: ...


class SegmentSummarizer(Protocol):
    """What building needs of a summarizer (``memsched.summarize.LocalSummarizer`` is the one callers pass)."""

    def summarize_events(self, events: Sequence[Event]) -> SegmentSummary:
        """Return the summary of a segment's events (in order)."""
        ...


@dataclass
class BuildResult:
    """What a build did."""

    days_built: int = 0
    nodes_created: int = 0
    segments_written: int = 0
    segments_retired: int = 0
    versions_written: int = 0
    interrupted: bool = False

    def add(self, change: DayChange) -> None:
        self.days_built += 1
        self.nodes_created += change.nodes_created
        self.segments_written += change.segments_written
        self.segments_retired += change.segments_retired
        self.versions_written += change.versions_written

    def as_metadata(self) -> dict[str, str]:
        return {
            "days_built": str(self.days_built),
            "segments_written": str(self.segments_written),
            "segments_retired": str(self.segments_retired),
        }


def _grip_id(first: str, last: str) -> str:
    return f"grip:{first}" if first == last else f"grip:{first}:{last}"


def plan_segment(segment: Segment, day: int, summarizer: SegmentSummarizer) -> PlannedSegment:
    """Return the node content, placement and grips of one segment, summarised by ``summarizer``."""
    first, last = segment.first, segment.last
    node_id = segment_node_id(date_of_day_number(day), first.event_id)
    summary = summarizer.summarize_events(segment.events)
    by_id = {e.event_id: e for e in segment.events}
    bullets, grips = [], []
    for bullet in summary.bullets:
        start_id, end_id = bullet.source_events or (first.event_id, last.event_id)
        grip_id = _grip_id(start_id, end_id)
        anchor = by_id[start_id]
        grips.append(Grip(grip_id, clip(anchor.text, GRIP_EXCERPT_CHARS) or bullet.text[:GRIP_EXCERPT_CHARS], start_id, end_id, anchor.timestamp, anchor.event_type, node_id))
        bullets.append(Bullet(bullet.text, (grip_id,)))
    info = SegmentInfo(
        node_id,
        day,
        first.timestamp,
        first.event_id,
        last.timestamp,
        last.event_id,
        len(segment.events),
        segment.tokens,
        tuple(e.event_id for e in segment.overlap),
    )
    content = NodeContent(segment_title(first.timestamp), summary.title, tuple(bullets), summary.keywords)
    return PlannedSegment(info, content, tuple(dict.fromkeys(grips)))


def plan_day(state: DayView, summarizer: SegmentSummarizer) -> DayPlan:
    """Return the plan for one queued day: re-segment from the first segment new events can affect.

    Segments are summarised by ``summarizer``; what it raises propagates.
    """
    existing: list[SegmentInfo] = state.segments()
    starts = [s.start_ts for s in existing]
    resume = bisect.bisect_left(starts, state.min_new_ts) - 1  # last segment starting strictly before the new events
    if resume >= 0:
        head = existing[resume]
        events = state.events(start=(head.start_ts, head.start_event_id), text_chars=TEXT_CHARS_FOR_SUMMARY)
    else:
        events = state.events(text_chars=TEXT_CHARS_FOR_SUMMARY)
    previous = []
    if resume >= 1:
        before = existing[resume - 1]
        previous = state.events(start=(before.start_ts, before.start_event_id), end=(before.end_ts, before.end_event_id), text_chars=TEXT_CHARS_FOR_SUMMARY)
    segments = [plan_segment(s, state.day, summarizer) for s in split_segments(events, previous)]
    kept = {p.info.node_id for p in segments}
    retire = tuple(s.node_id for s in existing[max(resume, 0):] if s.node_id not in kept)
    return DayPlan(tuple(chain_for_day(date_of_day_number(state.day))), tuple(segments), retire)


def build_pending(
    store,
    *,
    summarizer: SegmentSummarizer,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> BuildResult:
    """Segment every queued day and link the new segments into the TOC, one transaction per day.

    ``summarizer`` summarises the segments (pass ``memsched.summarize.LocalSummarizer()``:
    see the module docstring for why it must be the local one). Returns a
    :class:`BuildResult`; stops between days when ``should_stop()`` is true
    (``interrupted``; the remaining days stay queued). Raises store errors.
    """

    def planner(state: DayView) -> DayPlan:
        return plan_day(state, summarizer)

    result = BuildResult()
    pending = store.pending_days()
    for done, day in enumerate(pending):
        if should_stop is not None and should_stop():
            result.interrupted = True
            break
        if progress is not None:
            progress(done, len(pending), f"building {date_of_day_number(day.day).isoformat()}")
        result.add(store.rebuild_day(day, planner))
    return result
