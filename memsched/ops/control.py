"""Control jobs through systemd: run now (pause and resume: memsched.ops.pause). Returns data, never prints."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable

from memsched.config.load import Config, JobConfig
from memsched.config.secrets import key_variable
from memsched.errors import EXIT_REFUSED, MemschedError, UsageError
from memsched.ops.actor import default_actor
from memsched.ops.status import resolve_jobs
from memsched.systemd.names import new_instance_name, service_name, timer_name
from memsched.registry import Registry, RunRecord, open_registry
from memsched.systemd.manager import SERVICE_IFACE, ManagerClient


class RunRefused(MemschedError):
    """A run was not started because the job's overlap policy forbids it now (exit 5)."""

    exit_code = EXIT_REFUSED


class RunNotStarted(MemschedError):
    """The run asked for did not happen: systemd did not start it, or the unit ended without recording it (exit 1)."""


__all__ = ["RunNotStarted", "RunOutcome", "RunRefused", "default_actor", "run_now"]


@dataclass
class RunOutcome:
    job: str
    unit: str
    waited: bool
    exit_code: int | None = None
    result: str | None = None
    run: RunRecord | None = None
    invocation_id: str | None = None
    request_id: int | None = None
    notes: list[str] = field(default_factory=list)


def _pass_key_variable(manager: ManagerClient, config: Config, scope: str, job: JobConfig, caller_env: Mapping[str, str]) -> str | None:
    """Give the unit the API key variable the caller has and the manager lacks; return a note, or None.

    The units inherit the manager's environment, not the caller's: a key exported in the shell
    would not reach `memsched run`'s rollup. In user scope the variable is imported into the
    user manager (as `systemctl --user import-environment VAR`); in system scope that would hand
    the key to every system service, so it is refused (:class:`UsageError`) with what to do instead.
    """
    variable = key_variable(config.settings) if job.kind == "rollup" else None
    value = caller_env.get(variable, "") if variable else ""
    if not variable or not value or manager.environment().get(variable) == value:
        return None
    if scope == "system":
        raise UsageError(
            f"${variable} is set here but not in the system manager's environment, so the job would not see it; "
            "put the key in a root-only file and name it in summarizer.api_key_file (install-units then loads it as "
            "the systemd credential memsched-api-key)"
        )
    manager.set_environment({variable: value})
    return f"passed ${variable} from your environment to the user manager (as `systemctl --user import-environment {variable}`)"


def run_now(
    config: Config,
    scope: str,
    name: str,
    *,
    wait: bool = False,
    timeout: float | None = None,
    actor: str | None = None,
    caller_env: Mapping[str, str] | None = None,
) -> RunOutcome:
    """Start a run of the job now through systemd (same unit, limits, journal and accounting as a scheduled run).

    A manual run of a skip or queue job is a run request in the registry first: the run
    that serves it claims it, so a caller learns what happened to *its* request.
    Under overlap = skip a start while a run is in progress is refused; under queue it
    runs right after the run in progress (the runner serves it); a concurrent job starts
    an instance of its own. With ``wait`` it follows the run to its end and reports that
    run's result and exit code.

    Returns the :class:`RunOutcome`. Raises :class:`RunRefused` (exit 5) when the policy
    refused the run, :class:`RunNotStarted` when it did not happen, :class:`MemschedError`
    when systemd cannot be asked or the wait timed out. With ``caller_env`` (the CLI's
    environment) an API key variable set there reaches the run (:func:`_pass_key_variable`;
    ``notes`` says so), or :class:`UsageError` says why it cannot (system scope).
    """
    (job,) = resolve_jobs(config, [name])
    who = actor or default_actor()
    with ManagerClient(scope) as manager:
        if manager.properties(timer_name(job.name))["LoadState"] != "loaded":
            raise MemschedError(f"job {job.name!r} has no units installed; run `memsched install-units` first")
        notes: list[str] = []
        if caller_env is not None and (note := _pass_key_variable(manager, config, scope, job, caller_env)):
            notes.append(note)
        request_id = None
        if job.overlap == "concurrent":
            unit = new_instance_name(job.name, "m")
        else:
            unit = service_name(job.name)
            if job.overlap == "skip" and _settled_state(manager, unit, lambda: _has_running_record(config, scope, job.name)) in ("active", "activating"):
                raise RunRefused(_refusal(job.name))
            with open_registry(config, scope) as registry:
                request_id = registry.add_request(job.name, who)
        try:
            job_path = manager.start(unit, "replace")
        except MemschedError as exc:  # its own exit code stays (permission denied is 4, no manager 3)
            _resolve(config, scope, request_id, "lost", f"systemd did not start {unit}: {exc.message}")
            raise
        outcome = RunOutcome(job.name, unit, wait, request_id=request_id, notes=notes)
        if not wait:
            return outcome
        limit = timeout if timeout is not None else job.timeout / 1000 + 120
        if not manager.wait_job_done(job_path, limit, what=unit):
            raise MemschedError(f"gave up waiting for {unit} after {limit:.0f}s")
        props = manager.properties(unit, "org.freedesktop.systemd1.Unit", SERVICE_IFACE)
        outcome.invocation_id = str(props.get("InvocationID") or "") or None
        outcome.exit_code = int(props.get("ExecMainStatus", 0))
        outcome.result = str(props.get("Result", ""))
    with open_registry(config, scope) as registry:
        outcome.run = _served_run(registry, job, outcome)
    run = outcome.run
    outcome.invocation_id = run.invocation_id or outcome.invocation_id
    if run.exit_code is not None:
        outcome.exit_code = run.exit_code
        # A command job that failed reports its own exit status, not the runner's generic 1.
        status = run.metadata.get("exit_status", "")
        if run.result == "failed" and status.isdigit() and 0 < int(status) < 256:
            outcome.exit_code = int(status)
    return outcome


def _settled_state(manager: ManagerClient, unit: str, run_recorded: Callable[[], bool], limit: float = 5.0) -> str:
    """Return the unit's ActiveState once no gate is deciding and no run is starting or winding down.

    While the overlap gate (ExecCondition=, SubState "condition") decides about a start,
    while a run that recorded its end is still exiting, or while one is starting and has
    not recorded itself yet, it is not yet known whether a run is in progress: a manual
    run asked at that moment waits (at most ``limit`` seconds) for the outcome instead of
    being refused at once.
    """
    deadline = time.monotonic() + limit
    while True:
        props = manager.properties(unit)
        state, sub = str(props.get("ActiveState", "")), str(props.get("SubState", ""))
        deciding = (state == "activating" and sub == "condition") or state == "deactivating"
        unrecorded = state in ("active", "activating") and not deciding and not run_recorded()
        if not (deciding or unrecorded) or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def _has_running_record(config: Config, scope: str, job: str) -> bool:
    with open_registry(config, scope) as registry:
        return bool(registry.running(job))


def _refusal(job: str) -> str:
    return f"job {job!r} is running now and its overlap policy is skip: not starting a second run (run it again once `memsched status {job}` shows it idle)"


def _resolve(config: Config, scope: str, request_id: int | None, state: str, reason: str) -> None:
    if request_id is not None:
        with open_registry(config, scope) as registry:
            registry.resolve_requests([request_id], state, reason)


def _served_run(registry: Registry, job: JobConfig, outcome: RunOutcome) -> RunRecord:
    """Return the run that served a waited request; raise RunRefused / RunNotStarted when none did.

    A request no run claimed by the time the unit's activation ended was not served: the
    gate refused it, a run the timer had started just before took the start, or the unit
    failed before the runner recorded anything. The request is resolved with the reason.
    """
    if outcome.request_id is None:  # a concurrent instance: its own unit, its own run
        # The instance unit is unloaded once inactive, so its InvocationID may be gone: the run records its instance.
        instance = outcome.unit.split("@", 1)[-1].rsplit(".", 1)[0]
        run = next((r for r in registry.history(job.name, limit=200, include_skips=False) if r.instance == instance), None)
        if run is None and outcome.invocation_id:
            run = registry.find_run(job.name, outcome.invocation_id)
        if run is None:
            raise RunNotStarted(f"{outcome.unit} ended ({outcome.result or 'unknown'}) without recording a run of {job.name!r}")
        return run
    request = registry.get_request(outcome.request_id)
    if request is not None and request.state == "claimed" and request.run_id is not None:
        run = registry.get_run(request.run_id)
        if run is not None:
            return run
    if request is not None and request.state in ("refused", "lost"):
        reason = request.reason or request.state
    elif outcome.result == "exec-condition":
        reason = "the overlap gate refused the start"
    elif outcome.result in ("success", ""):
        reason = "a run that started before this request was in progress and served no later request"
    else:
        reason = f"the unit failed before the run recorded itself ({outcome.result})"
    refused = outcome.result in ("exec-condition", "success", "") and job.overlap == "skip"
    registry.resolve_requests([outcome.request_id], "refused" if refused else "lost", reason)
    if refused or (request is not None and request.state == "refused"):
        raise RunRefused(f"the run of {job.name!r} was not started: {reason} (overlap = {job.overlap})")
    raise RunNotStarted(f"the run of {job.name!r} did not happen: {reason}")
