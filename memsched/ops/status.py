"""The scheduler's view of every job: systemd's state and next elapse, the registry's counts and last run.

Returns data, never prints; the CLI and the gRPC facade both render it, so they
cannot disagree. Imports stay light: no templating, no cron iteration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memsched.config.load import Config, JobConfig
from memsched.errors import ManagerUnavailable, PermissionDenied, UnknownJobError
from memsched.late import Lateness, grace_ms, lateness
from memsched.registry import JobCounts, PauseRecord, Registry, RunRecord, SkipWindow, now_ms, open_registry
from memsched.systemd.names import instance_pattern, service_name, timer_name
from memsched.systemd.manager import TIMER_IFACE, USEC_INFINITY, ManagerClient

STATES = ("idle", "running", "paused", "failed", "not installed", "unknown")
_ACTIVE = ("active", "activating", "deactivating", "reloading")


@dataclass
class JobStatus:
    """One job as the registry and systemd see it (times in ms since the epoch, 0 when unknown)."""

    job_name: str
    cron_expr: str
    timezone: str
    kind: str
    overlap: str
    state: str
    is_running: bool
    is_paused: bool
    installed: bool
    next_run_ms: int
    run_count: int
    error_count: int
    skip_count: int
    lost_count: int
    last_run: RunRecord | None
    last_skip: RunRecord | None = None
    pause: PauseRecord | None = None
    timer_active_state: str = ""
    timer_enabled: str = ""
    service_active_state: str = ""
    running_instances: list[str] = field(default_factory=list)
    lateness: Lateness | None = None  # memsched.late: late by the same definition as the MemschedJobLate rule
    skip_window: SkipWindow | None = None  # a `memsched skip` request not yet over

    @property
    def late(self) -> bool:
        return bool(self.lateness and self.lateness.late)

    @property
    def paused_until_ms(self) -> int | None:
        """When a timed pause ends by itself (None: not paused, or paused until resumed)."""
        return self.pause.until_ms if self.pause is not None else None

    @property
    def last_run_ms(self) -> int:
        return self.last_run.started_ms if self.last_run else 0

    @property
    def last_duration_ms(self) -> int:
        return int(self.last_run.duration_ms or 0) if self.last_run else 0

    @property
    def last_result(self) -> str | None:
        return self.last_run.result if self.last_run else None

    @property
    def last_error(self) -> str | None:
        if self.last_run and self.last_run.result in ("failed", "interrupted"):
            return self.last_run.reason
        return None

    @property
    def last_run_metadata(self) -> dict[str, str]:
        return dict(self.last_run.metadata) if self.last_run else {}


@dataclass
class SchedulerStatus:
    """All jobs; ``scheduler_running`` is whether the systemd manager answered."""

    scheduler_running: bool
    scope: str
    jobs: list[JobStatus]
    manager_version: str = ""
    registry_error: str | None = None  # why the registry's part (runs, counts, pauses) is missing, with what to do


def _usec_to_ms(value: Any) -> int:
    try:
        usec = int(value)
    except (TypeError, ValueError):
        return 0
    return 0 if usec in (0, USEC_INFINITY) else usec // 1000


def job_status(
    job: JobConfig,
    timer_props: dict[str, Any] | None,
    service_props: dict[str, Any] | None,
    instances: list[str],
    counts: JobCounts | None,
    last_run: RunRecord | None,
    last_skip: RunRecord | None,
    pause: PauseRecord | None,
    skip_window: SkipWindow | None = None,
) -> JobStatus:
    """Combine systemd's and the registry's knowledge of one job.

    A timed pause whose end has passed, and a skip request whose last slot has passed, count as over.
    """
    now = now_ms()
    if pause is not None and not pause.active(now):
        pause = None
    if skip_window is not None and skip_window.through_ms < now:
        skip_window = None
    timer_props = timer_props or {}
    service_props = service_props or {}
    installed = timer_props.get("LoadState") == "loaded"
    service_state = str(service_props.get("ActiveState", ""))
    running = service_state in ("activating", "active", "deactivating") or bool(instances)
    if job.overlap == "concurrent":
        running = bool(instances)
    if not installed:
        state = "not installed"
    elif running:
        state = "running"
    elif pause is not None:
        state = "paused"
    elif service_state == "failed":
        state = "failed"
    else:
        state = "idle"
    counts = counts or JobCounts()
    next_ms = _usec_to_ms(timer_props.get("NextElapseUSecRealtime")) if timer_props.get("ActiveState") in _ACTIVE else 0
    return JobStatus(
        job_name=job.name,
        cron_expr=job.cron,
        timezone=job.timezone,
        kind=job.kind,
        overlap=job.overlap,
        state=state,
        is_running=running,
        is_paused=pause is not None,
        installed=installed,
        next_run_ms=next_ms,
        run_count=counts.runs,
        error_count=counts.errors,
        skip_count=counts.skips,
        lost_count=counts.lost,
        last_run=last_run,
        last_skip=last_skip,
        pause=pause,
        timer_active_state=str(timer_props.get("ActiveState", "")),
        timer_enabled=str(timer_props.get("UnitFileState", "")),
        service_active_state=service_state,
        running_instances=instances,
        skip_window=skip_window,
    )


def _unknown_if(unknown: bool, status: JobStatus) -> JobStatus:
    if unknown:
        status.state = "unknown"
    return status


def resolve_jobs(config: Config, names: list[str] | None) -> list[JobConfig]:
    """Return the named jobs (all enabled jobs when ``names`` is empty); unknown names raise UnknownJobError."""
    if not names:
        return list(config.enabled_jobs.values())
    jobs = []
    for name in names:
        if name not in config.jobs:
            raise UnknownJobError(name, sorted(config.jobs))
        jobs.append(config.jobs[name])
    return jobs


def read_status(
    config: Config,
    scope: str,
    names: list[str] | None = None,
    registry: Registry | None = None,
    require_manager: bool = False,
    partial: bool = False,
) -> SchedulerStatus:
    """Return the status of the named jobs (default: every enabled job).

    When the manager is unreachable the registry's part is still returned, with
    ``scheduler_running`` False and state "unknown" (or, with ``require_manager``,
    :class:`ManagerUnavailable` is raised). With ``partial``, a registry we may not read
    (an unprivileged user's ``--system status``: /var/lib/memsched is 0750) leaves the
    registry's part empty and says why in ``registry_error``; without it
    :class:`PermissionDenied` is raised. Raises :class:`UnknownJobError` for unknown names.
    """
    jobs = resolve_jobs(config, names)
    counts: dict = {}
    last_runs: dict = {}
    last_skips: dict = {}
    pauses: dict = {}
    successes: dict = {}
    first_known: dict = {}
    windows: dict = {}
    registry_error = None
    own = registry is None
    try:
        registry = registry or open_registry(config, scope, create=False)
    except PermissionDenied as exc:
        if not partial:
            raise
        registry_error = unreadable_registry_help(exc.message, scope)
    if registry is not None:
        try:
            counts = registry.counts()
            last_runs = registry.last_runs()
            last_skips = registry.last_skips()
            pauses = registry.pauses()
            successes = registry.last_successes()
            first_known = registry.first_known()
            windows = registry.skip_windows()
        finally:
            if own:
                registry.close()
    props: dict[str, dict[str, Any]] = {}
    instances: dict[str, list[str]] = {}
    version = ""
    running = True
    try:
        with ManagerClient(scope) as manager:
            version = manager.version()
            # One call for every unit's state, then one per installed timer for its next elapse.
            names = [u for job in jobs for u in (timer_name(job.name), service_name(job.name))]
            for name, row in manager.units_by_names(names).items():
                props[name] = {"LoadState": row["load_state"], "ActiveState": row["active_state"]}
                if name.endswith(".timer") and row["load_state"] == "loaded" and row["active_state"] in _ACTIVE:
                    props[name]["NextElapseUSecRealtime"] = manager.get_property(row["path"], TIMER_IFACE, "NextElapseUSecRealtime")
            concurrent = [j.name for j in jobs if j.overlap == "concurrent"]
            if concurrent:
                for unit in manager.list_units([instance_pattern(name) for name in concurrent]):
                    if unit["active_state"] in _ACTIVE:
                        instances.setdefault(unit["name"].split("@")[0][len("memsched-") :], []).append(unit["name"])
    except ManagerUnavailable:
        if require_manager:
            raise
        running = False
    statuses = [
        _unknown_if(not running, job_status(
            job,
            props.get(timer_name(job.name)),
            props.get(service_name(job.name)),
            instances.get(job.name, []),
            counts.get(job.name),
            last_runs.get(job.name),
            last_skips.get(job.name),
            pauses.get(job.name),
            windows.get(job.name),
        ))
        for job in jobs
    ]
    now, grace = now_ms(), grace_ms(config)
    for job, status in zip(jobs, statuses):
        if registry_error:
            # Without the registry lateness is unknown (not "late"), and a pause cannot be told from
            # a stopped timer: say what systemd shows rather than "idle".
            timer_state = (props.get(timer_name(job.name)) or {}).get("ActiveState")
            if status.state == "idle" and timer_state not in _ACTIVE:
                status.state = "stopped"
            continue
        status.lateness = lateness(job, grace, now, successes.get(job.name), first_known.get(job.name), status.is_paused)
    return SchedulerStatus(scheduler_running=running, scope=scope, jobs=statuses, manager_version=version, registry_error=registry_error)


def unreadable_registry_help(message: str, scope: str) -> str:
    """Return what to tell a user who may not read the run registry: what is missing and what to do."""
    system = " --system" if scope == "system" else ""
    return (
        f"{message}: last runs, results, counts and pauses are not shown (states and next runs are systemd's).\n"
        f"  Run it as root (`sudo memsched{system} status`), or ask the gRPC facade, which answers anyone who may\n"
        "  connect to its socket (`memsched --endpoint unix:/run/memsched/grpc.sock status`; the socket's group is\n"
        "  `facade.group`)."
    )


def iso_ms(ms: int) -> str | None:
    """Return ms since the epoch as ISO 8601 UTC (None for 0)."""
    if not ms:
        return None
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds")


# job_status_dict keys whose values come from the registry
REGISTRY_KEYS = frozenset({
    "is_paused", "last_run", "last_run_ms", "last_duration_ms", "last_result", "last_error", "last_exit_code", "last_invocation_id",
    "last_run_metadata", "run_count", "error_count", "skip_count", "lost_count", "last_skip", "last_skip_result",
    "last_skip_code", "last_skip_reason", "paused_by", "paused_at", "paused_until", "paused_until_ms", "skip", "late",
    "expected_interval_ms", "late_after_ms", "late_at",
})


def job_status_dict(status: JobStatus, registry_known: bool = True) -> dict[str, Any]:
    """Return the status as a JSON-ready dict: every field of the original registry, times as ISO and ms.

    With ``registry_known`` False (the registry could not be read) the registry's fields are
    None: unknown, not zero.
    """
    entry = _job_status_dict(status)
    if not registry_known:
        entry.update({key: None for key in REGISTRY_KEYS if key in entry})
    return entry


def _job_status_dict(status: JobStatus) -> dict[str, Any]:
    last = status.last_run
    return {
        "job_name": status.job_name,
        "cron_expr": status.cron_expr,
        "timezone": status.timezone,
        "kind": status.kind,
        "overlap": status.overlap,
        "state": status.state,
        "is_running": status.is_running,
        "is_paused": status.is_paused,
        "installed": status.installed,
        "last_run": iso_ms(status.last_run_ms),
        "last_run_ms": status.last_run_ms,
        "last_duration_ms": status.last_duration_ms,
        "last_result": status.last_result,
        "last_error": status.last_error,
        "last_exit_code": last.exit_code if last else None,
        "last_invocation_id": last.invocation_id if last else None,
        "last_run_metadata": status.last_run_metadata,
        "next_run": iso_ms(status.next_run_ms),
        "next_run_ms": status.next_run_ms,
        "run_count": status.run_count,
        "error_count": status.error_count,
        "skip_count": status.skip_count,
        "lost_count": status.lost_count,
        "last_skip": iso_ms(status.last_skip.started_ms) if status.last_skip else None,
        "last_skip_result": status.last_skip.result if status.last_skip else None,
        "last_skip_code": status.last_skip.reason_code if status.last_skip else None,
        "last_skip_reason": status.last_skip.reason if status.last_skip else None,
        "paused_by": status.pause.paused_by if status.pause else None,
        "paused_at": iso_ms(status.pause.paused_ms) if status.pause else None,
        "paused_until": iso_ms(status.paused_until_ms or 0),
        "paused_until_ms": status.paused_until_ms,
        "skip": skip_window_dict(status.skip_window),
        "running_instances": status.running_instances,
        "late": status.late,
        "expected_interval_ms": status.lateness.interval_ms if status.lateness else None,
        "late_after_ms": status.lateness.late_after_ms if status.lateness else None,
        "late_at": iso_ms(status.lateness.deadline_ms or 0) if status.lateness else None,
    }


def skip_window_dict(window: SkipWindow | None) -> dict[str, Any] | None:
    """Return a skip request as JSON-ready data (None for none): what it covers and who asked."""
    if window is None:
        return None
    return {
        "next_n": window.next_n,
        "through": iso_ms(window.through_ms),
        "through_ms": window.through_ms,
        "asked_at": iso_ms(window.asked_ms),
        "asked_by": window.actor,
        "reason": window.reason,
    }
