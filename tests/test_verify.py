"""Full verification: table by table, resumable across runs, its result kept in the store and failing loudly."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from memsched.jobs import verify
from memsched.jobs.verify import IntegrityError, read_state, read_state_of, run_verification, tables
from memsched.ops.memory import ingest
from memsched.store import open_store
from memsched.store.sample import generate_events, to_jsonl

from test_compaction import JAN_15_2024, hide_new_rows_from_index

ALL_TABLES = ["sqlite_schema", "build_queue", "events", "grips", "rollup_checkpoints", "segments", "store_meta", "toc_nodes", "toc_versions"]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    store_path = tmp_path / "m.db"
    with open_store(store_path) as store:
        ingest(store, iter(to_jsonl(generate_events(JAN_15_2024, 2, seed=4))))
    return store_path


def clock(start: int = 1_800_000_000_000):
    now = [start]

    def tick() -> int:
        now[0] += 1000
        return now[0]

    return tick


def test_a_full_pass_checks_every_table_and_records_when_and_what(path: Path) -> None:
    with open_store(path) as store:
        assert tables(store) == ALL_TABLES
        assert read_state(store).last_full_ms is None
        steps: list[str] = []
        result = run_verification(store, progress=lambda d, t, s: steps.append(s), now_ms=clock())
        assert result.pass_complete and result.result == "ok" and not result.resumed
        assert result.tables_checked == ALL_TABLES and steps == [f"integrity_check({t})" for t in ALL_TABLES] + ["done"]
        state = read_state(store)
        assert (state.last_result, state.last_runs, state.pass_started_ms) == ("ok", 1, None)
        assert state.last_full_ms == 1_800_000_000_000 + 2000 and state.last_full_started_ms == 1_800_000_000_000 + 1000
        assert state.recent_checked_seq == store.count_events()  # the weekly check starts after what the pass covered
        meta = result.as_metadata()
        assert (meta["integrity"], meta["tables_checked"], meta["pass_complete"]) == ("ok", str(len(ALL_TABLES)), "true")
    assert read_state_of(path) == state  # doctor and status read the same, read-only


def test_read_state_of_creates_nothing(tmp_path: Path) -> None:
    assert read_state_of(tmp_path / "none.db") is None
    assert not (tmp_path / "none.db").exists()


def test_a_stopped_pass_resumes_at_the_table_it_was_in(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify, "PROGRESS_OPS", 2**31 - 1)  # no polls inside a statement: only the between-table ones
    polls = [0]

    def stop_before_the_fourth_table() -> bool:
        polls[0] += 1
        return polls[0] > 3

    with open_store(path) as store:
        first = run_verification(store, should_stop=stop_before_the_fourth_table, now_ms=clock())
        assert first.interrupted and not first.pass_complete and first.tables_checked == ALL_TABLES[:3]
        state = read_state(store)
        assert (state.pass_next, state.last_full_ms) == (ALL_TABLES[3], None)
        second = run_verification(store, now_ms=clock())
        assert second.resumed and second.pass_complete and second.tables_checked == ALL_TABLES[3:]
        assert read_state(store).last_runs == 2 and read_state(store).last_result == "ok"


def test_a_stop_mid_table_abandons_that_table_and_the_next_run_checks_it_again(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify, "PROGRESS_OPS", 1)
    polls = [0]

    def stop_inside_the_first_check() -> bool:
        polls[0] += 1
        return polls[0] >= 2  # poll 1: before sqlite_schema; poll 2: SQLite's progress handler, mid-statement

    with open_store(path) as store:
        stopped = run_verification(store, should_stop=stop_inside_the_first_check, now_ms=clock())
        assert stopped.interrupted and stopped.tables_checked == []  # the only between-table poll said "go on"
        assert read_state(store).pass_next == "sqlite_schema"
        done = run_verification(store, now_ms=clock())
        assert done.resumed and done.tables_checked == ALL_TABLES


def test_a_failed_verification_fails_loudly_and_is_remembered(path: Path) -> None:
    hide_new_rows_from_index(path)
    with pytest.raises(IntegrityError) as caught:
        run_verification(path, now_ms=clock())
    assert caught.value.exit_code == 1 and str(path) in str(caught.value)
    assert "events: " in str(caught.value) and "missing from index events_by_time" in str(caught.value)
    state = read_state_of(path)
    assert state is not None and state.last_result is not None and state.last_result.startswith("events: ")
    assert state.pass_started_ms is None  # the next run starts a new pass, and fails the same way
    with pytest.raises(IntegrityError):
        run_verification(path, now_ms=clock())


def test_a_store_too_damaged_to_read_is_a_finding(path: Path) -> None:
    with open_store(path) as store:
        root = store.pragma("SELECT rootpage FROM sqlite_schema WHERE name = 'events_by_time'", "t")[0][0]
        page_size = store.pragma("PRAGMA page_size", "t")[0][0]
        run_verification(store, now_ms=clock())
        store.pragma("PRAGMA wal_checkpoint(TRUNCATE)", "t")
    with open(path, "r+b") as raw:
        raw.seek((root - 1) * page_size + 8)
        raw.write(b"\xee" * (page_size - 8))
    with pytest.raises(IntegrityError) as caught:
        run_verification(path, now_ms=clock())
    assert "events: " in str(caught.value)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM store_meta WHERE key = 'verify.last_result'").fetchone()[0].startswith("events: ")
    conn.close()
