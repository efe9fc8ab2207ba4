"""Ask ``systemd-analyze`` (the manager's own code) about calendars and units.

systemd-analyze works without a running manager, so these are usable on any
machine with systemd installed, and they are the oracles the tests trust.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime, timezone

from memsched.errors import MemschedError, UsageError

_ELAPSE_PREFIXES = ("Next elapse:", "Iter. #")


def systemd_analyze_path() -> str | None:
    """Return the path of systemd-analyze, or None when it is not installed."""
    return shutil.which("systemd-analyze") or next(
        (p for p in ("/usr/bin/systemd-analyze", "/bin/systemd-analyze") if os.access(p, os.X_OK)), None
    )


def _run(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    exe = systemd_analyze_path()
    if exe is None:
        raise MemschedError("systemd-analyze is not installed (Debian: apt install systemd)")
    env = dict(os.environ, TZ="UTC", SYSTEMD_PAGER="", SYSTEMD_COLORS="0", LC_ALL="C")
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=timeout)


def calendar_next(values: list[str], after: datetime, count: int) -> list[datetime]:
    """Return the first ``count`` elapses strictly after ``after`` of a timer with these ``OnCalendar=`` values.

    The result is the sorted union of every value's elapses (as systemd merges
    a timer's calendars), as aware UTC datetimes; shorter than ``count`` when
    the calendars run out.
    Raises :class:`UsageError` when systemd rejects a value.
    """
    if not values:
        return []
    base = after.timestamp()
    proc = _run(["calendar", f"--base-time=@{base:.6f}", f"--iterations={count}", *values])
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise UsageError(f"systemd rejected the calendar: {detail[0]}")
    elapses: set[datetime] = set()
    for line in proc.stdout.splitlines():
        text = line.strip()
        if not text.startswith(_ELAPSE_PREFIXES):
            continue
        stamp = text.split(":", 1)[1].strip()
        if stamp == "never":
            continue
        elapses.add(datetime.strptime(stamp, "%a %Y-%m-%d %H:%M:%S UTC").replace(tzinfo=timezone.utc))
    return sorted(elapses)[:count]


def normalize_calendar(value: str) -> str:
    """Return systemd's normalized form of one calendar value.

    Raises :class:`UsageError` when systemd rejects it.
    """
    proc = _run(["calendar", "--iterations=1", value])
    if proc.returncode != 0:
        raise UsageError(f"systemd rejected the calendar {value!r}")
    for line in proc.stdout.splitlines():
        if line.strip().startswith("Normalized form:"):
            return line.split(":", 1)[1].strip()
    raise MemschedError(f"unexpected systemd-analyze output for {value!r}")
