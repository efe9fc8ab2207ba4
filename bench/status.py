#!/usr/bin/env python3
"""Benchmark: `memsched status` with 20 installed jobs against `systemctl --user list-timers --all`.

Runs in a private sandbox manager of its own (needs root). Prints the median
wall time of each command over N runs, measured in the same run so that the
ratio cancels the machine's noise, and the imports `memsched status` pays for.

    .venv/bin/python bench/status.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memsched.systemd.sandbox import Sandbox  # noqa: E402

from _setup import install_jobs  # noqa: E402


TARGET_MS = 80.0


def timed(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        samples.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{argv} failed: {proc.stderr.decode()}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="memsched-bench-"))
    box = Sandbox(Path("/run/memsched-test") / f"bench{os.getpid()}", "bench")
    box.start(tie_to_parent=True)
    try:
        env, memsched = install_jobs(box, work, args.jobs)
        timed([*memsched, "status"], env, 2)  # warm-up: writes the bytecode caches
        status = timed([*memsched, "status"], env, args.runs)
        status_json = timed([*memsched, "status", "--json"], env, args.runs)
        timers = timed(["systemctl", "--user", "--no-pager", "list-timers", "--all"], env, args.runs)
        med = {k: statistics.median(v) * 1000 for k, v in (("status", status), ("status --json", status_json), ("list-timers", timers))}
        print(f"jobs installed: {args.jobs}, runs per command: {args.runs}")
        for name, value in med.items():
            print(f"  median {name:14s} {value:7.1f} ms")
        print(f"  ratio status / list-timers: {med['status'] / med['list-timers']:.2f}x")
        verdict = "meets" if med["status"] <= TARGET_MS else "MISSES"
        print(f"  status {verdict} the target of {TARGET_MS:.0f} ms median (issue 11; 20 jobs, 3 with history, bytecode compiled)")
        imports = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "memsched", *memsched[1:], "status"],
            env=env, capture_output=True, text=True,
        ).stderr
        heavy = [m for m in ("jinja2", "croniter", "grpc", "hypothesis") if f" {m}\n" in imports or f" {m}." in imports]
        print(f"  heavy modules imported by status: {', '.join(heavy) if heavy else 'none'}")
    finally:
        box.stop()


if __name__ == "__main__":
    main()
