#!/usr/bin/env python3
"""Benchmark: what the "late" column costs `memsched status`, against the registry reads status already does.

For N jobs (daily calendars at different minutes, in UTC and in a DST zone), times
computing every job's lateness from cold caches (as a fresh `memsched status` does:
expected interval from the calendar, DST transitions) against the registry queries
read_status makes (counts, last runs, last skips, pauses, successes) on a registry
with some history. Both are measured in the same run; the ratio is what is printed.

    .venv/bin/python bench/late.py [--jobs 20] [--runs 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memsched.config.load import parse_config  # noqa: E402
from memsched.config import schema  # noqa: E402
from memsched.cron import interval  # noqa: E402
from memsched.late import lateness  # noqa: E402
from memsched.registry import Registry, now_ms  # noqa: E402


def _clear() -> None:
    for cached in (interval._interval_s, interval._matching_days, interval._longest_day_gap, interval._transitions):
        cached.cache_clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="memsched-bench-late-"))
    registry = Registry(work / "registry.db").open()
    now = now_ms()
    for zone in ("UTC", "Europe/Berlin"):
        jobs: dict[str, dict] = {name: {"enabled": False} for name in schema.DEFAULT_JOBS}
        for i in range(args.jobs):
            jobs[f"job{i:02d}"] = {"kind": "command", "cron": f"{i % 60} 3 * * *", "command": ["/bin/true"], "timezone": zone}
        config = parse_config({"jobs": jobs})
        for name in list(config.enabled_jobs)[:5]:
            for k in range(20):
                run = registry.start_run(name, trigger="timer", started_ms=now - (k + 1) * 86_400_000)
                registry.finish_run(run, result="success", exit_code=0, ended_ms=now - (k + 1) * 86_400_000 + 500)
        late_samples, registry_samples = [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            registry.counts(), registry.last_runs(), registry.last_skips(), registry.pauses()
            successes, first = registry.last_successes(), registry.first_known()
            registry_samples.append(time.perf_counter() - start)
            _clear()
            start = time.perf_counter()
            for job in config.enabled_jobs.values():
                lateness(job, 300_000, now, successes.get(job.name), first.get(job.name), False)
            late_samples.append(time.perf_counter() - start)
        late, reads = statistics.median(late_samples) * 1000, statistics.median(registry_samples) * 1000
        print(f"{args.jobs} jobs in {zone}: lateness {late:.2f} ms, registry reads {reads:.2f} ms, ratio {late / reads:.2f}x")


if __name__ == "__main__":
    main()
