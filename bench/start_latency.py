#!/usr/bin/env python3
"""Benchmark: from a calendar slot to the first instruction of the job's command.

Runs in a private sandbox manager of its own (needs root). Every timer fires
every ``--period`` seconds with ``AccuracySec=1ms`` and no random delay, each at
its own offset inside the period so that the timers never compete for the CPU:

* ``bare``: a hand-written timer + oneshot service whose ExecStart= is the stamp
  command itself (the baseline: what systemd alone costs),
* ``skip``, ``queue``, ``concurrent``: memsched command jobs with that overlap
  policy running the same stamp command.

The stamp command is ``/bin/sh -c 'exec date +%s%N >>FILE'``: the same in every
unit, so its own start-up cancels out of the ratio. The latency of a sample is
the stamp minus the slot it belongs to. Prints the median (and p90) of each,
and its ratio to the bare unit's median measured in the same run.

The memsched package is byte-compiled first and PYTHONDONTWRITEBYTECODE is
dropped from the units' environment, as for an installed package.

    .venv/bin/python bench/start_latency.py [--samples 20] [--period 4]
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomli_w

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memsched.config import schema  # noqa: E402
from memsched.systemd.sandbox import Sandbox  # noqa: E402

POLICIES = ("skip", "queue", "concurrent")
TARGET_MS = 60.0  # slot -> first work, median, every overlap policy


def stamp_command(path: Path) -> list[str]:
    return ["/bin/sh", "-c", f"exec date +%s%N >>{path}"]


def bare_units(work: Path, calendar: str) -> dict[str, str]:
    # systemd expands %-specifiers in ExecStart=: double them, as memsched's renderer does.
    stamp = " ".join(f'"{a}"' if " " in a else a for a in stamp_command(work / "bare.stamps")).replace("%", "%%")
    return {
        "bench-bare.timer": f"[Timer]\nOnCalendar={calendar}\nAccuracySec=1ms\nRandomizedDelaySec=0\n",
        "bench-bare.service": f"[Service]\nType=oneshot\nExecStart={stamp}\n",
    }


def read_stamps(path: Path) -> list[float]:
    if not path.exists():
        return []
    return [int(line) / 1e9 for line in path.read_text().split() if line.strip()]


def latencies(stamps: list[float], offset: int, period: int) -> list[float]:
    """Return, in ms, how long after its slot each stamp came (the slot is the latest one before it)."""
    out = []
    for stamp in stamps:
        whole = int(stamp)
        slot = whole - ((whole - offset) % period)
        out.append((stamp - slot) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20, help="samples per unit (default 20)")
    parser.add_argument("--period", type=int, default=4, help="seconds between two slots of one timer (>= 4)")
    args = parser.parse_args()
    if args.period < len(POLICIES) + 1:
        raise SystemExit(f"--period must be at least {len(POLICIES) + 1}")
    compileall.compile_dir(str(ROOT / "memsched"), quiet=1)
    work = Path(tempfile.mkdtemp(prefix="memsched-bench-"))
    box = Sandbox(Path("/run/memsched-test") / f"bench{os.getpid()}", "bench")
    box.start(tie_to_parent=True)
    try:
        env = dict(os.environ, **box.env())
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        offsets = {"bare": 0, **{p: i + 1 for i, p in enumerate(POLICIES)}}

        def calendar(offset: int) -> str:
            seconds = ",".join(f"{s:02d}" for s in range(offset, 60, args.period)) if 60 % args.period == 0 else None
            if seconds is None:
                raise SystemExit("--period must divide 60")
            return f"*-*-* *:*:{seconds}"

        def cron(offset: int) -> str:
            return f"{offset}-59/{args.period} * * * * *"

        jobs: dict[str, dict] = {name: {"enabled": False} for name in schema.DEFAULT_JOBS}
        for policy in POLICIES:
            jobs[f"lat_{policy}"] = {
                "kind": "command",
                "cron": cron(offsets[policy]),
                "command": stamp_command(work / f"{policy}.stamps"),
                "overlap": policy,
                "accuracy": "1ms",
                "jitter": "0s",
                "catch_up": False,
            }
        config = work / "memsched.toml"
        config.write_text(tomli_w.dumps({"registry": {"path": str(work / "registry.db")}, "jobs": jobs}))
        memsched = [str(Path(sys.executable).parent / "memsched"), "--config", str(config)]
        subprocess.run([*memsched, "install-units"], env=env, check=True, stdout=subprocess.DEVNULL)
        box.unit_dir.mkdir(parents=True, exist_ok=True)
        for name, text in bare_units(work, calendar(0)).items():
            (box.unit_dir / name).write_text(text)
        systemctl = ["systemctl", "--user", "--no-pager"]
        subprocess.run([*systemctl, "daemon-reload"], env=env, check=True)
        subprocess.run([*systemctl, "start", "bench-bare.timer"], env=env, check=True)
        names = ["bare", *POLICIES]
        deadline = time.monotonic() + (args.samples + 3) * args.period + 30
        while time.monotonic() < deadline:
            if all(len(read_stamps(work / f"{n}.stamps")) >= args.samples + 1 for n in names):
                break
            time.sleep(0.5)
        subprocess.run([*systemctl, "stop", "bench-bare.timer", *(f"memsched-lat_{p}.timer" for p in POLICIES)], env=env)
        print(f"slot -> first instruction of the command; {args.samples} samples per unit, period {args.period}s, "
              f"AccuracySec=1ms, no random delay; load average {os.getloadavg()[0]:.2f}")
        medians = {}
        for name in names:
            # The first sample of each is dropped: the timer may have started mid-period.
            values = latencies(read_stamps(work / f"{name}.stamps"), offsets[name], args.period)[1 : args.samples + 1]
            if not values:
                print(f"  {name:11s} no samples")
                continue
            medians[name] = statistics.median(values)
            p90 = sorted(values)[int(0.9 * (len(values) - 1))]
            print(f"  {name:11s} median {medians[name]:7.1f} ms   p90 {p90:7.1f} ms   n={len(values)}")
        if "bare" in medians:
            for policy in POLICIES:
                if policy in medians:
                    print(f"  ratio {policy} / bare: {medians[policy] / medians['bare']:.2f}x")
        for policy in POLICIES:
            if policy in medians:
                verdict = "meets" if medians[policy] <= TARGET_MS else "MISSES"
                print(f"  {policy:11s} {verdict} the target of {TARGET_MS:.0f} ms median (issue 11)")
    finally:
        box.stop()


if __name__ == "__main__":
    main()
