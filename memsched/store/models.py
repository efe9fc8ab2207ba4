"""The memory store's data shapes (REFERENCE.md, "Data model") and its errors."""

from __future__ import annotations

from dataclasses import dataclass, field

from memsched.errors import MemschedError
from memsched.store.periods import Period

EVENT_TYPES = (
    "session_start",
    "user_message",
    "assistant_message",
    "tool_result",
    "assistant_stop",
    "subagent_start",
    "subagent_stop",
    "session_end",
)
ROLES = ("user", "assistant", "system", "tool")
PLACEHOLDER_TEXT = "Summary pending..."


class StoreError(MemschedError):
    """The memory store cannot be opened or used (not a database, newer schema, disk full...)."""


class StoreBusyError(StoreError):
    """Another process held the store's lock for longer than we are willing to wait."""


@dataclass(frozen=True, slots=True)
class Event:
    """One conversation event.

    ``tokens`` is the approximate token count used by segmentation
    (:mod:`memsched.store.tokens`); events read back for building carry it, and their
    ``text`` may be cut (see :data:`memsched.store.build.TEXT_CHARS_FOR_SUMMARY`).
    """

    event_id: str
    session_id: str
    timestamp: int
    event_type: str
    role: str
    text: str
    metadata: dict[str, str] = field(default_factory=dict)
    agent: str | None = None
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class Bullet:
    """One bullet of a node: its text and the grips that back it.

    ``source_events`` ((first, last) event id) is set by event summarizers so the
    builder can create grips; it is not stored.
    """

    text: str
    grip_ids: tuple[str, ...] = ()
    source_events: tuple[str, str] | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, object]:
        return {"text": self.text, "grip_ids": list(self.grip_ids)}


PLACEHOLDER_BULLETS = (Bullet(PLACEHOLDER_TEXT),)


@dataclass(frozen=True, slots=True)
class Grip:
    """Provenance from a segment bullet back to the events it came from."""

    grip_id: str
    excerpt: str  # at most 200 characters
    event_id_start: str
    event_id_end: str
    timestamp: int
    source: str
    toc_node_id: str

    def as_dict(self) -> dict[str, object]:
        return {
            "grip_id": self.grip_id,
            "excerpt": self.excerpt,
            "event_id_start": self.event_id_start,
            "event_id_end": self.event_id_end,
            "timestamp": self.timestamp,
            "source": self.source,
            "toc_node_id": self.toc_node_id,
        }


@dataclass(frozen=True, slots=True)
class NodeContent:
    """What a version of a node holds besides its identity.

    ``title`` is the node's own title (a period's or a segment's time title);
    ``summary_title`` is the summarizer's one-line title (empty for a placeholder).
    """

    title: str
    summary_title: str
    bullets: tuple[Bullet, ...]
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class TocNode:
    """A TOC node at its latest version (or at the version asked for).

    ``status``: ``pending`` (placeholder, never summarised), ``stale`` (summarised,
    but a child changed since), ``current``.
    """

    node_id: str
    level: str
    title: str
    summary_title: str
    start_time: int
    end_time: int
    bullets: tuple[Bullet, ...]
    keywords: tuple[str, ...]
    child_node_ids: tuple[str, ...]
    version: int
    created_at: int
    parent_id: str | None
    status: str

    def as_dict(self) -> dict[str, object]:
        return {
            "node_id": self.node_id,
            "level": self.level,
            "title": self.title,
            "summary_title": self.summary_title,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "bullets": [b.as_dict() for b in self.bullets],
            "keywords": list(self.keywords),
            "child_node_ids": list(self.child_node_ids),
            "version": self.version,
            "created_at": self.created_at,
            "parent_id": self.parent_id,
            "status": self.status,
        }


@dataclass(frozen=True)
class SegmentInfo:
    """Where a live segment sits in its day: its first and last own event (ts, id), counts, overlap."""

    node_id: str
    day: int
    start_ts: int
    start_event_id: str
    end_ts: int
    end_event_id: str
    event_count: int
    tokens: int
    overlap_event_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class PendingDay:
    """A day with events not yet segmented: the earliest new event's time and the queue generation."""

    day: int
    min_new_ts: int
    generation: int


@dataclass(frozen=True)
class StaleNode:
    """A period node whose summary is missing or out of date; ``generation`` is its dirty generation."""

    node_id: str
    level: str
    start_ms: int
    end_ms: int
    generation: int


@dataclass(frozen=True)
class Checkpoint:
    """Progress of one rollup level: the last node committed, its period end, and totals."""

    level: str
    last_node_id: str | None
    last_end_ms: int | None
    nodes_rolled: int
    versions_written: int
    updated_at: int


@dataclass(frozen=True)
class PlannedSegment:
    """A segment as the planner computed it: placement, content (title, bullets, keywords) and grips."""

    info: SegmentInfo
    content: NodeContent
    grips: tuple[Grip, ...]


@dataclass(frozen=True)
class DayPlan:
    """What rebuilding a day must store.

    ``periods`` is the day's chain [day, week, month, year]; ``segments`` are the
    day's segments from the first re-segmented one on; ``retire`` lists segment node
    ids from that point on that the new segmentation no longer has.
    """

    periods: tuple[Period, ...]
    segments: tuple[PlannedSegment, ...]
    retire: tuple[str, ...]


@dataclass
class DayChange:
    """What rebuilding a day changed."""

    nodes_created: int = 0
    segments_written: int = 0
    segments_retired: int = 0
    versions_written: int = 0
    day_changed: bool = False
