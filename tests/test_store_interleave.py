"""Two real processes interleaved at every transaction of ingest, build and rollup: no event is ever lost.

Each child (tests/interleave_child.py) pauses before every transaction it begins on
the store; the parent lets one process at a time run to its next transaction and
enumerates every order (a depth-first search over the schedules). SQLite makes each
transaction atomic and isolated (a read transaction sees one snapshot, taken when it
starts; write transactions are serialised by the lock), so every real execution of
the two processes is equivalent to one of these orders: the search covers them all.

After each schedule: every event is in exactly one live segment of its day, nothing
is left queued, the segmentation equals a sequential build of the same events, no
day is marked current while its content differs from what its children give, and
the rollup checkpoint names the node at its high-water mark.
"""

from __future__ import annotations

import select
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from memsched.jobs.rollup import roll_node, run_rollup
from memsched.ops.memory import ingest
from memsched.store import open_store
from memsched.store.models import StaleNode
from memsched.store.periods import DAY_MS
from memsched.store.sample import to_jsonl, ulid
from memsched.summarize import LocalSummarizer

CHILD = Path(__file__).with_name("interleave_child.py")
DAY = 1_705_276_800_000  # 2024-01-15T00:00Z
MINUTE = 60_000
NOW = DAY + 30 * DAY_MS
STEP_TIMEOUT_S = 60.0  # a step is a few ms; generous for a loaded machine, and only bounds a hang


def _event(ts: int, n: int, text: str) -> dict:
    import random

    return {
        "event_id": ulid(ts, random.Random(ts * 31 + n)),
        "session_id": "s-1",
        "timestamp": ts,
        "event_type": "user_message" if n % 2 == 0 else "assistant_message",
        "role": "user" if n % 2 == 0 else "assistant",
        "text": f"{text} number {n} about timers and the sqlite wal",
    }


# early: one session on day 1 and one event on day 2; late: before day 1's first event,
# close enough to join its segment (so the segment's id changes and the old one is
# retired); later: one inside day 1's session and one after a gap (a new segment).
EVENTS = {
    "early": [_event(DAY + 10 * 60 * MINUTE + i * 5 * MINUTE, i, "early") for i in range(6)] + [_event(DAY + DAY_MS + 8 * 60 * MINUTE, 9, "next day")],
    "late": [_event(DAY + 9 * 60 * MINUTE + 45 * MINUTE, 20, "late")],
    "later": [_event(DAY + 10 * 60 * MINUTE + 12 * MINUTE, 30, "later inside"), _event(DAY + 13 * 60 * MINUTE, 31, "later after a gap")],
}


class Child:
    """One child process, driven a transaction at a time."""

    def __init__(self, db: Path, ops: list[str], log: Path):
        self.log = log
        self._stderr = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(db), str(NOW), *ops],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        self.done = False
        self.statement = ""
        self._wait()

    def _wait(self) -> None:
        ready, _, _ = select.select([self.proc.stdout], [], [], STEP_TIMEOUT_S)
        line = self.proc.stdout.readline() if ready else ""
        if line == "done\n":
            self.done = True
            assert self.proc.wait(timeout=STEP_TIMEOUT_S) == 0, self.log.read_text()
        elif line.startswith("pause "):
            self.statement = line[6:].strip()
        else:
            self.proc.kill()
            raise AssertionError(f"child {self.proc.args[3:]} stopped unexpectedly ({line!r}):\n{self.log.read_text()}")

    def step(self) -> None:
        """Let the child run its next transaction and up to the one after (or to its end)."""
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        self._wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            stream.close()
        self._stderr.close()


def run_schedule(template: Path, work: Path, ops: tuple[list[str], list[str]], prefix: list[int]) -> tuple[Path, list[int], list[list[int]]]:
    """Run both children on a copy of ``template``, choosing who runs by ``prefix``, then the first able.

    Returns the database, the choices made and, at each choice, which children could run.
    """
    db = work / "store.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    shutil.copy(template, db)
    children = [Child(db, list(o), work / f"child{i}.log") for i, o in enumerate(ops)]
    choices: list[int] = []
    enabled_at: list[list[int]] = []
    try:
        while not all(c.done for c in children):
            enabled = [i for i, c in enumerate(children) if not c.done]
            pick = prefix[len(choices)] if len(choices) < len(prefix) else enabled[0]
            enabled_at.append(enabled)
            choices.append(pick)
            children[pick].step()
    finally:
        for child in children:
            child.close()
    return db, choices, enabled_at


def live_segments(conn: sqlite3.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT s.node_id, s.day, s.start_ts, s.start_event_id, s.end_ts, s.end_event_id, s.event_count, n.retired, n.parent_id "
        "FROM segments s JOIN toc_nodes n USING (node_id) ORDER BY s.node_id"
    ).fetchall()


def check_invariants(db: Path, reference_segments: list[tuple]) -> None:
    conn = sqlite3.connect(db)
    try:
        events = conn.execute("SELECT ts, event_id FROM events").fetchall()
        segments = live_segments(conn)
        for ts, event_id in events:
            holders = [s[0] for s in segments if s[1] == ts // DAY_MS and (s[2], s[3]) <= (ts, event_id) <= (s[4], s[5])]
            assert len(holders) == 1, f"event {event_id} at {ts} is in {len(holders)} live segments: {holders}"
        for node_id, day, *_rest, count, retired, parent in segments:
            assert not retired and parent is not None, f"{node_id} has a segments row but is retired or unlinked"
        orphans = conn.execute("SELECT node_id FROM toc_nodes WHERE level = 'segment' AND retired = 0 AND node_id NOT IN (SELECT node_id FROM segments)").fetchall()
        assert orphans == [], f"live segment nodes without placement: {orphans}"
        assert conn.execute("SELECT count(*) FROM build_queue").fetchone()[0] == 0, "days left queued after every process built"
        assert segments == reference_segments, "the segmentation differs from a sequential build of the same events"
        for level, last_node, last_end in conn.execute("SELECT level, last_node_id, last_end_ms FROM rollup_checkpoints"):
            end = conn.execute("SELECT end_ms FROM toc_nodes WHERE node_id = ?", (last_node,)).fetchone()[0]
            assert end == last_end, f"checkpoint of {level} names {last_node} (ends {end}) but records the high-water mark {last_end}"
    finally:
        conn.close()
    with open_store(db) as store:  # no day may look current while its children say otherwise
        for node in store.list_nodes("day"):
            if node.status == "current":
                fresh = roll_node(store, StaleNode(node.node_id, "day", node.start_time, node.end_time, 0), LocalSummarizer())
                assert fresh is not None and (fresh.summary_title, fresh.bullets, fresh.keywords) == (node.summary_title, node.bullets, node.keywords), f"{node.node_id} is marked current but is out of date"


def reference(tmp_path: Path, names: list[str]) -> list[tuple]:
    """The live segments of a store that ingested the given event sets one after another."""
    db = tmp_path / "reference.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    with open_store(db) as store:
        for name in names:
            ingest(store, iter(to_jsonl(EVENTS[name])))
    conn = sqlite3.connect(db)
    try:
        return live_segments(conn)
    finally:
        conn.close()


def explore(tmp_path: Path, template: Path, ops: tuple[list[str], list[str]], expected: list[tuple]) -> int:
    """Run every schedule of the two children and check each; return how many ran."""
    work = tmp_path / "work"
    work.mkdir()
    pending: list[list[int]] = [[]]
    runs = 0
    while pending:
        prefix = pending.pop()
        db, choices, enabled_at = run_schedule(template, work, ops, prefix)
        runs += 1
        try:
            check_invariants(db, expected)
        except AssertionError as exc:
            raise AssertionError(f"schedule {choices} (0 = {ops[0]}, 1 = {ops[1]}): {exc}") from None
        for k in range(len(prefix), len(choices)):
            if choices[k] == 0 and 1 in enabled_at[k]:
                pending.append(choices[:k] + [1])
    print(f"{runs} schedules of {ops}")
    return runs


def files(tmp_path: Path) -> dict[str, Path]:
    made = {}
    for name, events in EVENTS.items():
        made[name] = tmp_path / f"{name}.jsonl"
        made[name].write_bytes(b"".join(to_jsonl(events)))
    return made


def empty_store(tmp_path: Path) -> Path:
    template = tmp_path / "template.db"
    open_store(template).close()
    return template


@pytest.mark.slow
def test_a_builder_beside_an_ingest_and_a_late_ingest(tmp_path: Path) -> None:
    # The case: the builder reads the queue (day 1 from 10:12 on), the ingest builds
    # that day, a late event (09:45, before the 10:00 segment) queues it again.
    f = files(tmp_path)
    template = empty_store(tmp_path)
    with open_store(template) as store:
        ingest(store, iter(to_jsonl(EVENTS["early"])))
    runs = explore(tmp_path, template, (["build"], [f"ingest:{f['later']}", f"ingest:{f['late']}"]), reference(tmp_path, ["early", "later", "late"]))
    assert runs >= 10  # the search really branched (every order of the ~3 and ~6 transactions)


@pytest.mark.slow
def test_an_ingest_beside_an_ingest_and_a_late_ingest(tmp_path: Path) -> None:
    f = files(tmp_path)
    runs = explore(tmp_path, empty_store(tmp_path), ([f"ingest:{f['later']}"], [f"ingest:{f['early']}", f"ingest:{f['late']}"]), reference(tmp_path, ["early", "late", "later"]))
    assert runs >= 20


@pytest.mark.slow
def test_a_rollup_beside_late_ingests(tmp_path: Path) -> None:
    f = files(tmp_path)
    template = empty_store(tmp_path)
    with open_store(template) as store:
        ingest(store, iter(to_jsonl(EVENTS["early"])))
        run_rollup(store, "day", now_ms=NOW, min_age_ms=0, summarizer=LocalSummarizer())
        ingest(store, iter(to_jsonl(EVENTS["later"])), build=False)  # queued, not built: the rollup's build has work
    runs = explore(tmp_path, template, ([f"rollup:day"], [f"ingest:{f['late']}"]), reference(tmp_path, ["early", "later", "late"]))
    assert runs >= 10


@pytest.mark.slow
def test_two_rollups_keep_the_checkpoint_at_its_high_water_mark(tmp_path: Path) -> None:
    template = empty_store(tmp_path)
    with open_store(template) as store:
        ingest(store, iter(to_jsonl(EVENTS["early"])))
        run_rollup(store, "day", now_ms=NOW, min_age_ms=0, summarizer=LocalSummarizer())
        ingest(store, iter(to_jsonl(EVENTS["later"])))  # day 1 stale again, day 2 current: day 1 is rolled after day 2
    runs = explore(tmp_path, template, (["rollup:day"], ["rollup:day"]), reference(tmp_path, ["early", "later"]))
    assert runs >= 10
