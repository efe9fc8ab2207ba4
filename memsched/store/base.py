"""The storage interface: what building, rollups, ingest and the CLI need from a store.

SQLite (:mod:`memsched.store.sqlite`) is the one implementation; another engine
implements these protocols. Compaction is engine-specific and lives with the
engine's job (:mod:`memsched.jobs.compaction` for SQLite).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol, Sequence

from memsched.store.models import (
    Checkpoint,
    DayChange,
    DayPlan,
    Event,
    Grip,
    NodeContent,
    PendingDay,
    SegmentInfo,
    StaleNode,
    TocNode,
)


class DayView(Protocol):
    """One day's segmentation state, seen inside the transaction that rebuilds it."""

    day: int
    min_new_ts: int

    def segments(self) -> list[SegmentInfo]:
        """Return the day's live segments in order."""
        ...

    def events(self, start: tuple[int, str] | None = None, end: tuple[int, str] | None = None, text_chars: int = 1000) -> list[Event]:
        """Return the day's events between (ts, event_id) bounds, inclusive, texts cut to ``text_chars``."""
        ...


class EventSink(Protocol):
    """Receives validated event rows inside one transaction."""

    inserted: int

    def insert(self, rows: Sequence[tuple]) -> int:
        """Insert rows; return how many were new."""
        ...

    def rollback(self) -> None:
        """Discard the whole batch."""
        ...


class Store(Protocol):
    """A memory store. Open it with :func:`memsched.store.open_store`; close it (or use ``with``)."""

    path: Path

    def close(self) -> None: ...
    def __enter__(self) -> Store: ...
    def __exit__(self, *exc: object) -> None: ...

    def event_writer(self) -> AbstractContextManager[EventSink]:
        """Return a context manager around one all-or-nothing batch of events."""
        ...

    def count_events(self) -> int: ...

    def pending_days(self) -> list[PendingDay]:
        """Return the days queued for building, oldest first."""
        ...

    def rebuild_day(self, pending: PendingDay, planner: Callable[[DayView], DayPlan]) -> DayChange:
        """Rebuild one day atomically with the plan ``planner`` makes from its state; return what changed.

        Only ``pending.day`` counts: the queue entry is read again inside the write
        transaction (another process may have built and re-queued the day since
        ``pending`` was read); a day no longer queued is left alone (empty change).
        """
        ...

    def get_node(self, node_id: str, version: int | None = None) -> TocNode | None: ...
    def list_nodes(self, level: str | None = None) -> list[TocNode]: ...
    def version_numbers(self, node_id: str) -> list[int]: ...
    def count_versions(self) -> int: ...
    def grips_of(self, node_id: str) -> list[Grip]: ...
    def segment_info(self, node_id: str) -> SegmentInfo | None: ...

    def stale_nodes(self, level: str, closed_before_ms: int) -> list[StaleNode]:
        """Return the nodes of a level needing a rollup whose period ended by ``closed_before_ms``."""
        ...

    def children_content(self, node_id: str) -> list[tuple[str, str, bool, NodeContent]]:
        """Return (node_id, level, summarized, content) of a node's children, in time order."""
        ...

    def commit_rollup(self, node: StaleNode, content: NodeContent) -> bool | None:
        """Store a rollup result atomically; True: version written, False: unchanged, None: already done."""
        ...

    def checkpoint(self, level: str) -> Checkpoint | None: ...
