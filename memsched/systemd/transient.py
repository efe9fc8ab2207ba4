"""The transient timer that ends a timed pause at its instant (``systemd-run --on-calendar``).

Transient units live only as long as the manager: a reboot or a manager
restart drops them. That is why a timed pause leaves the job's own timer
enabled: the timer comes back with the manager, and its starts before the
pause's end are recorded as paused slots and not run (memsched.jobs.slotgate).
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timezone

from memsched.errors import MemschedError
from memsched.systemd.manager import ManagerClient
from memsched.systemd.names import resume_unit_stem


def calendar_instant(ms: int) -> str:
    """Return an ``OnCalendar=`` value naming one instant, to the microsecond, in UTC."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def arm_resume(manager: ManagerClient, scope: str, job: str, at_ms: int, argv: list[str]) -> str:
    """Start (replacing any earlier one) the transient timer that runs ``argv`` at ``at_ms``; return the timer's name.

    Raises :class:`MemschedError` when systemd-run is missing or the manager refuses the units.
    """
    stem = resume_unit_stem(job)
    cancel_resume(manager, job)
    exe = shutil.which("systemd-run") or "/usr/bin/systemd-run"
    command = [
        exe, f"--{scope}", "--quiet", "--collect", f"--unit={stem}",
        f"--description=memsched: end the timed pause of job {job}",
        f"--on-calendar={calendar_instant(at_ms)}",
        "--timer-property=AccuracySec=1ms",
        "--timer-property=RemainAfterElapse=no",
        "--", *argv,
    ]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise MemschedError(f"cannot start the timer that ends the pause of {job!r}: {exc}") from None
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise MemschedError(f"cannot start the timer that ends the pause of {job!r}: systemd-run: {detail}")
    return f"{stem}.timer"


def cancel_resume(manager: ManagerClient, job: str) -> bool:
    """Stop the job's timed-resume timer if there is one; return whether one was running."""
    stem = resume_unit_stem(job)
    state = manager.properties(f"{stem}.timer").get("ActiveState")
    manager.stop(f"{stem}.timer")
    manager.reset_failed(f"{stem}.service")
    return state in ("active", "activating")
