#!/usr/bin/env python3
"""Benchmark: the memory store over one year of events (about 1,000,000) and the nightly case.

Phases, each in a fresh child process that reports its own wall time and peak RSS
(ru_maxrss of that process, so one phase's memory never hides another's):

* bare:    executemany of the very rows ingest stores, into an identical empty store
           (rows parsed beforehand, chunk by chunk; only executemany + commit timed)
* ingest:  `ingest()` of the JSON Lines file: read, decode, validate, insert, one transaction
* build:   segmentation + segment nodes + grips + placeholder parents for every day
* rollup:  day, week, month and year rollups with the local summarizer
* nightly: into a copy of the rolled year store, one new day (a Sunday that closes a
           week and a month): ingest + build + day/week/month rollups, as the timers would

    .venv/bin/python bench/memory.py [--days 365] [--workdir /tmp/memsched-bench]

Targets (2-core machine): year (ingest + build + rollup) <= 90 s, peak RSS <= 200 MiB,
ingest <= 3x bare, nightly <= 1.5 s. Figures vary with the machine and its load;
the ingest/bare ratio is measured in the same run so that most of that noise cancels.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memsched.store.periods import DAY_MS  # noqa: E402

NIGHT = int(datetime(2024, 3, 31, tzinfo=timezone.utc).timestamp() * 1000)  # a Sunday ending week 13 and March
HOUR = 3_600_000
YEAR_SHAPE = {"sessions_per_day": (10, 14), "turns_per_session": (28, 50), "pace": 0.3}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase(name: str, workdir: Path, days: int) -> dict[str, object]:
    """Run one phase in this (child) process; return its figures."""
    from memsched.jobs.rollup import run_rollup
    from memsched.ops.memory import BATCH_ROWS, parse_event_line
    from memsched.ops.memory import ingest as ingest_events
    from memsched.store import open_store
    from memsched.store.build import build_pending
    from memsched.summarize import LocalSummarizer

    year_file, night_file = workdir / "year.jsonl", workdir / "night.jsonl"
    store_path, bare_path, night_path = workdir / "year.db", workdir / "bare.db", workdir / "night.db"
    extra: dict[str, object] = {}
    if name == "bare":
        timed = 0.0
        with open_store(bare_path) as store, open(year_file, "rb") as source:
            conn = store.connection
            chunk: list[tuple] = []

            def flush() -> float:
                start = time.perf_counter()
                conn.executemany(
                    "INSERT OR IGNORE INTO events (event_id, session_id, ts, event_type, role, text, metadata, agent, tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    chunk,
                )
                return time.perf_counter() - start

            start = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            timed += time.perf_counter() - start
            for line in source:
                chunk.append(parse_event_line(line))  # type: ignore[arg-type]
                if len(chunk) == BATCH_ROWS:
                    timed += flush()
                    chunk = []
            timed += flush()
            start = time.perf_counter()
            conn.execute("COMMIT")
            timed += time.perf_counter() - start
            extra["rows"] = store.count_events()
        return {"seconds": timed, "peak_rss_mib": peak_rss_mib(), **extra}
    start = time.perf_counter()
    if name == "ingest":
        with open_store(store_path) as store, open(year_file, "rb") as source:
            report = ingest_events(store, source, name=str(year_file), build=False)
        extra["events"] = report.inserted
    elif name == "build":
        with open_store(store_path) as store:
            result = build_pending(store, summarizer=LocalSummarizer())
        extra.update(days=result.days_built, segments=result.segments_written)
    elif name == "rollup":
        with open_store(store_path) as store:
            for level in ("day", "week", "month", "year"):
                result = run_rollup(store, level, now_ms=NIGHT + 3 * HOUR, min_age_ms=HOUR, summarizer=LocalSummarizer())
                extra[f"{level}_rolled"] = result.nodes_rolled
    elif name == "nightly":
        with open_store(night_path) as store, open(night_file, "rb") as source:
            report = ingest_events(store, source, name=str(night_file))
            extra["events"] = report.inserted
            for level in ("day", "week", "month"):
                result = run_rollup(store, level, now_ms=NIGHT + DAY_MS + 3 * HOUR, min_age_ms=HOUR, summarizer=LocalSummarizer())
                extra[f"{level}_versions"] = result.versions_written
    else:
        raise SystemExit(f"unknown phase {name}")
    return {"seconds": time.perf_counter() - start, "peak_rss_mib": peak_rss_mib(), **extra}


def run_child(name: str, workdir: Path, days: int) -> dict[str, object]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--phase", name, "--workdir", str(workdir), "--days", str(days)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{proc.stderr}")
    figures = json.loads(proc.stdout)
    figures["process_seconds"] = time.perf_counter() - started
    return figures


def generate(workdir: Path, days: int) -> int:
    from memsched.store.sample import generate_events, to_jsonl

    year_file, night_file = workdir / "year.jsonl", workdir / "night.jsonl"
    stamp = workdir / f"generated-{days}.json"
    if not stamp.exists():
        start = NIGHT - days * DAY_MS
        with open(year_file, "wb") as out:
            count = 0
            for line in to_jsonl(generate_events(start, days, seed=2024, **YEAR_SHAPE)):  # type: ignore[arg-type]
                out.write(line)
                count += 1
        with open(night_file, "wb") as out:
            out.writelines(to_jsonl(generate_events(NIGHT, 1, seed=7, **YEAR_SHAPE)))  # type: ignore[arg-type]
        stamp.write_text(json.dumps({"events": count}))
    return int(json.loads(stamp.read_text())["events"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/memsched-bench"))
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.workdir, args.days)))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    for stale in ("year.db", "bare.db", "night.db"):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{args.workdir / stale}{suffix}").unlink(missing_ok=True)
    print(f"generating {args.days} days of events (cached in {args.workdir}) ...", flush=True)
    events = generate(args.workdir, args.days)
    size = (args.workdir / "year.jsonl").stat().st_size
    print(f"{events} events, {size / 2**20:.0f} MiB of JSON Lines; {os.cpu_count()} CPUs", flush=True)
    results = {}
    for name in ("bare", "ingest", "build", "rollup"):
        results[name] = run_child(name, args.workdir, args.days)
        print(f"  {name:8s} {results[name]['seconds']:7.2f} s   peak RSS {results[name]['peak_rss_mib']:6.1f} MiB   {dict((k, v) for k, v in results[name].items() if k not in ('seconds', 'peak_rss_mib', 'process_seconds'))}", flush=True)
    shutil.copy(args.workdir / "year.db", args.workdir / "night.db")
    results["nightly"] = run_child("nightly", args.workdir, args.days)
    n = results["nightly"]
    print(f"  nightly  {n['seconds']:7.2f} s   peak RSS {n['peak_rss_mib']:6.1f} MiB   (process incl. interpreter start {n['process_seconds']:.2f} s)   {dict((k, v) for k, v in n.items() if k not in ('seconds', 'peak_rss_mib', 'process_seconds'))}")
    year = sum(float(results[p]["seconds"]) for p in ("ingest", "build", "rollup"))
    peak = max(float(r["peak_rss_mib"]) for r in results.values())
    ratio = float(results["ingest"]["seconds"]) / float(results["bare"]["seconds"])
    db_size = (args.workdir / "year.db").stat().st_size
    print()
    print(f"year (ingest + build + rollup): {year:6.1f} s   target <= 90 s    ({year / 90:.2f} of target)")
    print(f"peak RSS of any phase:          {peak:6.1f} MiB target <= 200 MiB ({peak / 200:.2f} of target)")
    print(f"ingest / bare executemany:      {ratio:6.2f} x   target <= 3 x     ({ratio / 3:.2f} of target)")
    print(f"nightly (one new day):          {float(n['seconds']):6.2f} s   target <= 1.5 s   ({float(n['seconds']) / 1.5:.2f} of target)")
    print(f"store size: {db_size / 2**20:.0f} MiB for {events} events ({db_size / size:.2f} x the JSON Lines)")


if __name__ == "__main__":
    main()
