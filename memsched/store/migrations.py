"""Schema migrations of the SQLite store, by version (``PRAGMA user_version``).

``MIGRATIONS[i]`` takes a store from version ``i`` to ``i + 1``. All pending
migrations run in one IMMEDIATE transaction together with the ``user_version``
bump, so a crash leaves the store at the old version or the new one, never between.
A store newer than this code is refused rather than guessed at. Never edit a
released migration: append a new one.
"""

from __future__ import annotations

import sqlite3

from memsched.store.models import StoreError

_V1 = (
    # Events, idempotent on event_id. seq is the insertion order; tokens is the
    # approximate count segmentation needs (computed once, at ingest).
    """CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        session_id TEXT NOT NULL,
        ts INTEGER NOT NULL,
        event_type TEXT NOT NULL,
        role TEXT NOT NULL,
        text TEXT NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}',
        agent TEXT,
        tokens INTEGER NOT NULL
    )""",
    "CREATE INDEX events_by_time ON events (ts, event_id)",
    # Days whose new events are not segmented yet. generation changes on every
    # enqueue, so a builder only dequeues what it has actually seen.
    """CREATE TABLE build_queue (
        day INTEGER PRIMARY KEY,
        min_new_ts INTEGER NOT NULL,
        generation INTEGER NOT NULL DEFAULT 1
    )""",
    # TOC nodes: identity, bounds, tree link and the latest-version pointer.
    # A node is stale while dirty_gen > rolled_gen; summarized = 0 means its only
    # version is the placeholder. retired = 1: a segment a re-segmentation dropped.
    """CREATE TABLE toc_nodes (
        node_id TEXT PRIMARY KEY,
        level TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        end_ms INTEGER NOT NULL,
        parent_id TEXT,
        latest_version INTEGER NOT NULL,
        summarized INTEGER NOT NULL DEFAULT 0,
        dirty_gen INTEGER NOT NULL DEFAULT 0,
        rolled_gen INTEGER NOT NULL DEFAULT 0,
        retired INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX toc_children ON toc_nodes (parent_id, start_ms)",
    "CREATE INDEX toc_by_level ON toc_nodes (level, start_ms)",
    "CREATE INDEX toc_stale ON toc_nodes (level, end_ms) WHERE dirty_gen > rolled_gen",
    # Append-only versions: rows are inserted, never updated or deleted.
    """CREATE TABLE toc_versions (
        node_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        title TEXT NOT NULL,
        summary_title TEXT NOT NULL,
        bullets TEXT NOT NULL,
        keywords TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (node_id, version)
    )""",
    # The live segmentation of each day (retired segments have no row here).
    """CREATE TABLE segments (
        node_id TEXT PRIMARY KEY,
        day INTEGER NOT NULL,
        start_ts INTEGER NOT NULL,
        start_event_id TEXT NOT NULL,
        end_ts INTEGER NOT NULL,
        end_event_id TEXT NOT NULL,
        event_count INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        overlap_event_ids TEXT NOT NULL DEFAULT '[]'
    ) WITHOUT ROWID""",
    "CREATE INDEX segments_by_day ON segments (day, start_ts, start_event_id)",
    """CREATE TABLE grips (
        grip_id TEXT PRIMARY KEY,
        excerpt TEXT NOT NULL,
        event_id_start TEXT NOT NULL,
        event_id_end TEXT NOT NULL,
        ts INTEGER NOT NULL,
        source TEXT NOT NULL,
        toc_node_id TEXT NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX grips_by_node ON grips (toc_node_id)",
    # Per-level rollup progress, written in the same transaction as each node.
    """CREATE TABLE rollup_checkpoints (
        level TEXT PRIMARY KEY,
        last_node_id TEXT,
        last_end_ms INTEGER,
        nodes_rolled INTEGER NOT NULL DEFAULT 0,
        versions_written INTEGER NOT NULL DEFAULT 0,
        updated_at INTEGER NOT NULL
    )""",
)

_V2 = (
    # Small facts about the store itself, as text: the verification cursors and results
    # (memsched.jobs.verify). The weekly check of what changed starts after the events
    # already stored when this table appears: those are the full verification's to check.
    """CREATE TABLE store_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID""",
    """INSERT INTO store_meta (key, value) SELECT 'recent.checked_seq', CAST(coalesce(max(seq), 0) AS TEXT) FROM events""",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """Return the store's schema version (0: empty)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, where: str) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION` inside the caller's IMMEDIATE transaction.

    Returns the version found. Raises :class:`StoreError` for a store written by a
    newer memsched (``where`` names the file in the message).
    """
    found = schema_version(conn)
    if found > SCHEMA_VERSION:
        raise StoreError(
            f"{where}: the store has schema version {found}, newer than this memsched understands "
            f"({SCHEMA_VERSION}); upgrade memsched"
        )
    for version in range(found, SCHEMA_VERSION):
        for statement in MIGRATIONS[version]:
            conn.execute(statement)
    if found != SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return found
