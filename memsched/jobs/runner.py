"""`memsched exec`: the one-shot entry point the service units call.

A run: record its start in the registry (with the unit's invocation id and
what triggered it), publish progress with sd_notify ``STATUS=``, do the work,
record the end (duration from the recorded start, so a timer's random delay is
never counted), and exit with a documented code. SIGTERM asks the work to stop
at its next safe point; the checkpoint is kept and the run ends as
"interrupted".

Exit codes of `memsched exec`:

* 0  the run succeeded
* 1  the run failed (the job raised an error, or the command exited non-zero)
* 2  configuration or usage error (the job does not exist, the config is invalid)
* 75 interrupted by SIGTERM at a safe point (EX_TEMPFAIL; the units list it in SuccessExitStatus=)

The overlap gate (`memsched exec --gate JOB`, an ``ExecCondition=`` on
systemd < 257) exits 0 to let a run start, 1 to skip it, and 255 when it
cannot decide (systemd then marks the start failed rather than skipping it
silently).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from memsched.config.load import Config, JobConfig
from memsched.jobs.joblog import PRIORITY_ERR, PRIORITY_INFO, JobLog
from memsched.registry import Registry, now_ms, open_registry

EXIT_SUCCESS = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 75
GATE_RUN = 0
GATE_SKIP = 1
GATE_ERROR = 255
# Output of a command job is forwarded in pieces of at most this many bytes: below journald's
# LineMax= (48K by default) and small enough that one huge line is never held whole.
MAX_LINE_BYTES = 32 * 1024


@dataclass
class RunControl:
    """Cancellation and progress for the work of one run.

    Progress is published as ``STATUS=``. A run that is still making progress
    when it nears its timeout gets more time with ``EXTEND_TIMEOUT_USEC=``, a
    tenth of the timeout at a time and never past twice the configured timeout:
    a backlog after downtime is finished, a stuck run is still stopped.
    """

    notifier: object | None = None
    timeout_ms: int = 0
    started_monotonic: float = field(default_factory=time.monotonic)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    on_started: list[Callable[[], None]] = field(default_factory=list)  # called once, when the work has begun
    deadline_ms: float = 0.0
    extended_ms: int = 0

    def __post_init__(self) -> None:
        self.deadline_ms = float(self.timeout_ms)

    def should_stop(self) -> bool:
        return self.stop_requested.is_set()

    def give_full_timeout(self) -> None:
        """Ask systemd for a whole timeout from now (a queued run in the same activation gets its own budget)."""
        if self.notifier is not None and self.timeout_ms:
            self.notifier.notify(f"EXTEND_TIMEOUT_USEC={self.timeout_ms * 1000}")  # type: ignore[attr-defined]

    def started(self) -> None:
        """Run the ``on_started`` callbacks (once): the job's work is under way."""
        callbacks, self.on_started = self.on_started, []
        for callback in callbacks:
            callback()

    def request_stop(self) -> None:
        self.stop_requested.set()
        for callback in list(self.on_stop):
            callback()

    def status(self, text: str) -> None:
        if self.notifier is not None:
            self.notifier.notify(f"STATUS={text}")  # type: ignore[attr-defined]

    def progress(self, done: int, total: int, item: str = "") -> None:
        self.status(f"{done}/{total} {item}".strip())
        self._extend_if_needed()

    def _extend_if_needed(self) -> None:
        if self.notifier is None or not self.timeout_ms:
            return
        elapsed = (time.monotonic() - self.started_monotonic) * 1000
        step = max(self.timeout_ms // 10, 1000)
        if self.deadline_ms - elapsed > step or self.extended_ms + step > self.timeout_ms:
            return
        self.deadline_ms += step
        self.extended_ms += step
        self.notifier.notify(f"EXTEND_TIMEOUT_USEC={int(self.deadline_ms - elapsed) * 1000}")  # type: ignore[attr-defined]


@dataclass
class WorkResult:
    """What the work of a run produced."""

    ok: bool
    interrupted: bool = False
    reason: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def _notifier() -> object | None:
    if not os.environ.get("NOTIFY_SOCKET"):
        return None
    import sdnotify

    return sdnotify.SystemdNotifier()


def trigger_of_start(job: JobConfig, scope: str, started_ms: int) -> tuple[str, int | None]:
    """Return what started this run ("timer" or "manual") and the timer's trigger time in ms.

    systemd 252 passes TRIGGER_* variables only to some timer-started runs, so
    the timer's LastTriggerUSec is asked instead: a trigger within the last few
    seconds before this run started means the timer started it.
    """
    from memsched.systemd.manager import TIMER_IFACE, ManagerClient
    from memsched.systemd.names import timer_name

    try:
        with ManagerClient(scope) as manager:
            trigger_ms = int(manager.properties(timer_name(job.name), TIMER_IFACE).get("LastTriggerUSec", 0)) // 1000
    except Exception:
        return "unknown", None
    if trigger_ms and 0 <= started_ms - trigger_ms <= 5_000:
        return "timer", trigger_ms
    return "manual", None


def execute(config: Config, job: JobConfig, scope: str, instance: str | None = None) -> int:
    """Run the job, recording each run in the registry; return the process exit code.

    Usually one run. Under overlap = queue the activation goes on with one more run
    while something waits for it (a run request made during the run, or a timer slot
    whose start systemd merged into a manual run): see :mod:`memsched.jobs.overlap`.
    The exit code is the first run's that did not succeed, else 0. Raises
    MemschedError or sqlite3.Error when the registry cannot be used.
    """
    from memsched.jobs import overlap

    started = now_ms()
    deferred = False
    if instance is not None:
        trigger, trigger_ms = ("timer" if instance.startswith("t-") else "manual"), None
    else:
        trigger, trigger_ms = "unknown", None
        deferred = True  # asked of the manager only when a decision needs it, else once the work has started
    notifier = _notifier()
    current = [RunControl(notifier=notifier, timeout_ms=job.timeout)]
    signal.signal(signal.SIGTERM, lambda *_: current[0].request_stop())
    signal.signal(signal.SIGINT, lambda *_: current[0].request_stop())
    with open_registry(config, scope) as registry:
        if deferred and _may_be_requested(registry, job):  # a pause or skip: this start's slot decides
            trigger, trigger_ms = trigger_of_start(job, scope, started)
            deferred = False
        if trigger == "timer" and instance is None and not overlap.manual_request_waits(registry, job, started):
            if _skip_requested(registry, job, trigger_ms):
                return EXIT_SUCCESS  # a paused or skipped slot: recorded as skipped, not a run
        registry.close_dead_runs(job.name)  # every policy: a killed concurrent instance is closed too
        start = _Start(trigger, trigger_ms, deferred)
        code = _one_run(config, job, scope, registry, current[0], start, instance, started)
        trigger, trigger_ms = start.trigger, start.trigger_ms
        if job.overlap != "queue" or instance is not None:
            return code
        served = trigger_ms if trigger == "timer" and trigger_ms else started
        while not current[0].should_stop():
            queued = overlap.next_queued(registry, job, scope, served)
            if queued is None:
                break
            trigger, trigger_ms = queued
            served = max(served, trigger_ms or 0)
            current[0] = RunControl(notifier=notifier, timeout_ms=job.timeout)
            current[0].give_full_timeout()
            next_code = _one_run(config, job, scope, registry, current[0], _Start(trigger, trigger_ms), None, now_ms())
            code = code if code != EXIT_SUCCESS else next_code
        if current[0].should_stop():
            waiting = [r.id for r in registry.pending_requests(job.name)]
            registry.resolve_requests(waiting, "lost", "the job was stopped before the run queued behind the previous one")
    return code


class _Start:
    """What started a run: ``trigger`` ("timer", "manual", "unknown") and the timer's trigger time.

    ``deferred``: not asked of the manager yet; :meth:`resolve` asks once the work has
    started, so the D-Bus round trip is not between the slot and the job's first instruction.
    """

    __slots__ = ("trigger", "trigger_ms", "deferred")

    def __init__(self, trigger: str, trigger_ms: int | None, deferred: bool = False):
        self.trigger, self.trigger_ms, self.deferred = trigger, trigger_ms, deferred

    def resolve(self, job: JobConfig, scope: str, started: int) -> None:
        if self.deferred:
            self.trigger, self.trigger_ms = trigger_of_start(job, scope, started)
            self.deferred = False


def _one_run(
    config: Config, job: JobConfig, scope: str, registry: Registry, control: RunControl,
    start: _Start, instance: str | None, started: int,
) -> int:
    """Record one run's start, claim the run requests it serves, do the work, record the end; return its exit code.

    A deferred trigger (``start``) is resolved and recorded right after the work started.
    """
    run_id = registry.start_run(
        job.name,
        trigger=start.trigger,
        invocation_id=os.environ.get("INVOCATION_ID"),
        instance=instance,
        slot_ms=start.trigger_ms,
        started_ms=started,
    )
    actor: list[str | None] = []
    if instance is None:
        claimed = registry.claim_requests(job.name, run_id, started)
        if claimed:  # someone asked for this start; a timer trigger just before it may be a start the gate refused
            request = registry.get_request(claimed[0])
            actor.append(request.actor if request else None)
            if not start.deferred:
                registry.set_trigger(run_id, "manual", start.trigger_ms, actor=actor[0])
            start.trigger = "manual"
    log = JobLog(job.name, run_id)

    def announce() -> None:
        if start.deferred:
            start.resolve(job, scope, started)
            if actor:
                start.trigger = "manual"
            registry.set_trigger(run_id, start.trigger, start.trigger_ms, actor=actor[0] if actor else None)
        log.info(f"run {run_id} of {job.name} started ({start.trigger}{', instance ' + instance if instance else ''})")
        control.status(f"running {job.kind} job {job.name}")

    control.on_started.append(announce)
    try:
        result = _work(config, job, scope, control, log)
    except Exception as exc:  # the job's own failure: record it, never a bare traceback
        result = WorkResult(ok=False, reason=f"{type(exc).__name__}: {exc}")
    control.started()  # the work failed before it could say it started
    trigger, trigger_ms = start.trigger, start.trigger_ms
    if result.interrupted:
        outcome, code = "interrupted", EXIT_INTERRUPTED
    elif result.ok:
        outcome, code = "success", EXIT_SUCCESS
    else:
        outcome, code = "failed", EXIT_FAILED
    ended = now_ms()
    registry.finish_run(run_id, result=outcome, exit_code=code, reason=result.reason, metadata=result.metadata, ended_ms=ended)
    if job.overlap == "skip":
        from memsched.jobs.overlap import record_overlapped_slots

        # from the timer's trigger: a slot that elapsed while the start was still on its way is overlapped too
        record_overlapped_slots(registry, job, (trigger_ms if trigger == "timer" else None) or started, ended, log, scope)
    _write_metrics(config, registry, log)
    message = f"run {run_id} of {job.name} {outcome} after {(ended - started) / 1000:.3f}s"
    if result.reason:
        message += f": {result.reason}"
    log.line(message, PRIORITY_INFO if result.ok or result.interrupted else PRIORITY_ERR)
    control.status(f"{outcome}")
    return code


def _may_be_requested(registry: Registry, job: JobConfig) -> bool:
    """Whether a timed pause or `memsched skip` may cover this job's starts (see memsched.jobs.slotgate)."""
    from memsched.jobs.slotgate import may_be_requested

    return may_be_requested(registry, job)


def _skip_requested(registry: Registry, job: JobConfig, trigger_ms: int | None) -> bool:
    """Whether a timed pause or `memsched skip` covers this timer start's slot (see memsched.jobs.slotgate)."""
    from memsched.jobs.slotgate import skip_requested

    return skip_requested(registry, job, trigger_ms, JobLog(job.name))


def _write_metrics(config: Config, registry: Registry, log: JobLog) -> None:
    """Rewrite the Prometheus textfile when ``[metrics] textfile`` is set; a failure only warns."""
    if not (config.settings or {}).get("metrics", {}).get("textfile"):
        return
    from memsched.metrics import update_textfile

    update_textfile(config, registry, log.warning)


def _work(config: Config, job: JobConfig, scope: str, control: RunControl, log: JobLog) -> WorkResult:
    if job.kind == "command":
        return _run_command(job, control, log)  # says it started once the command runs
    control.started()
    if job.kind == "rollup":
        return _run_rollup(config, job, scope, control)
    if job.kind == "compaction":
        return _run_compaction(config, job, scope, control)
    if job.kind == "verify":
        return _run_verify(config, job, scope, control)
    return WorkResult(ok=False, reason=f"unknown job kind {job.kind!r}")


def _run_command(job: JobConfig, control: RunControl, log: JobLog) -> WorkResult:
    assert job.command
    try:
        child = subprocess.Popen(
            list(job.command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=False,
        )
    except OSError as exc:
        return WorkResult(ok=False, reason=f"cannot start {job.command[0]!r}: {exc.strerror}")

    def forward_stop() -> None:
        try:
            child.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass

    control.on_stop.append(forward_stop)
    if control.should_stop():
        forward_stop()
    try:
        control.started()  # before the pumps: the "started" line comes before the command's output
    except Exception:
        forward_stop()
        child.wait()
        raise
    pumps = [
        threading.Thread(target=_pump, args=(child.stdout, log, PRIORITY_INFO), daemon=True),
        threading.Thread(target=_pump, args=(child.stderr, log, PRIORITY_ERR), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    while True:
        try:
            code = child.wait()
            break
        except InterruptedError:
            continue
    for pump in pumps:
        pump.join(timeout=5)
    metadata = {"exit_status": str(code), "pid": str(child.pid)}
    if control.should_stop():
        return WorkResult(ok=False, interrupted=True, reason="stopped by SIGTERM", metadata=metadata)
    if code == 0:
        return WorkResult(ok=True, metadata=metadata)
    if code < 0:
        return WorkResult(ok=False, reason=f"command killed by signal {signal.Signals(-code).name}", metadata=metadata)
    return WorkResult(ok=False, reason=f"command exited with status {code}", metadata=metadata)


def _pump(stream: object, log: JobLog, priority: int) -> None:
    """Forward a command's output line by line; a line longer than MAX_LINE_BYTES goes in pieces.

    The read is bounded so that a job printing one huge line never has it held
    whole in memory; an incremental decoder keeps a character cut at a piece's
    end for the next piece. Returns at end of stream.
    """
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    cut = False  # the previous piece ended mid-line
    while True:
        raw = stream.readline(MAX_LINE_BYTES)  # type: ignore[attr-defined]
        if not raw:
            break
        text = decoder.decode(raw)
        ends_line = raw.endswith(b"\n")
        if ends_line and cut and raw == b"\n":
            cut = False
            continue  # the end of a line already forwarded in pieces, not an empty line
        cut = not ends_line
        log.line(text[:-1] if ends_line else text, priority)
    rest = decoder.decode(b"", final=True)
    if rest:
        log.line(rest, priority)


def _run_rollup(config: Config, job: JobConfig, scope: str, control: RunControl) -> WorkResult:
    from memsched.jobs.rollup import run_rollup
    from memsched.store import open_configured_store
    from memsched.summarize import make_summarizer

    with open_configured_store(config, scope) as store:
        result = run_rollup(
            store,
            job.level,
            now_ms=now_ms(),
            min_age_ms=int(job.min_age or 0),
            summarizer=make_summarizer(config, should_stop=control.should_stop),
            progress=control.progress,
            should_stop=control.should_stop,
        )
    interrupted = bool(getattr(result, "interrupted", False))
    return WorkResult(ok=not interrupted, interrupted=interrupted, reason="stopped by SIGTERM at a safe point" if interrupted else None, metadata=result.as_metadata())


def _run_compaction(config: Config, job: JobConfig, scope: str, control: RunControl) -> WorkResult:
    from memsched.jobs.compaction import run_compaction
    from memsched.store import open_configured_store

    with open_configured_store(config, scope) as store:
        result = run_compaction(store, progress=control.progress, should_stop=control.should_stop)
    interrupted = bool(getattr(result, "interrupted", False))
    return WorkResult(ok=not interrupted, interrupted=interrupted, reason="stopped by SIGTERM at a safe point" if interrupted else None, metadata=result.as_metadata())


def _run_verify(config: Config, job: JobConfig, scope: str, control: RunControl) -> WorkResult:
    from memsched.jobs.verify import run_verification
    from memsched.store import open_configured_store

    with open_configured_store(config, scope) as store:
        result = run_verification(store, progress=control.progress, should_stop=control.should_stop)
    interrupted = result.interrupted
    reason = "stopped by SIGTERM at a safe point; the next run resumes the pass" if interrupted else None
    return WorkResult(ok=not interrupted, interrupted=interrupted, reason=reason, metadata=result.as_metadata())


def gate(config: Config, job: JobConfig, scope: str) -> int:
    """Decide whether a start may run under overlap = skip (systemd < 257). Returns GATE_RUN or GATE_SKIP.

    systemd 252 computes a timer's next elapse from its last trigger, so when a slot
    elapsed during a long run the timer fires again right after the run ends. That run
    recorded the slot as skipped and told the registry to expect this re-fire; the gate
    refuses exactly that one start. Every other start runs: a manual run through memsched
    (it carries a run request), a later slot, a `systemctl start`. The decision reads
    only the registry (no D-Bus call). Raises MemschedError or sqlite3.Error when the
    registry cannot be used (`memsched exec --gate` then exits 255).
    """
    from memsched.jobs.overlap import gate_refuses

    with open_registry(config, scope) as registry:
        return GATE_SKIP if gate_refuses(registry, job) else GATE_RUN


def spawn(config: Config, job: JobConfig, scope: str) -> int:
    """Start one instance of a concurrent job's template unit and return at once (overlap = concurrent)."""
    from memsched.systemd.manager import ManagerClient
    from memsched.systemd.names import new_instance_name

    with open_registry(config, scope) as registry:
        if _may_be_requested(registry, job):  # asked first: the timer is read only when a skip or timed pause may exist
            trigger, trigger_ms = trigger_of_start(job, scope, now_ms())
            if trigger == "timer" and _skip_requested(registry, job, trigger_ms):
                return EXIT_SUCCESS
    unit = new_instance_name(job.name, "t")
    with ManagerClient(scope) as manager:
        manager.start(unit, "fail")
    JobLog(job.name).info(f"started {unit}")
    return EXIT_SUCCESS
