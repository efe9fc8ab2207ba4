"""The SQLite memory store: one file in WAL mode, shared by several processes.

Concurrency rules, so that no caller ever sees "database is locked":

* Every write is one short ``BEGIN IMMEDIATE`` transaction: the write lock is taken
  up front (waiting up to ``busy_timeout`` in SQLite's busy handler), so a transaction
  never fails half-way on a lock upgrade.
* Every read runs in a deferred transaction (one consistent snapshot) that is
  started, and retried on SQLITE_BUSY, before the first query.
* Whatever still reports SQLITE_BUSY/LOCKED (WAL recovery, checkpoints, VACUUM) is
  retried with backoff until ``busy_timeout`` has passed in total; then a
  :class:`StoreBusyError` explains what was busy.

Other SQLite failures (not a database, read-only, disk full, I/O error) become
:class:`StoreError` naming the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from memsched.errors import PermissionDenied
from memsched.statefile import ensure_directory, prepare_database
from memsched.store.migrations import SCHEMA_VERSION, migrate, schema_version
from memsched.store.models import (
    PLACEHOLDER_BULLETS,
    Bullet,
    Checkpoint,
    DayChange,
    DayPlan,
    Event,
    Grip,
    NodeContent,
    PendingDay,
    SegmentInfo,
    StaleNode,
    StoreBusyError,
    StoreError,
    TocNode,
)
from memsched.store.periods import DAY_MS

DEFAULT_BUSY_TIMEOUT_MS = 30_000
CACHE_KIB = 16_384  # page cache per connection; bounded so a year-long ingest stays small in RSS
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024  # the WAL file is truncated back to this after a checkpoint
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
_FATAL_CODES = {8: "the store is read-only", 10: "disk I/O error", 11: "the store file is corrupt", 13: "the disk is full", 14: "cannot open the store file", 26: "not an SQLite database"}
_INSERT_EVENT = (
    "INSERT OR IGNORE INTO events (event_id, session_id, ts, event_type, role, text, metadata, agent, tokens) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_NODE_COLUMNS = (
    "n.node_id, n.level, n.start_ms, n.end_ms, n.parent_id, n.latest_version, n.summarized, "
    "n.dirty_gen, n.rolled_gen, v.title, v.summary_title, v.bullets, v.keywords, v.created_at, v.version"
)
T = TypeVar("T")


def now_ms() -> int:
    """Return the wall clock in ms since the epoch."""
    return time.time_ns() // 1_000_000


def _is_busy(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


def encode_bullets(bullets: Sequence[Bullet]) -> str:
    """Return the stored (canonical JSON) form of bullets."""
    return json.dumps([b.as_dict() for b in bullets], ensure_ascii=False, separators=(",", ":"))


def decode_bullets(text: str) -> tuple[Bullet, ...]:
    """Return bullets from their stored form."""
    return tuple(Bullet(b["text"], tuple(b["grip_ids"])) for b in json.loads(text))


def _encode_content(content: NodeContent) -> tuple[str, str, str, str]:
    keywords = json.dumps(list(content.keywords), ensure_ascii=False, separators=(",", ":"))
    return content.title, content.summary_title, encode_bullets(content.bullets), keywords


class EventWriter:
    """Inserts events inside one IMMEDIATE transaction opened by :meth:`SqliteStore.event_writer`.

    ``inserted`` counts new rows (duplicates of stored event ids are ignored).
    """

    def __init__(self, store: SqliteStore):
        self._store = store
        self._days: dict[int, int] = {}
        self._open = False
        self.inserted = 0

    def insert(self, rows: Sequence[tuple]) -> int:
        """Insert ``rows`` (event_id, session_id, ts, event_type, role, text, metadata_json, agent, tokens).

        Returns how many were new. The transaction begins with the first batch.
        """
        if not rows:
            return 0
        conn = self._store.connection
        if not self._open:
            self._store.begin_immediate("ingest")
            self._open = True
        before = conn.total_changes
        conn.executemany(_INSERT_EVENT, rows)
        added = conn.total_changes - before
        if added:
            days = self._days
            for row in rows:  # when some rows were duplicates we enqueue their days too: harmless, rebuilt identically
                ts = row[2]
                day = ts // DAY_MS
                known = days.get(day)
                if known is None or ts < known:
                    days[day] = ts
        self.inserted += added
        return added

    def rollback(self) -> None:
        """Discard everything inserted so far."""
        if self._open:
            self._store.connection.execute("ROLLBACK")
            self._open = False

    def commit(self) -> None:
        """Queue the touched days for building and commit (a no-op after :meth:`rollback`)."""
        if not self._open:
            return
        # The generation is the largest event seq: events are never deleted, so it grows with
        # every enqueue (one always follows new rows), even after a builder deleted the row.
        # A builder that read an older generation can then never dequeue this one.
        self._store.connection.executemany(
            "INSERT INTO build_queue (day, min_new_ts, generation) VALUES (?, ?, (SELECT coalesce(max(seq), 0) FROM events)) "
            "ON CONFLICT (day) DO UPDATE SET min_new_ts = min(min_new_ts, excluded.min_new_ts), generation = excluded.generation",
            sorted(self._days.items()),
        )
        self._store.connection.execute("COMMIT")
        self._open = False


class SqliteStore:
    """The memory store in one SQLite file. Construction does no I/O: call :meth:`open`."""

    def __init__(self, path: Path | str, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS):
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None

    # ----------------------------------------------------------------- lifecycle

    def open(self) -> SqliteStore:
        """Open (creating the file and its directory if needed) and migrate the store; return self.

        Raises :class:`StoreError`, :class:`StoreBusyError` or :class:`PermissionDenied`.
        """
        try:
            ensure_directory(str(self.path.parent))
        except PermissionError:
            raise PermissionDenied(f"{self.path.parent}: cannot create the store's directory (permission denied)") from None
        except OSError as exc:
            raise StoreError(f"{self.path.parent}: cannot create the store's directory: {exc.strerror}") from None
        prepare_database(str(self.path))  # root in the service user's directory: the files stay the user's
        if self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
            raise PermissionDenied(f"{self.path}: cannot open the store for writing (permission denied)")
        with self._translated("open"):
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None)
        self._conn = conn
        try:
            self._retry("open", self._configure)
        except BaseException:
            self.close()
            raise
        return self

    def _configure(self) -> None:
        conn = self.connection
        with self._translated("open"):
            if schema_version(conn) == 0 and not conn.execute("SELECT 1 FROM sqlite_schema LIMIT 1").fetchone():
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only possible before the first table
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            if schema_version(conn) != SCHEMA_VERSION:
                with self.write("migrate"):
                    migrate(conn, str(self.path))

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the store is not open")
        return self._conn

    # ------------------------------------------------------ locking and errors

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if _is_busy(exc):
                raise
            code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
            if code in _FATAL_CODES or isinstance(exc, sqlite3.OperationalError):
                reason = _FATAL_CODES.get(code, str(exc))
                raise StoreError(f"{self.path}: {what}: {reason}") from None
            raise

    def _retry(self, what: str, action: Callable[[], T]) -> T:
        """Run ``action``, retrying on SQLITE_BUSY/LOCKED with backoff for up to busy_timeout in total."""
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        delay = 0.02
        while True:
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise StoreBusyError(
                        f"{self.path}: {what}: another process kept the store busy for more than "
                        f"{self.busy_timeout_ms / 1000:g}s; try again later, or raise [store] busy_timeout"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def begin_immediate(self, what: str) -> None:
        """Begin a write transaction, waiting (bounded) for the write lock."""
        self._retry(what, lambda: self.connection.execute("BEGIN IMMEDIATE"))

    @contextmanager
    def write(self, what: str) -> Iterator[sqlite3.Connection]:
        """Run the block in one IMMEDIATE transaction: committed on success, rolled back on any exception."""
        conn = self.connection
        self.begin_immediate(what)
        try:
            with self._translated(what):
                yield conn
                conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def read(self, what: str = "read") -> Iterator[sqlite3.Connection]:
        """Run the block in one read transaction (a consistent snapshot)."""
        conn = self.connection

        def start() -> None:
            conn.execute("BEGIN")
            try:
                conn.execute("SELECT 1 FROM sqlite_schema LIMIT 1").fetchall()  # takes the snapshot now
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        with self._translated(what):
            self._retry(what, start)
        try:
            with self._translated(what):
                yield conn
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    # -------------------------------------------------------------------- events

    @contextmanager
    def event_writer(self) -> Iterator[EventWriter]:
        """Yield an :class:`EventWriter`; commit at the end of the block unless it was rolled back or raised."""
        writer = EventWriter(self)
        try:
            with self._translated("ingest"):
                yield writer
                writer.commit()
        except BaseException:
            writer.rollback()
            raise

    def count_events(self) -> int:
        """Return how many events the store holds."""
        with self.read() as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])

    # ------------------------------------------------------------------ building

    def pending_days(self) -> list[PendingDay]:
        """Return the days with events not segmented yet, oldest first."""
        with self.read() as conn:
            rows = conn.execute("SELECT day, min_new_ts, generation FROM build_queue ORDER BY day").fetchall()
        return [PendingDay(*row) for row in rows]

    def rebuild_day(self, pending: PendingDay, planner: Callable[[DayState], DayPlan]) -> DayChange:
        """Re-segment one day in one IMMEDIATE transaction: load its state, let ``planner`` decide, apply.

        Returns what changed (nothing when the day is no longer queued: another process
        built it). Only ``pending.day`` is used: the queue entry is read again inside the
        transaction, so what is planned (from its earliest new event on) and what is
        dequeued are exactly what the lock holder sees; an entry read earlier may be out
        of date (built and queued again by another process meanwhile).
        """
        with self.write("build") as conn:
            row = conn.execute("SELECT min_new_ts, generation FROM build_queue WHERE day = ?", (pending.day,)).fetchone()
            if row is None:
                return DayChange()
            current = PendingDay(pending.day, *row)
            plan = planner(DayState(conn, current))
            change = _apply_day_plan(conn, plan, now_ms())
            conn.execute("DELETE FROM build_queue WHERE day = ? AND generation = ?", (current.day, current.generation))
        return change

    # -------------------------------------------------------------- reading TOC

    def _node_from_row(self, conn: sqlite3.Connection, row: tuple) -> TocNode:
        node_id, level, start, end, parent, _latest, summarized, dirty, rolled, title, summary_title, bullets, keywords, created, version = row
        children = tuple(r[0] for r in conn.execute("SELECT node_id FROM toc_nodes WHERE parent_id = ? ORDER BY start_ms, node_id", (node_id,)))
        status = "pending" if not summarized else ("stale" if dirty > rolled else "current")
        return TocNode(node_id, level, title, summary_title, start, end, decode_bullets(bullets), tuple(json.loads(keywords)), children, version, created, parent, status)

    def get_node(self, node_id: str, version: int | None = None) -> TocNode | None:
        """Return a node at its latest version (or at ``version``), or None if there is no such node/version."""
        join = "v.version = ?" if version is not None else "v.version = n.latest_version"
        params = (version, node_id) if version is not None else (node_id,)
        with self.read() as conn:
            row = conn.execute(f"SELECT {_NODE_COLUMNS} FROM toc_nodes n JOIN toc_versions v ON v.node_id = n.node_id AND {join} WHERE n.node_id = ?", params).fetchone()
            return self._node_from_row(conn, row) if row else None

    def version_numbers(self, node_id: str) -> list[int]:
        """Return the version numbers a node has, oldest first."""
        with self.read() as conn:
            return [r[0] for r in conn.execute("SELECT version FROM toc_versions WHERE node_id = ? ORDER BY version", (node_id,))]

    def list_nodes(self, level: str | None = None) -> list[TocNode]:
        """Return the live (not retired) nodes, of one level or all, ordered by start time."""
        where = "n.retired = 0" + (" AND n.level = ?" if level else "")
        with self.read() as conn:
            rows = conn.execute(
                f"SELECT {_NODE_COLUMNS} FROM toc_nodes n JOIN toc_versions v ON v.node_id = n.node_id AND v.version = n.latest_version "
                f"WHERE {where} ORDER BY n.start_ms, n.node_id",
                (level,) if level else (),
            ).fetchall()
            return [self._node_from_row(conn, row) for row in rows]

    def count_versions(self) -> int:
        """Return the number of node versions in the store (all nodes)."""
        with self.read() as conn:
            return int(conn.execute("SELECT count(*) FROM toc_versions").fetchone()[0])

    def grips_of(self, node_id: str) -> list[Grip]:
        """Return the grips pointing at a node, oldest first."""
        with self.read() as conn:
            rows = conn.execute(
                "SELECT grip_id, excerpt, event_id_start, event_id_end, ts, source, toc_node_id FROM grips WHERE toc_node_id = ? ORDER BY ts, grip_id",
                (node_id,),
            ).fetchall()
        return [Grip(*row) for row in rows]

    def segment_info(self, node_id: str) -> SegmentInfo | None:
        """Return a live segment's placement, or None."""
        with self.read() as conn:
            row = conn.execute("SELECT * FROM segments WHERE node_id = ?", (node_id,)).fetchone()
        return SegmentInfo(*row[:8], tuple(json.loads(row[8]))) if row else None

    # ------------------------------------------------------------------- rollup

    def stale_nodes(self, level: str, closed_before_ms: int) -> list[StaleNode]:
        """Return the nodes of ``level`` that need a (re-)rollup and ended at or before ``closed_before_ms``."""
        with self.read() as conn:
            rows = conn.execute(
                "SELECT node_id, level, start_ms, end_ms, dirty_gen FROM toc_nodes "
                "WHERE level = ? AND dirty_gen > rolled_gen AND end_ms <= ? AND retired = 0 ORDER BY start_ms",
                (level, closed_before_ms),
            ).fetchall()
        return [StaleNode(*row) for row in rows]

    def children_content(self, node_id: str) -> list[tuple[str, str, bool, NodeContent]]:
        """Return (node_id, level, summarized, content) of a node's children in time order."""
        with self.read() as conn:
            rows = conn.execute(
                "SELECT n.node_id, n.level, n.summarized, v.title, v.summary_title, v.bullets, v.keywords FROM toc_nodes n "
                "JOIN toc_versions v ON v.node_id = n.node_id AND v.version = n.latest_version "
                "WHERE n.parent_id = ? ORDER BY n.start_ms, n.node_id",
                (node_id,),
            ).fetchall()
        return [(r[0], r[1], bool(r[2]), NodeContent(r[3], r[4], decode_bullets(r[5]), tuple(json.loads(r[6])))) for r in rows]

    def commit_rollup(self, node: StaleNode, content: NodeContent) -> bool | None:
        """Store a rollup result, its stale marker and the level checkpoint in one transaction.

        Writes a new version only if ``content`` differs from the latest; a written
        version makes the parent stale. Returns True (version written), False (no
        change), or None when another process already rolled this generation.
        """
        title, summary_title, bullets, keywords = _encode_content(content)
        stamp = now_ms()
        with self.write("rollup") as conn:
            row = conn.execute("SELECT latest_version, rolled_gen, parent_id FROM toc_nodes WHERE node_id = ?", (node.node_id,)).fetchone()
            if row is None or row[1] >= node.generation:
                return None
            latest, _, parent = row
            current = conn.execute("SELECT title, summary_title, bullets, keywords FROM toc_versions WHERE node_id = ? AND version = ?", (node.node_id, latest)).fetchone()
            written = tuple(current) != (title, summary_title, bullets, keywords)
            if written:
                conn.execute(
                    "INSERT INTO toc_versions (node_id, version, title, summary_title, bullets, keywords, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (node.node_id, latest + 1, title, summary_title, bullets, keywords, stamp),
                )
                conn.execute("UPDATE toc_nodes SET latest_version = ? WHERE node_id = ?", (latest + 1, node.node_id))
                if parent is not None:
                    conn.execute("UPDATE toc_nodes SET dirty_gen = dirty_gen + 1 WHERE node_id = ?", (parent,))
            conn.execute("UPDATE toc_nodes SET rolled_gen = ?, summarized = 1 WHERE node_id = ?", (node.generation, node.node_id))
            conn.execute(
                "INSERT INTO rollup_checkpoints (level, last_node_id, last_end_ms, nodes_rolled, versions_written, updated_at) "
                "VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT (level) DO UPDATE SET "
                # The high-water mark and its node move together, and only forward: re-rolling
                # an older period (a late child, a slower concurrent run) does not move them back.
                "last_node_id = CASE WHEN excluded.last_end_ms >= coalesce(last_end_ms, excluded.last_end_ms) THEN excluded.last_node_id ELSE last_node_id END, "
                "last_end_ms = max(coalesce(last_end_ms, excluded.last_end_ms), excluded.last_end_ms), nodes_rolled = nodes_rolled + 1, "
                "versions_written = versions_written + excluded.versions_written, updated_at = excluded.updated_at",
                (node.level, node.node_id, node.end_ms, int(written), stamp),
            )
        return written

    def checkpoint(self, level: str) -> Checkpoint | None:
        """Return the rollup checkpoint of a level, or None before its first rollup."""
        with self.read() as conn:
            row = conn.execute("SELECT * FROM rollup_checkpoints WHERE level = ?", (level,)).fetchone()
        return Checkpoint(*row) if row else None

    # ---------------------------------------------------------- SQLite upkeep

    def file_bytes(self) -> tuple[int, int]:
        """Return the sizes in bytes of the database file and of its WAL file (0 if absent)."""
        def size(path: Path) -> int:
            try:
                return path.stat().st_size
            except FileNotFoundError:
                return 0

        return size(self.path), size(self.path.with_name(self.path.name + "-wal"))

    def pragma(self, statement: str, what: str) -> list[tuple]:
        """Run one PRAGMA (or ANALYZE/VACUUM) outside a transaction, retrying while busy; return its rows."""
        def run() -> list[tuple]:
            with self._translated(what):
                return self.connection.execute(statement).fetchall()

        return self._retry(what, run)


class DayState:
    """One day's segmentation state, read inside the rebuilding transaction."""

    def __init__(self, conn: sqlite3.Connection, pending: PendingDay):
        self._conn = conn
        self.day = pending.day
        self.min_new_ts = pending.min_new_ts

    def segments(self) -> list[SegmentInfo]:
        """Return the day's live segments in order."""
        rows = self._conn.execute("SELECT * FROM segments WHERE day = ? ORDER BY start_ts, start_event_id", (self.day,)).fetchall()
        return [SegmentInfo(*row[:8], tuple(json.loads(row[8]))) for row in rows]

    def events(self, start: tuple[int, str] | None = None, end: tuple[int, str] | None = None, text_chars: int = 1000) -> list[Event]:
        """Return the day's events from ``start`` to ``end`` ((ts, event_id), inclusive; None = day's edge), texts cut to ``text_chars``."""
        low = start[0] if start else self.day * DAY_MS
        high = end[0] if end else self.day * DAY_MS + DAY_MS - 1
        rows = self._conn.execute(
            "SELECT event_id, session_id, ts, event_type, role, substr(text, 1, ?), agent, tokens FROM events "
            "WHERE ts BETWEEN ? AND ? ORDER BY ts, event_id",
            (text_chars, low, high),
        ).fetchall()
        events = [Event(r[0], r[1], r[2], r[3], r[4], r[5], {}, r[6], r[7]) for r in rows]
        if start:
            events = [e for e in events if (e.timestamp, e.event_id) >= start]
        if end:
            events = [e for e in events if (e.timestamp, e.event_id) <= end]
        return events




def _insert_version(conn: sqlite3.Connection, node_id: str, version: int, content: NodeContent, stamp: int) -> None:
    conn.execute(
        "INSERT INTO toc_versions (node_id, version, title, summary_title, bullets, keywords, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (node_id, version, *_encode_content(content), stamp),
    )


def _apply_day_plan(conn: sqlite3.Connection, plan: DayPlan, stamp: int) -> DayChange:
    """Store a day plan inside the caller's transaction; return what changed."""
    change = DayChange()
    # Parents first (year down to day), each created with a placeholder version and
    # linked; a new child makes an existing parent stale.
    for period in reversed(plan.periods):
        created = conn.execute(
            "INSERT OR IGNORE INTO toc_nodes (node_id, level, start_ms, end_ms, parent_id, latest_version, summarized, dirty_gen, rolled_gen, created_at) "
            "VALUES (?, ?, ?, ?, ?, 1, 0, 1, 0, ?)",
            (period.node_id, period.level, period.start_ms, period.end_ms, period.parent_id, stamp),
        ).rowcount
        if created:
            _insert_version(conn, period.node_id, 1, NodeContent(period.title, "", PLACEHOLDER_BULLETS, ()), stamp)
            change.nodes_created += 1
            change.versions_written += 1
            if period.parent_id:
                conn.execute("UPDATE toc_nodes SET dirty_gen = dirty_gen + 1 WHERE node_id = ?", (period.parent_id,))
    day_id = plan.periods[0].node_id
    for planned in plan.segments:
        info = planned.info
        row = conn.execute("SELECT latest_version, retired, start_ms, end_ms FROM toc_nodes WHERE node_id = ?", (info.node_id,)).fetchone()
        changed = False
        if row is None:
            conn.execute(
                "INSERT INTO toc_nodes (node_id, level, start_ms, end_ms, parent_id, latest_version, summarized, created_at) VALUES (?, 'segment', ?, ?, ?, 1, 1, ?)",
                (info.node_id, info.start_ts, info.end_ts, day_id, stamp),
            )
            _insert_version(conn, info.node_id, 1, planned.content, stamp)
            change.nodes_created += 1
            change.versions_written += 1
            changed = True
        else:
            latest, retired, start, end = row
            current = conn.execute("SELECT title, summary_title, bullets, keywords FROM toc_versions WHERE node_id = ? AND version = ?", (info.node_id, latest)).fetchone()
            if tuple(current) != _encode_content(planned.content):
                _insert_version(conn, info.node_id, latest + 1, planned.content, stamp)
                conn.execute("UPDATE toc_nodes SET latest_version = ? WHERE node_id = ?", (latest + 1, info.node_id))
                change.versions_written += 1
                changed = True
            if retired or (start, end) != (info.start_ts, info.end_ts):
                conn.execute(
                    "UPDATE toc_nodes SET retired = 0, parent_id = ?, start_ms = ?, end_ms = ? WHERE node_id = ?",
                    (day_id, info.start_ts, info.end_ts, info.node_id),
                )
                changed = True
        previous = conn.execute("SELECT end_event_id, event_count FROM segments WHERE node_id = ?", (info.node_id,)).fetchone()
        if previous != (info.end_event_id, info.event_count):
            changed = True
        conn.execute(
            "INSERT OR REPLACE INTO segments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (info.node_id, info.day, info.start_ts, info.start_event_id, info.end_ts, info.end_event_id, info.event_count, info.tokens, json.dumps(list(info.overlap_event_ids))),
        )
        conn.executemany(
            "INSERT OR REPLACE INTO grips VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(g.grip_id, g.excerpt, g.event_id_start, g.event_id_end, g.timestamp, g.source, g.toc_node_id) for g in planned.grips],
        )
        if changed:
            change.segments_written += 1
            change.day_changed = True
    for node_id in plan.retire:
        conn.execute("UPDATE toc_nodes SET retired = 1, parent_id = NULL WHERE node_id = ?", (node_id,))
        conn.execute("DELETE FROM segments WHERE node_id = ?", (node_id,))
        change.segments_retired += 1
        change.day_changed = True
    if change.day_changed:
        conn.execute("UPDATE toc_nodes SET dirty_gen = dirty_gen + 1 WHERE node_id = ?", (day_id,))
    return change
