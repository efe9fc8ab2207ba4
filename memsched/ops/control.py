"""Control jobs through systemd: pause, resume, run now. Returns data, never prints."""

from __future__ import annotations

import getpass
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from memsched.config.load import Config, JobConfig
from memsched.errors import MemschedError
from memsched.ops.status import resolve_jobs
from memsched.systemd.names import instance_pattern, new_instance_name, service_name, timer_name
from memsched.registry import RunRecord, open_registry
from memsched.systemd.manager import SERVICE_IFACE, TIMER_IFACE, ManagerClient


class RunRefused(MemschedError):
    """A run was not started because the job's overlap policy forbids it now."""


def default_actor() -> str:
    """Who is acting, for the registry: user@host (uid)."""
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} (uid {os.getuid()})"


@dataclass
class PauseResult:
    job: str
    was_paused: bool
    stopped_running: list[str] = field(default_factory=list)


def pause(config: Config, scope: str, names: list[str] | None, *, actor: str | None = None, stop_running: bool = False, reason: str | None = None) -> list[PauseResult]:
    """Pause jobs: remember it in the registry, then disable and stop their timers (survives reboots and reloads).

    With ``stop_running`` a run in progress is stopped too (it ends at a safe point).
    """
    jobs = resolve_jobs(config, names)
    results = []
    with open_registry(config, scope) as registry, ManagerClient(scope) as manager:
        already = registry.pauses()
        for job in jobs:
            registry.pause(job.name, actor or default_actor(), reason)
            manager.disable([timer_name(job.name)])
            manager.stop(timer_name(job.name))
            result = PauseResult(job.name, job.name in already)
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


def resume(config: Config, scope: str, names: list[str] | None, *, skip_missed: bool = False) -> list[ResumeResult]:
    """Resume jobs: forget the pause, enable and start their timers.

    A slot missed while paused is caught up at once when the job has
    ``catch_up`` (Persistent=) unless ``skip_missed``; the result says which.
    """
    from memsched.systemd.analyze import calendar_next

    jobs = resolve_jobs(config, names)
    results = []
    with open_registry(config, scope) as registry, ManagerClient(scope) as manager:
        pauses = registry.pauses()
        for job in jobs:
            timer = timer_name(job.name)
            props = manager.properties(timer, "org.freedesktop.systemd1.Unit", TIMER_IFACE)
            if props.get("LoadState") != "loaded":
                raise MemschedError(f"job {job.name!r} has no units installed; run `memsched install-units` first")
            was_paused = registry.resume(job.name)
            missed = None
            record = pauses.get(job.name)
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
            results.append(ResumeResult(job.name, was_paused, missed, catch_up))
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


@dataclass
class RunOutcome:
    job: str
    unit: str
    waited: bool
    exit_code: int | None = None
    result: str | None = None
    run: RunRecord | None = None
    invocation_id: str | None = None


def run_now(config: Config, scope: str, name: str, *, wait: bool = False, timeout: float | None = None) -> RunOutcome:
    """Start a run of the job now through systemd (same unit, limits, journal and accounting as a scheduled run).

    Refuses (:class:`RunRefused`) a second start while one runs under overlap = skip.
    With ``wait`` it follows the run to its end and reports the job's exit code.
    """
    (job,) = resolve_jobs(config, [name])
    with ManagerClient(scope) as manager:
        if manager.properties(timer_name(job.name))["LoadState"] != "loaded":
            raise MemschedError(f"job {job.name!r} has no units installed; run `memsched install-units` first")
        if job.overlap == "concurrent":
            unit = new_instance_name(job.name, "m")
        else:
            unit = service_name(job.name)
            state = manager.properties(unit)["ActiveState"]
            if state in ("active", "activating") and job.overlap == "skip":
                raise RunRefused(f"job {job.name!r} is running now and its overlap policy is skip: not starting a second run")
        job_path = manager.start(unit, "replace")
        outcome = RunOutcome(job.name, unit, wait)
        if not wait:
            return outcome
        limit = timeout if timeout is not None else job.timeout / 1000 + 120
        if not manager.wait_job_done(job_path, limit):
            raise MemschedError(f"gave up waiting for {unit} after {limit:.0f}s")
        props = manager.properties(unit, "org.freedesktop.systemd1.Unit", SERVICE_IFACE)
        outcome.invocation_id = str(props.get("InvocationID") or "") or None
        outcome.exit_code = int(props.get("ExecMainStatus", 0))
        outcome.result = str(props.get("Result", ""))
    with open_registry(config, scope) as registry:
        if outcome.invocation_id:
            outcome.run = registry.find_run(job.name, outcome.invocation_id)
    run = outcome.run
    if run is not None and run.exit_code is not None:
        outcome.exit_code = run.exit_code
        # A command job that failed reports its own exit status, not the runner's generic 1.
        status = run.metadata.get("exit_status", "")
        if run.result == "failed" and status.isdigit() and 0 < int(status) < 256:
            outcome.exit_code = int(status)
    return outcome
