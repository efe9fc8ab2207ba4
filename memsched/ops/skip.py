"""Skip a job's next N slots, or every slot before an instant, without stopping its timer. Returns data, never prints.

The request is a skip window in the registry (memsched.registry.windows); each
timer start inside it is recorded as a skipped slot (reason code
``manual-skip``, who asked) and does not run (memsched.jobs.slotgate). The
timer stays enabled and running, so the job's next slot after the window runs
as usual, whatever its overlap policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from memsched.config.load import Config, JobConfig
from memsched.errors import UsageError
from memsched.ops.actor import default_actor
from memsched.ops.instants import parse_until
from memsched.ops.status import resolve_jobs
from memsched.registry import PauseRecord, SkipWindow, now_ms, open_registry

MAX_NEXT = 1000  # slots one request may name (systemd-analyze computes them)
SHOWN_SLOTS = 100  # slots listed in a result


@dataclass
class SkipResult:
    """One job's skip: the window recorded and the first slots it covers (``more``: it covers more than listed)."""

    job: str
    window: SkipWindow
    slots_ms: list[int] = field(default_factory=list)
    more: bool = False
    replaced: SkipWindow | None = None


def _upcoming(job: JobConfig, after_ms: int, count: int) -> list[int]:
    from memsched.systemd.analyze import calendar_next

    after = datetime.fromtimestamp(after_ms / 1000, timezone.utc)
    return [int(t.timestamp() * 1000) for t in calendar_next(list(job.on_calendar), after, count)]


def skip_through(jobs: list[JobConfig], next_n: int | None, until_text: str | None, now: int) -> dict[str, tuple[int | None, list[int]]]:
    """Return per job the end of its skip window (``--until``: the instant; ``--next``: None) and the upcoming slots.

    For ``--next N`` the slots are a few more than N after ``now``: the request takes
    effect a little later (:func:`skip` keeps the first N after that moment).
    Raises :class:`UsageError` naming the option: neither or both of ``--next`` and
    ``--until``, N out of 1..1000, an instant not in the future, a job that never fires again.
    """
    if (next_n is None) == (until_text is None):
        raise UsageError("give --next N or --until TIME, not both" if next_n is not None else "give --next N or --until TIME (or --cancel)")
    if next_n is not None and not 1 <= next_n <= MAX_NEXT:
        raise UsageError(f"--next {next_n}: expected 1 to {MAX_NEXT} slots")
    out: dict[str, tuple[int | None, list[int]]] = {}
    for job in jobs:
        if next_n is not None:
            slots = _upcoming(job, now, next_n + _SPARE)
            if not slots:
                raise UsageError(f"--next {next_n}: job {job.name!r} never fires again ({job.cron!r})")
            out[job.name] = (None, slots)
        else:
            assert until_text is not None
            end = parse_until(until_text, job, now=now)
            out[job.name] = (end, [s for s in _upcoming(job, now, SHOWN_SLOTS + _SPARE) if s < end])
    return out


_SPARE = 10  # slots that may elapse between computing the slots and recording the request


def skip(
    config: Config,
    scope: str,
    names: list[str] | None,
    *,
    next_n: int | None = None,
    until_text: str | None = None,
    actor: str | None = None,
    reason: str | None = None,
) -> list[SkipResult]:
    """Skip the named jobs' next ``next_n`` slots, or their slots before ``until_text``; return one result per job.

    "Next" counts from the moment the request is recorded: that is in the same write
    transaction every timer start's decision takes, so a slot is either decided before
    the request (and runs) or after it (and is one of the N). A new request replaces the
    job's earlier one. Bad input raises :class:`UsageError` (see :func:`skip_through`)
    before anything is recorded.
    """
    jobs = resolve_jobs(config, names)
    plan = skip_through(jobs, next_n, until_text, now_ms())
    results = []
    with open_registry(config, scope) as registry:
        with registry.transaction():
            before = registry.skip_windows()
            asked = now_ms()
            for job in jobs:
                end, candidates = plan[job.name]
                slots = [s for s in candidates if s > asked]
                if next_n is not None:
                    if len(slots) < next_n and len(candidates) == next_n + _SPARE:
                        slots = _upcoming(job, asked, next_n)  # more slots went by than spared: ask again
                    slots = slots[:next_n]
                    if not slots:
                        raise UsageError(f"--next {next_n}: job {job.name!r} never fires again ({job.cron!r})")
                    through = slots[-1]
                else:
                    assert end is not None
                    if end <= asked:
                        raise UsageError(f"--until {until_text!r}: the instant passed while the request was recorded")
                    through = end - 1
                window = registry.set_skip(job.name, through, actor or default_actor(), next_n, reason, asked_ms=asked)
                results.append(SkipResult(job.name, window, slots[:SHOWN_SLOTS], len(slots) > SHOWN_SLOTS, before.get(job.name)))
    return results


def cancel_skip(config: Config, scope: str, names: list[str] | None) -> list[tuple[str, SkipWindow | None]]:
    """Forget the named jobs' skip requests; return ``(job, the request cancelled or None)`` per job."""
    jobs = resolve_jobs(config, names)
    with open_registry(config, scope) as registry:
        return [(job.name, registry.cancel_skip(job.name)) for job in jobs]


def requests_of(config: Config, scope: str, name: str) -> tuple[PauseRecord | None, SkipWindow | None]:
    """Return the job's pause and skip request (None when it has none, or when they have ended)."""
    now = now_ms()
    with open_registry(config, scope, create=False) as registry:
        pause = registry.pauses().get(name)
        window = registry.skip_windows().get(name)
    if pause is not None and not pause.active(now):
        pause = None
    if window is not None and window.through_ms < now:
        window = None
    return pause, window


def slot_mark(at_ms: int, pause: PauseRecord | None, window: SkipWindow | None) -> str | None:
    """Return why the slot at ``at_ms`` will not run (None: it runs), given the job's pause and skip request."""
    if pause is not None and (pause.until_ms is None or at_ms < pause.until_ms):
        if pause.until_ms is None:
            return f"paused by {pause.paused_by} (until resumed)"
        return f"paused by {pause.paused_by} until {datetime.fromtimestamp(pause.until_ms / 1000, timezone.utc):%Y-%m-%d %H:%M:%S}Z"
    if window is not None and window.asked_ms < at_ms <= window.through_ms:
        how = f"--next {window.next_n}" if window.next_n else f"--until {datetime.fromtimestamp((window.through_ms + 1) / 1000, timezone.utc):%Y-%m-%d %H:%M:%S}Z"
        return f"skipped (memsched skip {how}, asked by {window.actor})"
    return None
