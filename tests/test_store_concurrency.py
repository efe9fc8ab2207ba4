"""Concurrency: ingests, rollups and compactions in separate processes at once; no error surfaces."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from memsched.jobs.rollup import run_rollup
from memsched.ops.memory import ingest
from memsched.store import open_store
from memsched.store.sample import generate_events, to_jsonl
from memsched.summarize import LocalSummarizer

START = 1_704_067_200_000  # 2024-01-01
NOW = START + 50 * 86_400_000
HOUR = 3_600_000
LOOP = """
import sys, time
from memsched.jobs.compaction import run_compaction
from memsched.jobs.rollup import run_rollup
from memsched.store import open_store
from memsched.summarize import LocalSummarizer
path, kind, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
for _ in range(rounds):
    with open_store(path) as store:
        if kind == "rollup":
            for level in ("day", "week", "month", "year"):
                run_rollup(store, level, now_ms=%d, min_age_ms=%d, summarizer=LocalSummarizer())
        else:
            run_compaction(store)
    time.sleep(0.05)
""" % (NOW, HOUR)


def content(store) -> dict[str, tuple]:
    return {n.node_id: (n.title, n.summary_title, n.bullets, n.keywords, n.child_node_ids, n.status) for n in store.list_nodes()}


def test_ingest_rollup_and_compaction_at_the_same_time(tmp_path: Path) -> None:
    first = list(to_jsonl(generate_events(START, 45, seed=8)))
    second = list(to_jsonl(generate_events(START + 20 * 86_400_000, 25, seed=9)))
    half = len(first) // 2
    files = {}
    for name, lines in (("a", first[:half]), ("b", first[half:] + second[:100]), ("c", second + first[:50])):
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_bytes(b"".join(lines))
    db = tmp_path / "shared.db"
    open_store(db).close()
    env = dict(os.environ, MEMSCHED_SCOPE="user", XDG_CONFIG_HOME=str(tmp_path / "nocfg"))
    env.pop("MEMSCHED_CONFIG", None)
    procs = [subprocess.Popen([sys.executable, "-m", "memsched", "ingest", str(f), "--store", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for f in files.values()]
    procs += [
        subprocess.Popen([sys.executable, "-c", LOOP, str(db), "rollup", "6"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env),
        subprocess.Popen([sys.executable, "-c", LOOP, str(db), "compaction", "6"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env),
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (proc.args, err.decode())
        assert b"locked" not in err and b"Traceback" not in err, err.decode()

    with open_store(db) as store:
        for level in ("day", "week", "month", "year"):
            run_rollup(store, level, now_ms=NOW, min_age_ms=HOUR, summarizer=LocalSummarizer())
        assert store.pragma("PRAGMA integrity_check", "t") == [("ok",)]
        assert store.pending_days() == []
        got = content(store)
    with open_store(tmp_path / "sequential.db") as reference:
        ingest(reference, iter(first + second))
        for level in ("day", "week", "month", "year"):
            run_rollup(reference, level, now_ms=NOW, min_age_ms=HOUR, summarizer=LocalSummarizer())
        assert got == content(reference)
