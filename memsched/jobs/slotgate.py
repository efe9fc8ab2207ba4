"""The timer start's one question about slots a person asked not to run (timed pause, `memsched skip`).

Asked by every start the timer makes, whatever the overlap policy and the
systemd version: by `memsched exec` for skip, queue and the ≥ 257 native
skip, by the spawner for concurrent jobs (so no instance starts). On
systemd < 257 the overlap gate runs first, so a re-fire it refuses never
uses up a skipped slot. Manual runs (`memsched run`) are never refused here.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from memsched.config.load import JobConfig
from memsched.jobs.joblog import JobLog
from memsched.registry import Registry, now_ms


def slot_of_trigger(job: JobConfig, trigger_ms: int) -> int:
    """Return the calendar slot (ms) a timer trigger at ``trigger_ms`` stands for.

    The timer fires at most ``jitter`` (RandomizedDelaySec=) plus ``accuracy``
    (AccuracySec=) after its slot, so the slot is the latest calendar instant
    in that window; a trigger with none in it (a catch-up after downtime,
    Persistent=) stands for itself. When systemd-analyze cannot answer, the
    trigger stands for itself too.
    """
    from memsched.systemd.analyze import calendar_next

    lookback = job.jitter + job.accuracy + 1000
    after = datetime.fromtimestamp((trigger_ms - lookback) / 1000, timezone.utc)
    try:
        # Cron's finest step is a second: at most lookback/1000 + 1 slots fit in the window.
        slots = calendar_next(list(job.on_calendar), after, lookback // 1000 + 2)
    except Exception:
        return trigger_ms
    candidates = [int(s.timestamp() * 1000) for s in slots if int(s.timestamp() * 1000) <= trigger_ms]
    return max(candidates) if candidates else trigger_ms


def may_be_requested(registry: Registry, job: JobConfig) -> bool:
    """Return whether a skip or timed pause may cover this job's starts (cheap: one query, no manager call).

    True when the registry cannot tell: :func:`skip_requested` then decides (and lets the run start).
    """
    import sqlite3

    try:
        return registry.has_slot_requests(job.name)
    except sqlite3.Error:
        return True


def skip_requested(registry: Registry, job: JobConfig, trigger_ms: int | None, log: JobLog) -> bool:
    """Return True when this timer start must not run: its slot is paused or skipped (recorded as such, and logged).

    A timed pause found ended is forgotten here (the start after it runs), so a
    pause whose resume timer was lost with a manager restart still ends on time.
    When the registry cannot answer (locked past its busy timeout, damaged) the
    run starts, with a warning in the job's journal.
    """
    import sqlite3

    try:
        if not registry.has_slot_requests(job.name):
            return False
        slot_ms = slot_of_trigger(job, trigger_ms) if trigger_ms else now_ms()
        decided = registry.decide_slot(job.name, slot_ms, os.environ.get("INVOCATION_ID"))
    except sqlite3.Error as exc:
        # As the overlap gate does when it cannot decide: let the run start rather than lose it silently.
        log.warning(f"cannot read the skip and pause requests ({exc}); letting the run start")
        return False
    if decided is None:
        ended = registry.end_timed_pause(job.name, slot_ms)
        if ended is not None:
            log.info(f"the pause by {ended.paused_by} ended at {datetime.fromtimestamp(ended.until_ms / 1000, timezone.utc):%Y-%m-%d %H:%M:%S}Z: running")  # type: ignore[operator]
        return False
    log.info(f"not running: {decided[1]}")
    return True
