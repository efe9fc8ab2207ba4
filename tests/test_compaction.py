"""Compaction: WAL truncated, free pages reclaimed (incrementally or by VACUUM), integrity checked."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from memsched.jobs.compaction import CompactionResult, run_compaction
from memsched.ops.memory import ingest
from memsched.store import StoreError, open_store
from memsched.store.sample import generate_events, to_jsonl

JAN_15_2024 = 1_705_276_800_000


def fill(store, days: int = 3) -> None:
    ingest(store, iter(to_jsonl(generate_events(JAN_15_2024, days, seed=4))))


def add_garbage(path: Path, rows: int = 3000) -> None:
    """Grow the file, then free the pages (as deleting old data would)."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE scratch (blob)")
    conn.executemany("INSERT INTO scratch VALUES (?)", ((b"z" * 2000,) for _ in range(rows)))
    conn.commit()
    conn.execute("DROP TABLE scratch")
    conn.commit()
    conn.close()


def test_incremental_vacuum_reclaims_free_pages_and_truncates_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with open_store(path) as store:
        fill(store)
        add_garbage(path)
        events_before = store.count_events()
        steps: list[str] = []
        result = run_compaction(store, progress=lambda d, t, s: steps.append(s))
        assert result.reclaim == "incremental_vacuum" and result.free_pages_before > 1000
        assert result.pages_reclaimed == result.free_pages_before
        assert store.pragma("PRAGMA freelist_count", "t") == [(0,)]
        assert result.integrity == "ok" and result.wal_checkpoint == "complete"
        assert result.bytes_after < result.bytes_before - 4_000_000
        assert store.file_bytes()[1] == 0  # WAL truncated
        assert steps == ["checkpoint", "reclaim", "analyze", "integrity_check", "final_checkpoint", "done"]
        assert store.count_events() == events_before
        meta = result.as_metadata()
        assert meta["bytes_reclaimed"] == str(result.bytes_before - result.bytes_after) and meta["integrity"] == "ok"
        assert all(isinstance(v, str) for v in meta.values())
        again = run_compaction(store)
        assert again.reclaim == "none" and again.pages_reclaimed == 0


def test_vacuum_past_the_threshold_when_auto_vacuum_is_off(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE legacy (x)")  # tables exist before memsched's migration: auto_vacuum stays off
    conn.close()
    add_garbage(path, 500)
    with open_store(path) as store:
        fill(store, 1)
        assert store.pragma("PRAGMA auto_vacuum", "t") == [(0,)]
        kept = run_compaction(store, free_page_threshold=0.99)
        assert kept.reclaim == "none" and store.pragma("PRAGMA freelist_count", "t")[0][0] > 0
        result = run_compaction(store, free_page_threshold=0.05)
        assert result.reclaim == "vacuum" and store.pragma("PRAGMA freelist_count", "t") == [(0,)]
        assert result.integrity == "ok"


def test_compaction_accepts_a_path_and_stops_at_a_safe_point(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with open_store(path) as store:
        fill(store, 1)
    result = run_compaction(path)
    assert isinstance(result, CompactionResult) and result.integrity == "ok"
    stopped = run_compaction(path, should_stop=lambda: True)
    assert stopped.interrupted and stopped.integrity == "not checked" and stopped.bytes_after > 0


def test_a_corrupt_store_fails_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with open_store(path) as store:
        fill(store, 2)
        root = store.pragma("SELECT rootpage FROM sqlite_schema WHERE name = 'events_by_time'", "t")[0][0]
        page_size = store.pragma("PRAGMA page_size", "t")[0][0]
        store.pragma("PRAGMA wal_checkpoint(TRUNCATE)", "t")
    with open(path, "r+b") as raw:
        raw.seek((root - 1) * page_size + 8)
        raw.write(b"\xee" * (page_size - 8))
    with pytest.raises(StoreError) as caught:
        run_compaction(path)
    assert caught.value.exit_code == 1 and str(path) in str(caught.value)
    assert "integrity_check failed" in str(caught.value) or "corrupt" in str(caught.value)
