"""Compaction: WAL truncated, free pages reclaimed (incrementally or by VACUUM), the events added since the last run checked."""

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
        assert steps == ["checkpoint", "reclaim", "analyze", "check_recent", "final_checkpoint", "done"]
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


def hide_new_rows_from_index(path: Path, index: str = "events_by_time") -> int:
    """Make ``index`` miss every event added from now on (as a torn or buggy write could); return the seq it stops at.

    The index is redefined as partial (WHERE seq <= N) in the schema, rows are added,
    then the original definition is put back: SQLite then believes the index is whole.
    """
    conn = sqlite3.connect(path)
    [(sql,)] = conn.execute("SELECT sql FROM sqlite_schema WHERE name = ?", (index,)).fetchall()
    upto = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("UPDATE sqlite_schema SET sql = ? WHERE name = ?", (f"{sql} WHERE seq <= {upto}", index))
    conn.commit()
    conn.close()
    conn = sqlite3.connect(path)  # the new definition is read at open
    conn.executemany(
        "INSERT INTO events (event_id, session_id, ts, event_type, role, text, metadata, agent, tokens) VALUES (?, 's', ?, 'user_message', 'user', 'hidden', '{}', NULL, 1)",
        [(f"01HZZZZZZZZZZZZZZZZZZZZZ{i:02d}", JAN_15_2024 + i) for i in range(5)],
    )
    conn.commit()
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("UPDATE sqlite_schema SET sql = ? WHERE name = ?", (sql, index))
    conn.commit()
    conn.close()
    return upto


def test_the_weekly_run_checks_only_the_events_added_since_its_last_run_and_never_the_whole_store(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with open_store(path) as store:
        fill(store, 2)
        total = store.count_events()
        statements: list[str] = []
        store.connection.set_trace_callback(statements.append)
        first = run_compaction(store)
        assert (first.integrity, first.rows_checked) == ("ok", total)  # a new store: everything is new
        assert not [s for s in statements if "integrity_check" in s or "quick_check" in s]
        assert any("INDEXED BY" in s for s in statements)  # each new row was looked up through the indexes
        assert set(first.step_seconds) == {"checkpoint", "reclaim", "analyze", "check_recent", "final_checkpoint"}
        assert first.as_metadata()["rows_checked"] == str(total)
        again = run_compaction(store)
        assert (again.integrity, again.rows_checked) == ("ok", 0)
        ingest(store, iter(to_jsonl(generate_events(JAN_15_2024 + 10 * 86_400_000, 1, seed=9))))
        added = store.count_events() - total
        later = run_compaction(store)
        assert added > 0 and later.rows_checked == added


def test_a_store_from_before_verification_leaves_its_old_events_to_the_full_verification(tmp_path: Path) -> None:
    from memsched.store.migrations import MIGRATIONS

    path = tmp_path / "old.db"
    with open_store(path) as store:
        fill(store, 1)
        total = store.count_events()
    conn = sqlite3.connect(path)  # as a store of schema 1 was: no store_meta
    conn.execute("DROP TABLE store_meta")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with open_store(path) as store:
        assert store.pragma("PRAGMA user_version", "t") == [(len(MIGRATIONS),)]
        result = run_compaction(store)
        assert (result.integrity, result.rows_checked) == ("ok", 0)
        assert store.pragma("SELECT value FROM store_meta WHERE key = 'recent.checked_seq'", "t") == [(str(total),)]


def test_an_event_missing_from_an_index_fails_the_weekly_run_loudly(tmp_path: Path) -> None:
    from memsched.jobs.compaction import IntegrityError

    path = tmp_path / "m.db"
    with open_store(path) as store:
        fill(store, 1)
        run_compaction(store)
    hide_new_rows_from_index(path)
    with pytest.raises(IntegrityError) as caught:
        run_compaction(path)
    assert caught.value.exit_code == 1 and str(path) in str(caught.value)
    assert "index events_by_time: 5 of the 5 events added since the last check are missing from it" in str(caught.value)
    with pytest.raises(IntegrityError):  # the cursor did not move past them: every later run says so too
        run_compaction(path)
