"""Slots systemd refused to start: find which calendar slots a refused start stood for and record them as lost.

memsched's units have no start rate limit (``StartLimitIntervalSec=0``), but one can
still be imposed (an administrator's drop-in, units of an older memsched). systemd
then refuses the timer's start with result ``start-limit-hit`` and starts the job's
OnFailure= unit, which calls :func:`record_refused_start`: the slots since the job's
last record up to the refused trigger are recorded as lost with reason ``start-limit``,
so status, history and metrics count them.
"""

from __future__ import annotations

from datetime import datetime, timezone

from memsched.config.load import JobConfig
from memsched.registry import Registry

# How far before a refused trigger its slots may lie beyond the timer's own delays
# (jitter, accuracy): refusals whose failure-unit starts were merged into one.
MERGE_SLACK_MS = 60_000


def refused_slots(job: JobConfig, trigger_ms: int, last_slot_ms: int | None) -> list[int]:
    """Return the calendar slots (ms, ascending) a start refused at ``trigger_ms`` stood for.

    Those are the slots after ``last_slot_ms`` (the job's latest record) up to the
    trigger, and never earlier than the timer's random delay and accuracy (plus a
    minute's slack) allow. Empty when no slot is due: the refused start was not the
    timer's (a manual start). Raises :class:`memsched.errors.UsageError` when systemd
    rejects the calendar.
    """
    from memsched.systemd.analyze import calendar_next

    earliest = trigger_ms - int(job.jitter or 0) - int(job.accuracy or 0) - MERGE_SLACK_MS
    after_ms = max(earliest, last_slot_ms if last_slot_ms is not None else earliest)
    if after_ms >= trigger_ms:
        return []
    base = datetime.fromtimestamp(after_ms / 1000, timezone.utc)  # systemd lists the elapses after it
    slots = []
    for at in calendar_next(list(job.on_calendar), base, 1000):
        ms = int(at.timestamp() * 1000)
        if ms > trigger_ms:
            break
        if ms > after_ms:
            slots.append(ms)
    return slots


def record_refused_start(registry: Registry, job: JobConfig, trigger_ms: int) -> int:
    """Record the slots a start refused by systemd's start limit stood for as lost; return how many.

    One record for a run of consecutive slots. Done in one transaction, so two
    failure units for the same job cannot count a slot twice.
    """
    with registry.transaction():
        slots = refused_slots(job, trigger_ms, registry.last_slot_ms(job.name))
        if not slots:
            return 0
        registry.record_lost(
            job.name,
            code="start-limit",
            reason=(
                "systemd refused to start the run: the unit's start rate limit was hit "
                "(see StartLimitIntervalSec= and StartLimitBurst= of the unit and its drop-ins)"
            ),
            slot_ms=slots[0],
            slot_end_ms=slots[-1],
            count=len(slots),
        )
    return len(slots)
