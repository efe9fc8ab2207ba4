"""Crash safety: SIGKILL rollups and compactions at random instants; the store stays consistent and the
finished TOC equals an uninterrupted run's."""

from __future__ import annotations

import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memsched.jobs.compaction import run_compaction
from memsched.jobs.rollup import run_rollup
from memsched.ops.memory import ingest
from memsched.store import open_store
from memsched.store.sample import generate_events, to_jsonl
from memsched.summarize import LocalSummarizer

START = 1_704_067_200_000  # 2024-01-01
NOW = START + 130 * 86_400_000
HOUR = 3_600_000
ROLLUP_SCRIPT = f"""
import sys
from memsched.jobs.rollup import run_rollup
from memsched.store import open_store
from memsched.summarize import LocalSummarizer
with open_store(sys.argv[1]) as store:
    for level in ("day", "week", "month", "year"):
        run_rollup(store, level, now_ms={NOW}, min_age_ms={HOUR}, summarizer=LocalSummarizer())
"""
COMPACTION_SCRIPT = """
import sys
from memsched.jobs.compaction import run_compaction
run_compaction(sys.argv[1], free_page_threshold=0.01)
"""


def snapshot(path: Path) -> dict[str, tuple]:
    """Every node (retired included) at its latest version, its version count, and the grips: all but write times."""
    with open_store(path) as store:
        conn = store.connection
        nodes = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT n.node_id, n.level, n.start_ms, n.end_ms, n.parent_id, n.latest_version, n.summarized, n.dirty_gen > n.rolled_gen, n.retired, "
                "v.title, v.summary_title, v.bullets, v.keywords, (SELECT count(*) FROM toc_versions w WHERE w.node_id = n.node_id) "
                "FROM toc_nodes n JOIN toc_versions v ON v.node_id = n.node_id AND v.version = n.latest_version"
            )
        }
        grips = conn.execute("SELECT * FROM grips ORDER BY grip_id").fetchall()
        segments = conn.execute("SELECT * FROM segments ORDER BY node_id").fetchall()
        queue = conn.execute("SELECT count(*) FROM build_queue").fetchone()[0]
    return {"nodes": nodes, "grips": grips, "segments": segments, "queue": queue}


def progress(path: Path) -> tuple[int, int]:
    """(days still queued for building, stale nodes left): how far a killed run got."""
    conn = sqlite3.connect(path)
    try:
        queued = conn.execute("SELECT count(*) FROM build_queue").fetchone()[0]
        stale = conn.execute("SELECT count(*) FROM toc_nodes WHERE dirty_gen > rolled_gen").fetchone()[0]
        return queued, stale
    finally:
        conn.close()


def check_consistent(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        broken = conn.execute(
            "SELECT n.node_id FROM toc_nodes n WHERE n.latest_version != (SELECT max(version) FROM toc_versions v WHERE v.node_id = n.node_id)"
        ).fetchall()
        assert broken == [], "latest pointer and versions disagree"
    finally:
        conn.close()




def add_garbage(path: Path) -> None:
    """Grow the file by about 40 MB and free it again, as deleting old data would."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS scratch (blob)")
    conn.executemany("INSERT INTO scratch VALUES (?)", ((b"q" * 4000,) for _ in range(10_000)))
    conn.commit()
    conn.execute("DROP TABLE scratch")
    conn.commit()
    conn.close()


@pytest.fixture(scope="module")
def events() -> list[bytes]:
    return list(to_jsonl(generate_events(START, 120, seed=21, sessions_per_day=(8, 14))))



def _run_killing_after(script: str, victim: Path, delay: float) -> bool:
    """Run ``script`` on the store in a child process and SIGKILL it after ``delay`` seconds.

    Returns True when it finished on its own before the kill.
    """
    proc = subprocess.Popen([sys.executable, "-c", script, str(victim)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(delay)
    finished = proc.poll() is not None
    if not finished:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read().decode()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    return finished and proc.returncode == 0

def test_sigkill_during_rollup_at_random_instants(tmp_path: Path, events: list[bytes]) -> None:
    base = tmp_path / "base.db"
    with open_store(base) as store:
        ingest(store, iter(events), build=False)  # so the killed runs also build
    reference = tmp_path / "reference.db"
    shutil.copy(base, reference)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", ROLLUP_SCRIPT, str(reference)], capture_output=True, timeout=300)
    duration = time.monotonic() - started
    assert done.returncode == 0, done.stderr.decode()
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", ROLLUP_SCRIPT, str(reference)], check=True, timeout=120)  # nothing left to do
    overhead = time.monotonic() - started  # interpreter start, imports, opening the store
    work = max(duration - overhead, 0.2)
    expected = snapshot(reference)
    assert expected["queue"] == 0 and len(expected["nodes"]) > 500

    victim = tmp_path / "victim.db"
    shutil.copy(base, victim)
    rng = random.Random(1234)
    killed, progress_seen = 0, set()
    for _ in range(60):  # until enough kills landed mid-work
        finished = _run_killing_after(ROLLUP_SCRIPT, victim, overhead + rng.uniform(0, work / 10))
        killed += not finished
        check_consistent(victim)
        if finished:
            # the killed runs' leftovers were finished by this one (the machine's load changes
            # how far each kill gets): it must equal the uninterrupted run; start over from base
            assert snapshot(victim) == expected
            shutil.copy(base, victim)
            for suffix in ("-wal", "-shm"):
                Path(f"{victim}{suffix}").unlink(missing_ok=True)
            continue
        progress_seen.add(progress(victim))
        if killed >= 8 and len(progress_seen) >= 6:
            break
    assert killed >= 8 and len(progress_seen) >= 6, (killed, progress_seen)  # killed mid-build and mid-rollup, many times
    with open_store(victim) as store:
        for level in ("day", "week", "month", "year"):
            run_rollup(store, level, now_ms=NOW, min_age_ms=HOUR, summarizer=LocalSummarizer())
    check_consistent(victim)
    assert snapshot(victim) == expected


def test_sigkill_during_compaction_at_random_instants(tmp_path: Path, events: list[bytes]) -> None:
    victim = tmp_path / "victim.db"
    legacy = sqlite3.connect(victim)
    legacy.execute("CREATE TABLE legacy (x)")  # auto_vacuum off: compaction will VACUUM, the riskiest step
    legacy.close()
    with open_store(victim) as store:
        ingest(store, iter(events[: len(events) // 3]))
        for level in ("day", "week", "month", "year"):
            run_rollup(store, level, now_ms=NOW, min_age_ms=HOUR, summarizer=LocalSummarizer())
    add_garbage(victim)
    expected = snapshot(victim)
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", COMPACTION_SCRIPT, str(victim)], check=True, timeout=120)
    duration = time.monotonic() - started
    rng = random.Random(99)
    killed = 0
    for _ in range(12):
        add_garbage(victim)  # every run has a VACUUM to be killed in
        killed += not _run_killing_after(COMPACTION_SCRIPT, victim, rng.uniform(0.1, duration))
        check_consistent(victim)
        assert snapshot(victim) == expected
    assert killed >= 6, "the work finished before most kills: the test lost its point"
    result = run_compaction(victim, free_page_threshold=0.01)
    assert result.integrity == "ok"
    with open_store(victim) as store:
        assert store.pragma("PRAGMA freelist_count", "t") == [(0,)]
    assert snapshot(victim) == expected


VERIFY_SCRIPT = """
import sys
from memsched.jobs import verify
verify.run_verification(sys.argv[1])
"""
WEEKLY_SCRIPT = """
import sys
from memsched.jobs.compaction import run_compaction
run_compaction(sys.argv[1])
"""


def meta(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT key, value FROM store_meta"))
    finally:
        conn.close()


def _rolled_store(path: Path, events: list[bytes], share: int = 3) -> None:
    with open_store(path) as store:
        ingest(store, iter(events[: len(events) // share]))
        for level in ("day", "week", "month", "year"):
            run_rollup(store, level, now_ms=NOW, min_age_ms=HOUR, summarizer=LocalSummarizer())


def test_sigkill_during_full_verification_at_random_instants_resumes_and_changes_nothing(tmp_path: Path, events: list[bytes]) -> None:
    from memsched.jobs.verify import tables

    victim = tmp_path / "victim.db"
    _rolled_store(victim, events, share=1)
    with open_store(victim) as store:
        units = tables(store)
    expected = snapshot(victim)
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", VERIFY_SCRIPT, str(victim)], check=True, timeout=300)
    duration = time.monotonic() - started
    assert meta(victim)["verify.last_result"] == "ok"
    rng = random.Random(7)
    killed, resumed_at = 0, set()
    for _ in range(12):
        finished = _run_killing_after(VERIFY_SCRIPT, victim, rng.uniform(0.05, duration))
        killed += not finished
        check_consistent(victim)
        assert snapshot(victim) == expected  # verification writes only its own cursor
        state = meta(victim)
        if "verify.pass_started_ms" in state:
            assert state["verify.pass_next"] in units  # the cursor names a table: the next run resumes there
            resumed_at.add(state["verify.pass_next"])
        else:
            assert state["verify.last_result"] == "ok"
    assert killed >= 6 and resumed_at, (killed, resumed_at)  # killed mid-pass (mostly in events, the bulk of the store)
    subprocess.run([sys.executable, "-c", VERIFY_SCRIPT, str(victim)], check=True, timeout=300)
    state = meta(victim)
    assert state["verify.last_result"] == "ok" and "verify.pass_started_ms" not in state
    assert int(state["verify.last_runs"]) >= 2  # the pass that completed was begun by a killed run and resumed


def test_sigkill_during_the_weekly_check_of_new_events_leaves_the_old_cursor_or_the_new(tmp_path: Path, events: list[bytes]) -> None:
    victim = tmp_path / "victim.db"
    _rolled_store(victim, events, share=1)
    with open_store(victim) as store:
        newest = store.connection.execute("SELECT max(seq) FROM events").fetchone()[0]

    def rewind() -> None:  # every event new since the last check: the check has work to be killed in
        conn = sqlite3.connect(victim)
        conn.execute("UPDATE store_meta SET value = '0' WHERE key = 'recent.checked_seq'")
        conn.commit()
        conn.close()

    expected = snapshot(victim)
    durations = []
    for _ in range(2):  # the second run is like the killed ones (the first also has ANALYZE's first sampling to do)
        rewind()
        add_garbage(victim)
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", WEEKLY_SCRIPT, str(victim)], check=True, timeout=300)
        durations.append(time.monotonic() - started)
        assert meta(victim)["recent.checked_seq"] == str(newest)
    duration = min(durations)
    rng = random.Random(5)
    killed = 0
    for _ in range(12):
        rewind()
        add_garbage(victim)
        killed += not _run_killing_after(WEEKLY_SCRIPT, victim, rng.uniform(0.05, 0.8 * duration))
        check_consistent(victim)
        assert snapshot(victim) == expected
        cursor = meta(victim)["recent.checked_seq"]
        assert cursor in ("0", str(newest)), cursor  # one small transaction: never half-advanced
    assert killed >= 6, "the work finished before most kills: the test lost its point"
    result = run_compaction(victim)
    assert result.integrity == "ok" and meta(victim)["recent.checked_seq"] == str(newest)
    assert snapshot(victim) == expected
