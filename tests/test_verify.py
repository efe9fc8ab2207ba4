"""Full verification: table by table, resumable across runs, its result kept in the store and failing loudly."""

from __future__ import annotations

import sqlite3
import time
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


def stop_at(table: str):
    """Return (progress, should_stop): should_stop turns true once the check of ``table`` has begun."""
    begun = [False]

    def progress(done: int, total: int, item: str) -> None:
        begun[0] = begun[0] or item == f"integrity_check({table})"

    return progress, lambda: begun[0]


def test_a_stopped_pass_resumes_at_the_table_it_was_in(path: Path) -> None:
    progress, should_stop = stop_at("grips")
    with open_store(path) as store:
        first = run_verification(store, progress=progress, should_stop=should_stop, now_ms=clock())
        assert first.interrupted and not first.pass_complete and first.tables_checked == ALL_TABLES[:3]
        state = read_state(store)
        assert (state.pass_next, state.last_full_ms) == ("grips", None)
        second = run_verification(store, now_ms=clock())
        assert second.resumed and second.pass_complete and second.tables_checked == ALL_TABLES[3:]
        assert read_state(store).last_runs == 2 and read_state(store).last_result == "ok"


def test_a_stop_mid_table_abandons_that_table_and_the_next_run_checks_it_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify, "STOP_POLL_S", 0.0002)
    path = tmp_path / "bigger.db"
    with open_store(path) as store:  # enough events that their check lasts many polls
        ingest(store, iter(to_jsonl(generate_events(JAN_15_2024, 20, seed=4))), build=False)
    begun, polls_since = [False], [0]

    def progress(done: int, total: int, item: str) -> None:
        begun[0] = begun[0] or item == "integrity_check(events)"

    def should_stop() -> bool:  # the poll between tables says "go on": only the watcher, mid-statement, sees the stop
        if begun[0]:
            polls_since[0] += 1
        return polls_since[0] > 1

    with open_store(path) as store:
        stopped = run_verification(store, progress=progress, should_stop=should_stop, now_ms=clock())
        assert stopped.interrupted and stopped.tables_checked == ALL_TABLES[:2]  # events abandoned part-way, not finished
        assert read_state(store).pass_next == "events"
        done = run_verification(store, now_ms=clock())
        assert done.resumed and done.tables_checked == ALL_TABLES[2:]


def test_a_stop_abandons_even_a_statement_that_never_yields(path: Path) -> None:
    # integrity_check walks a b-tree inside one VM instruction (no progress-handler calls for
    # over 20 s on the one-year store, cold): the stop must not depend on SQLite calling back.
    from memsched.jobs.verify import _interruptible
    from memsched.store import StoreError

    asked = [0.0]

    def stop() -> bool:
        return asked[0] > 0 and time.monotonic() >= asked[0]

    with open_store(path) as store:
        asked[0] = time.monotonic() + 0.3
        started = time.monotonic()
        with pytest.raises(StoreError, match="interrupted"), _interruptible(store, stop):
            store.pragma("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c", "endless")
        assert time.monotonic() - started < 5


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


def test_the_built_in_verify_job_may_take_twice_its_timeout_before_it_counts_as_late() -> None:
    from memsched.config.load import parse_config
    from memsched.late import longest_run_ms

    job = parse_config({}).jobs["store_verify"]
    assert job.kind == "verify" and longest_run_ms(job) == 2 * job.timeout  # it extends its timeout while it makes progress
