#!/usr/bin/env python3
"""Benchmark: the weekly compaction and the full verification on the one-year store, cold page cache.

The store is the one bench/memory.py makes (about 1,000,000 events, 1.3 GB; run it first,
e.g. `bench/memory.py --workdir /var/tmp/memsched-bench`), copied so the original is never
changed. Before every timed run the page cache is dropped (`sync; echo 3 >
/proc/sys/vm/drop_caches`, which needs root: without root the benchmark refuses unless
--warm is given, and then says that its figures are warm-cache ones). Each run is a fresh
child process, so nothing of the store is cached in this one either.

Cases (each prints every step's time):

* weekly, nothing to reclaim, nothing new since the last check
* weekly, nothing to reclaim, one week of events new since the last check
* weekly, 10% free pages scattered through the file (runs of events deleted), one week new
* for comparison, alone on the same store: PRAGMA quick_check, PRAGMA integrity_check,
  and the verify job's full pass (integrity_check table by table, resumable)

    sudo .venv/bin/python bench/compaction.py [--store /var/tmp/memsched-bench/year.db] [--skip-full]

Target (issue 17): weekly with nothing to reclaim <= 10 s cold. The ratios printed are to
integrity_check alone, measured in the same run, so that the machine's disk speed and
load cancel out of them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WEEK_MS = 7 * 86_400_000
TARGET_S = 10.0


def drop_caches(warm: bool) -> None:
    if warm:
        return
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def child(kind: str, path: Path) -> dict[str, object]:
    """Run one case in this (child) process; return its figures."""
    started = time.perf_counter()
    if kind == "compaction":
        from memsched.jobs.compaction import run_compaction

        result = run_compaction(path)
        return {"seconds": time.perf_counter() - started, "steps": result.step_seconds, "rows_checked": result.rows_checked, "pages_reclaimed": result.pages_reclaimed, "free_pages_before": result.free_pages_before, "integrity": result.integrity}
    if kind == "verify":
        from memsched.jobs.verify import run_verification

        steps: dict[str, float] = {}
        last = [time.perf_counter(), ""]

        def progress(done: int, total: int, item: str) -> None:
            now = time.perf_counter()
            if last[1] and last[1] != item:
                steps[str(last[1])] = steps.get(str(last[1]), 0.0) + now - float(last[0])
                last[0] = now
            if last[1] != item:
                last[0], last[1] = now, item

        result = run_verification(path, progress=progress)
        return {"seconds": time.perf_counter() - started, "steps": steps, "result": result.result}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = conn.execute(f"PRAGMA {kind}").fetchall()
    conn.close()
    return {"seconds": time.perf_counter() - started, "result": rows[0][0] if rows else ""}


def run(kind: str, path: Path, warm: bool) -> dict[str, object]:
    drop_caches(warm)
    proc = subprocess.run([sys.executable, __file__, "--child", kind, "--store", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def set_cursor(path: Path, behind_ms: int) -> int:
    """Open (and so migrate) the copy; put the weekly check's cursor ``behind_ms`` before the newest event. Returns the rows behind it."""
    from memsched.store import open_store

    with open_store(path) as store:
        conn = store.connection
        newest = conn.execute("SELECT max(ts) FROM events").fetchone()[0]
        first_new = conn.execute("SELECT coalesce(min(seq), 1) FROM events WHERE ts > ?", (newest - behind_ms,)).fetchone()[0] if behind_ms else None
        top = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
        cursor = top if first_new is None else first_new - 1
        conn.execute("INSERT OR REPLACE INTO store_meta (key, value) VALUES ('recent.checked_seq', ?)", (str(cursor),))
        store.pragma("PRAGMA wal_checkpoint(TRUNCATE)", "checkpoint")
        return int(conn.execute("SELECT count(*) FROM events WHERE seq > ?", (cursor,)).fetchone()[0])


def free_ten_percent(path: Path) -> float:
    """Delete runs of events spread through the copy, about a tenth of its pages; return the free fraction."""
    conn = sqlite3.connect(path)
    top = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
    # two runs of 4000 events in every 17 (about 1000 leaf pages each, and their index
    # entries): events and their indexes are about 90% of the pages, so this frees about
    # 10% of the file, in holes spread through it (what incremental_vacuum must fill by
    # moving pages from the end)
    conn.execute("DELETE FROM events WHERE seq < ? AND (seq / 4000) % 17 IN (4, 12)", (top - 50_000,))
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    free = conn.execute("PRAGMA freelist_count").fetchone()[0] / conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    return free


def show(name: str, figures: dict[str, object], baseline: float | None) -> None:
    seconds = float(figures["seconds"])  # type: ignore[arg-type]
    ratio = f"   {seconds / baseline:6.3f} of integrity_check" if baseline else ""
    extra = {k: v for k, v in figures.items() if k not in ("seconds", "steps")}
    print(f"  {name:60s} {seconds:8.2f} s{ratio}   {extra}", flush=True)
    for step, took in dict(figures.get("steps") or {}).items():  # type: ignore[call-overload]
        print(f"      {step:56s} {float(took):8.2f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("/var/tmp/memsched-bench/year.db"))
    parser.add_argument("--workdir", type=Path, default=None, help="where the copies go (default: beside --store)")
    parser.add_argument("--warm", action="store_true", help="do not drop the page cache (figures are then warm-cache ones)")
    parser.add_argument("--skip-full", action="store_true", help="skip integrity_check and the full pass (minutes each, cold)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.store)))
        return
    if not args.store.exists():
        raise SystemExit(f"{args.store}: no store; make it with `bench/memory.py --workdir {args.store.parent}`")
    if not args.warm and os.geteuid() != 0:
        raise SystemExit("dropping the page cache needs root: run as root, or pass --warm (and read the figures as warm ones)")
    work = args.workdir or args.store.parent
    weekly, freed = work / "compaction-weekly.db", work / "compaction-free.db"
    print(f"store {args.store}: {args.store.stat().st_size / 2**20:.0f} MiB; {os.cpu_count()} CPUs; "
          f"page cache {'NOT dropped (--warm)' if args.warm else 'dropped before every run (sync; echo 3 > /proc/sys/vm/drop_caches)'}", flush=True)
    shutil.copy(args.store, weekly)
    set_cursor(weekly, 0)
    results: dict[str, dict[str, object]] = {}
    baseline = None
    if not args.skip_full:
        results["integrity_check alone"] = run("integrity_check", weekly, args.warm)
        baseline = float(results["integrity_check alone"]["seconds"])  # type: ignore[arg-type]
    results["quick_check alone"] = run("quick_check", weekly, args.warm)
    results["weekly: nothing to reclaim, nothing new"] = run("compaction", weekly, args.warm)
    new_rows = set_cursor(weekly, WEEK_MS)
    results[f"weekly: nothing to reclaim, a week new ({new_rows} events)"] = run("compaction", weekly, args.warm)
    print("  (preparing the 10% free pages copy ...)", flush=True)
    shutil.copy(args.store, freed)
    fraction = free_ten_percent(freed)
    new_rows = set_cursor(freed, WEEK_MS)
    results[f"weekly: {fraction:.0%} free pages, a week new ({new_rows} events)"] = run("compaction", freed, args.warm)
    if not args.skip_full:
        set_cursor(weekly, 0)
        results["full verification (verify job, one pass)"] = run("verify", weekly, args.warm)
    print()
    for name, figures in results.items():
        show(name, figures, baseline)
    quiet = float(results["weekly: nothing to reclaim, nothing new"]["seconds"])  # type: ignore[arg-type]
    print()
    print(f"weekly compaction, nothing to reclaim: {quiet:6.2f} s   target <= {TARGET_S:g} s   ({quiet / TARGET_S:.2f} of target)")
    for path in (weekly, freed):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
