"""Pause and resume jobs, for good or for a while. Returns data, never prints.

A pause is recorded in the registry first, so it survives reboots and reloads.

* ``pause JOB`` disables and stops the timer until ``resume``.
* ``pause JOB --for 2h`` / ``--until T`` (a timed pause) stops the timer but
  leaves it enabled, and starts a transient timer that runs ``memsched resume
  --due JOB`` at T: the same resume as by hand (a slot missed while paused is
  caught up when the job has ``catch_up``). Transient units die with the
  manager; the job's timer does not: after a reboot or manager restart before T
  it starts again with the manager and every start before T is recorded as a
  paused slot and not run (memsched.jobs.slotgate); the first start after T
  runs and ends the pause. After a reboot past T the timer's own catch-up
  (Persistent=) runs the slot missed while the machine was off.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from memsched.config.load import Config, JobConfig
from memsched.errors import MemschedError, UsageError
from memsched.ops.actor import default_actor
from memsched.ops.instants import check_future, parse_for, parse_until
from memsched.ops.status import resolve_jobs
from memsched.registry import now_ms, open_registry
from memsched.systemd.manager import TIMER_IFACE, ManagerClient
from memsched.systemd.names import instance_pattern, service_name, timer_name


@dataclass
class PauseResult:
    """One job paused: whether it already was, the runs stopped, and when a timed pause ends (None: until resumed)."""

    job: str
    was_paused: bool
    stopped_running: list[str] = field(default_factory=list)
    until_ms: int | None = None
    resume_unit: str | None = None


def pause_instants(
    jobs: list[JobConfig], for_text: str | None = None, until_text: str | None = None, until_ms: int | None = None
) -> dict[str, int | None]:
    """Return each job's end of pause (None for a pause until resumed) from at most one of the three ways to give it.

    Raises :class:`UsageError` naming the option for two of them, an unparsable value or an instant not in the future.
    """
    given = [name for name, value in (("--for", for_text), ("--until", until_text), ("resume_at_ms", until_ms)) if value is not None]
    if len(given) > 1:
        raise UsageError(f"give {given[0]} or {given[1]}, not both")
    now = now_ms()
    if for_text is not None:
        end = now + parse_for(for_text)
        return {job.name: end for job in jobs}
    if until_text is not None:
        return {job.name: parse_until(until_text, job, now=now) for job in jobs}
    if until_ms is not None:
        check_future(until_ms, "resume_at_ms", now)
    return {job.name: until_ms for job in jobs}


def pause(
    config: Config,
    scope: str,
    names: list[str] | None,
    *,
    actor: str | None = None,
    stop_running: bool = False,
    reason: str | None = None,
    for_text: str | None = None,
    until_text: str | None = None,
    until_ms: int | None = None,
) -> list[PauseResult]:
    """Pause jobs (until resumed, or until an instant: see the module). Returns one result per job.

    Bad input (an unknown job, both ``for_text`` and ``until_text``, an instant not in the
    future) raises :class:`UsageError` before anything changes; a timed pause of a job
    whose units are not installed raises :class:`MemschedError`, also before any change.
    """
    jobs = resolve_jobs(config, names)
    ends = pause_instants(jobs, for_text, until_text, until_ms)
    timed = any(end is not None for end in ends.values())
    results = []
    with open_registry(config, scope) as registry, ManagerClient(scope) as manager:
        if timed:
            for job in jobs:
                if manager.properties(timer_name(job.name)).get("LoadState") != "loaded":
                    raise MemschedError(f"job {job.name!r} has no units installed; run `memsched install-units` first")
        already = registry.pauses()
        for job in jobs:
            end = ends[job.name]
            timer = timer_name(job.name)
            registry.pause(job.name, actor or default_actor(), reason, end)
            result = PauseResult(job.name, job.name in already and already[job.name].active(now_ms()), until_ms=end)
            if end is None:
                from memsched.systemd.transient import cancel_resume

                cancel_resume(manager, job.name)
                manager.disable([timer])
                manager.stop(timer)
            else:
                from memsched.systemd.transient import arm_resume

                manager.stop(timer)
                if manager.unit_file_state(timer) != "enabled":
                    manager.enable([timer])  # back with the manager after a reboot; its starts before the end are skipped
                result.resume_unit = arm_resume(manager, scope, job.name, end, _resume_argv(config, scope, job.name))
            if stop_running:
                for unit in _running_units(manager, job):
                    manager.stop(unit)
                    result.stopped_running.append(unit)
            results.append(result)
        _update_metrics(config, registry)
    return results


def _update_metrics(config: Config, registry: object) -> None:
    """Rewrite the metrics textfile after a pause or resume, so the pause alert sees it (a failure only warns)."""
    from memsched.jobs.joblog import JobLog
    from memsched.metrics import update_textfile

    update_textfile(config, registry, JobLog("memsched").warning)  # type: ignore[arg-type]


def _resume_argv(config: Config, scope: str, job: str) -> list[str]:
    from memsched.systemd.render import memsched_command

    argv = [*memsched_command(), f"--{scope}"]
    if config.source is not None:
        argv += ["--config", str(config.source)]
    return [*argv, "resume", "--due", job]


def _running_units(manager: ManagerClient, job: JobConfig) -> list[str]:
    if job.overlap == "concurrent":
        return [u["name"] for u in manager.list_units([instance_pattern(job.name)]) if u["active_state"] in ("active", "activating")]
    state = manager.properties(service_name(job.name))["ActiveState"]
    return [service_name(job.name)] if state in ("active", "activating", "deactivating") else []


@dataclass
class ResumeResult:
    job: str
    was_paused: bool
    missed_slot: datetime | None
    catch_up: bool  # whether systemd starts a run for the missed slot now
    until_ms: int | None = None  # the end of the timed pause this resume ended (None: not a timed pause)
    cancelled_timer: bool = False  # a timed pause's own resume timer was cancelled


def resume(config: Config, scope: str, names: list[str] | None, *, skip_missed: bool = False, due: bool = False) -> list[ResumeResult]:
    """Resume jobs: forget the pause (and cancel a timed pause's resume timer), enable and start their timers.

    A slot missed while paused is caught up at once when the job has
    ``catch_up`` (Persistent=) unless ``skip_missed``; the result says which.
    With ``due`` only jobs whose timed pause has ended are resumed (what the
    resume timer runs; a pause replaced since is left alone); the others are
    left out of the result.
    """
    from memsched.systemd.analyze import calendar_next
    from memsched.systemd.transient import cancel_resume

    jobs = resolve_jobs(config, names)
    results = []
    with open_registry(config, scope) as registry, ManagerClient(scope) as manager:
        pauses = registry.pauses()
        now = now_ms()
        for job in jobs:
            record = pauses.get(job.name)
            if due and (record is None or record.until_ms is None or record.until_ms > now + 1000):
                continue
            timer = timer_name(job.name)
            props = manager.properties(timer, "org.freedesktop.systemd1.Unit", TIMER_IFACE)
            if props.get("LoadState") != "loaded":
                raise MemschedError(f"job {job.name!r} has no units installed; run `memsched install-units` first")
            was_paused = registry.resume(job.name)
            cancelled = False if due else cancel_resume(manager, job.name)
            missed = None
            if record is not None:
                since = datetime.fromtimestamp(record.paused_ms / 1000, timezone.utc)
                upcoming = calendar_next(list(job.on_calendar), since, 1)
                if upcoming and upcoming[0] <= datetime.now(timezone.utc):
                    missed = upcoming[0]
            catch_up = bool(missed) and job.catch_up and not skip_missed
            if skip_missed and job.catch_up:
                _touch_stamp(scope, timer)
            manager.enable([timer])
            manager.start(timer)
            results.append(ResumeResult(job.name, was_paused, missed, catch_up, record.until_ms if record else None, cancelled))
        _update_metrics(config, registry)
    return results


def _stamp_dirs(scope: str) -> list[Path]:
    if scope == "system":
        return [Path("/var/lib/systemd/timers")]
    data = os.environ.get("XDG_DATA_HOME") or str(Path(os.environ.get("HOME", str(Path.home()))) / ".local" / "share")
    state = os.environ.get("XDG_STATE_HOME") or str(Path(os.environ.get("HOME", str(Path.home()))) / ".local" / "state")
    return [Path(data) / "systemd" / "timers", Path(state) / "systemd" / "timers"]


def _touch_stamp(scope: str, timer: str) -> None:
    """Mark the timer as triggered now, so that starting it does not catch up a missed slot (Persistent=)."""
    for directory in _stamp_dirs(scope):
        stamp = directory / f"stamp-{timer}"
        if stamp.exists() or directory.is_dir():
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.touch()
            now = time.time()
            os.utime(stamp, (now, now))

