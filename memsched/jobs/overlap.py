"""What the overlap policies need beyond one run: the skip gate's decision, the slots a run
overlapped, and the runs queued behind a run (overlap = queue).

systemd 252 has no native "skip" and merges every start of a unit that is already
starting into that start, so memsched keeps the facts in the registry:

* A run of a ``skip`` job that overlapped slots records them as skipped and tells the
  registry that systemd will start the job once more right after it ends (the timer's
  next elapse is computed from its last trigger, which is in the past). The gate
  (``ExecCondition=``) refuses exactly that one start; every other start runs.
* A manual run asked through memsched is a run request. The gate lets a start with a
  fresh pending request run; the run claims the request.
* Under ``queue``, a request made while a run was going, or a timer slot whose start
  was merged into a manual run, is served by one more run right after, in the same
  activation (systemd cannot start the unit again while it is still starting).
"""

from __future__ import annotations

from datetime import datetime, timezone

from memsched.config.load import JobConfig
from memsched.jobs.joblog import JobLog
from memsched.registry import Registry, now_ms

# A request older than this no longer lets a gated start through: its own start came
# (and went) long ago; what is starting now is someone else's.
REQUEST_FRESH_MS = 60_000
# How long after a run's end the re-fire is waited for, besides the timer's own random
# delay and accuracy; past it (or at the next slot) the expectation lapses.
REFIRE_GRACE_MS = 30_000


def gate_refuses(registry: Registry, job: JobConfig, now: int | None = None) -> bool:
    """Return True when this start is the re-fire after a run that overlapped slots (overlap = skip).

    A start with a fresh pending run request (a manual run through memsched) always runs;
    the re-fire is refused once, atomically (of two racing starts one is refused).
    Raises sqlite3.Error when the registry cannot be read (the caller exits 255).
    """
    at = now if now is not None else now_ms()
    if manual_request_waits(registry, job, at):
        return False
    if not registry.take_refire(job.name, at):
        return False
    JobLog(job.name).info(
        f"not starting: systemd started {job.name} again right after a run that overlapped a slot "
        "(the slot is recorded as skipped); overlap = skip"
    )
    return True


def manual_request_waits(registry: Registry, job: JobConfig, at: int) -> bool:
    """Return True when a fresh run request (a manual run through memsched) waits for this start."""
    return any(r.requested_ms >= at - REQUEST_FRESH_MS for r in registry.pending_requests(job.name))


def record_overlapped_slots(
    registry: Registry, job: JobConfig, started_ms: int, ended_ms: int, log: JobLog, scope: str | None = None
) -> int:
    """Record every slot that elapsed while a run went as skipped and expect systemd's re-fire (overlap = skip).

    systemd re-fires when a slot came after the timer's last trigger: after the slot that
    started a timer run, or, for a manual run, after the slot whose start was merged into
    it (that one slot makes no re-fire). With ``scope`` the timer is asked which; without,
    or when it cannot be asked, a re-fire is expected. Returns how many slots were
    recorded. When the calendar cannot be computed nothing is recorded (and no re-fire is
    expected: the next start runs).
    """
    from memsched.systemd.analyze import calendar_next

    after = datetime.fromtimestamp(started_ms / 1000, timezone.utc)
    try:
        slots = calendar_next(list(job.on_calendar), after, 1000)
    except Exception as exc:  # noqa: BLE001 - accounting must not fail the run it follows
        log.warning(f"cannot compute the slots this run overlapped ({exc}); none recorded as skipped")
        return 0
    recorded: list[int] = []
    next_slot_ms: int | None = None
    for slot in slots:
        slot_ms = int(slot.timestamp() * 1000)
        if slot_ms > ended_ms:
            next_slot_ms = slot_ms
            break
        reason = (
            f"slot {slot:%Y-%m-%d %H:%M:%S}Z elapsed while the previous run "
            f"(started {datetime.fromtimestamp(started_ms / 1000, timezone.utc):%H:%M:%S}Z) was still running"
        )
        registry.record_skip(job.name, code="overlap", reason=reason, slot_ms=slot_ms, at_ms=slot_ms)
        log.info(f"skipped: {reason}")
        recorded.append(slot_ms)
    trigger = last_trigger_ms(job, scope) if recorded and scope is not None else None
    if trigger is not None and trigger > started_ms:  # a slot's start merged into this run: re-fire only for later slots
        refire = any(slot_ms > trigger for slot_ms in recorded)
    else:
        refire = bool(recorded)
    if refire:
        lapse = ended_ms + int(job.jitter or 0) + int(job.accuracy or 0) + REFIRE_GRACE_MS
        registry.expect_refire(job.name, after_ms=ended_ms, before_ms=min(next_slot_ms or lapse, lapse))
    return len(recorded)


def last_trigger_ms(job: JobConfig, scope: str) -> int | None:
    """Return the job's timer's last trigger (ms since the epoch), or None when it cannot be asked."""
    from memsched.systemd.manager import TIMER_IFACE, ManagerClient
    from memsched.systemd.names import timer_name

    try:
        with ManagerClient(scope) as manager:
            value = int(manager.properties(timer_name(job.name), TIMER_IFACE).get("LastTriggerUSec", 0)) // 1000
    except Exception:  # noqa: BLE001 - no manager (a run from a shell): no merged slot to serve
        return None
    return value or None


def next_queued(registry: Registry, job: JobConfig, scope: str, served_ms: int) -> tuple[str, int | None] | None:
    """Return what the next queued run serves (overlap = queue), or None when nothing waits.

    ``("timer", slot_ms)`` when the timer fired after ``served_ms`` (its start was merged
    into this activation), ``("manual", None)`` when run requests are pending.
    """
    trigger = last_trigger_ms(job, scope)
    if trigger is not None and trigger > served_ms:
        return "timer", trigger
    if registry.pending_requests(job.name):
        return "manual", None
    return None
