"""Control jobs through systemd: run now (pause and resume: memsched.ops.pause). Returns data, never prints."""

from __future__ import annotations

from dataclasses import dataclass

from memsched.config.load import Config
from memsched.errors import MemschedError
from memsched.ops.actor import default_actor
from memsched.ops.status import resolve_jobs
from memsched.systemd.names import new_instance_name, service_name, timer_name
from memsched.registry import RunRecord, open_registry
from memsched.systemd.manager import SERVICE_IFACE, ManagerClient


class RunRefused(MemschedError):
    """A run was not started because the job's overlap policy forbids it now."""


__all__ = ["RunOutcome", "RunRefused", "default_actor", "run_now"]


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
