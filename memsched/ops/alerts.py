"""What memsched-failure@JOB.service does: record a failed run and run the configured alert command.

systemd (>= 251) tells an OnFailure= unit which run failed and how, in
MONITOR_UNIT, MONITOR_INVOCATION_ID, MONITOR_SERVICE_RESULT, MONITOR_EXIT_CODE
and MONITOR_EXIT_STATUS. A run killed by its timeout, the OOM killer or a signal
never recorded its own end; the failure unit closes its registry record.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

from memsched.config.load import Config, JobConfig
from memsched.errors import MemschedError
from memsched.jobs.joblog import JobLog
from memsched.ops.status import resolve_jobs
from memsched.registry import Registry, now_ms, open_registry


_REASONS = {
    "timeout": "stopped by systemd: the run took longer than its timeout (TimeoutStartSec=)",
    "oom-kill": "killed by the out-of-memory killer",
    "signal": "killed by a signal",
    "core-dump": "crashed (core dump)",
    "watchdog": "stopped by the watchdog",
}


@dataclass
class FailureReport:
    """What was recorded and sent for one failed run."""

    job: str
    invocation_id: str | None
    result: str
    exit_status: str
    reason: str
    log_tail: list[str] = field(default_factory=list)
    command_exit: int | None = None
    command_error: str | None = None


def _log_tail(config: Config, scope: str, job: str, invocation: str | None, lines: int) -> list[str]:
    if not invocation or lines <= 0:
        return []
    from memsched.ops.logs import journal_command

    argv = journal_command(config, scope, job, lines=lines, invocation=invocation)
    argv = [a if not a.startswith("--output=") else "--output=cat" for a in argv]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in out.splitlines() if line.strip()][-lines:]


def _write_metrics(config: Config, registry: Registry, job: str) -> None:
    """Rewrite the Prometheus textfile when ``[metrics] textfile`` is set (no run will, for a slot not run)."""
    from memsched.metrics import update_textfile

    update_textfile(config, registry, JobLog(job).warning)


def _record_start_limit(registry: Registry, job: JobConfig, scope: str) -> int:
    """Record the slots of the timer's latest trigger, which systemd refused, as lost, and let the timer go on.

    A service refused by its start limit stays "failed", and systemd 252's timer waits for
    it to change state before it arms again: every later slot would be lost without a
    trace. Resetting the failed state (which resets the start counter too) re-arms it.
    Returns how many slots were recorded (0 when the timer cannot be asked).
    """
    from memsched.ops.lost import record_refused_start
    from memsched.systemd.manager import TIMER_IFACE, ManagerClient
    from memsched.systemd.names import service_name, timer_name

    lost = 0
    try:
        with ManagerClient(scope) as manager:
            trigger_ms = int(manager.properties(timer_name(job.name), TIMER_IFACE).get("LastTriggerUSec", 0)) // 1000
            if trigger_ms:
                lost = record_refused_start(registry, job, trigger_ms)
            manager.reset_failed(service_name(job.name))
    except MemschedError as exc:
        JobLog(job.name).warning(f"cannot account for the refused start of {job.name}: {exc.message}")
    return lost


def notify_failure(config: Config, scope: str, name: str, env: dict[str, str] | None = None) -> FailureReport:
    """Record the failed run of job ``name`` and run ``[alerts] on_failure``; return what happened."""
    env = dict(os.environ if env is None else env)
    (job,) = resolve_jobs(config, [name])
    invocation = env.get("MONITOR_INVOCATION_ID") or None
    result = env.get("MONITOR_SERVICE_RESULT", "unknown")
    exit_status = env.get("MONITOR_EXIT_STATUS", "")
    reason = _REASONS.get(result, f"the unit failed ({result})")
    if exit_status and result not in _REASONS:
        reason += f", status {exit_status}"
    with open_registry(config, scope) as registry:
        if result == "start-limit-hit":
            # No run started, so no record names this invocation: the refused slots are recorded as lost.
            lost = _record_start_limit(registry, job, scope)
            reason = f"systemd refused to start it (start rate limit hit); {lost} slot{'s' if lost != 1 else ''} recorded as lost"
            run = None
            _write_metrics(config, registry, job.name)
        else:
            run = registry.find_run(job.name, invocation) if invocation else None
        if run is not None and (run.result == "running" or (run.result == "interrupted" and result in _REASONS)):
            # Killed before it could record its end, or stopped by systemd for a reason that is a failure
            # (its timeout, the OOM killer): record it as the failure it is.
            code = run.exit_code if run.exit_code is not None else (int(exit_status) if exit_status.isdigit() else 1)
            registry.finish_run(run.id, result="failed", exit_code=code, reason=reason, metadata=run.metadata, ended_ms=run.ended_ms or now_ms())
        elif run is not None and run.reason:
            reason = run.reason
        from memsched.metrics import update_textfile

        # A run killed by its timeout or a signal never wrote the metrics its end would have.
        update_textfile(config, registry, JobLog(job.name, invocation_id=invocation).warning)
    settings = (config.settings or {}).get("alerts", {})
    report = FailureReport(job.name, invocation, result, exit_status, reason)
    report.log_tail = _log_tail(config, scope, job.name, invocation, int(settings.get("log_lines", 20)))
    log = JobLog(job.name, invocation_id=invocation)
    log.error(f"job {job.name} failed: {reason}; see `memsched logs {job.name}{' --run ' + invocation if invocation else ''}`")
    command = list(settings.get("on_failure") or ())
    if command:
        child_env = dict(
            env,
            MEMSCHED_JOB=job.name,
            MEMSCHED_INVOCATION_ID=invocation or "",
            MEMSCHED_RESULT=result,
            MEMSCHED_EXIT_STATUS=exit_status,
            MEMSCHED_REASON=reason,
            MEMSCHED_LOG="\n".join(report.log_tail),
        )
        timeout = int(settings.get("timeout", 60_000)) / 1000
        try:
            proc = subprocess.run(command, env=child_env, capture_output=True, text=True, timeout=timeout)
            report.command_exit = proc.returncode
            if proc.returncode != 0:
                report.command_error = (proc.stderr or proc.stdout).strip()[-500:]
        except subprocess.TimeoutExpired:
            report.command_error = f"the alert command timed out after {timeout:.0f}s"
        except OSError as exc:
            report.command_error = f"cannot run the alert command {command[0]!r}: {exc.strerror}"
        if report.command_error:
            log.warning(f"alert command for {job.name} failed: {report.command_error}")
        else:
            log.info(f"alert command for {job.name} ran ({command[0]})")
    return report
