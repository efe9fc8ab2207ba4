"""Prometheus text-format metrics for node_exporter's textfile collector.

Written from the run registry (so the counters survive restarts) after every
run, after a failure the failure unit records, and after a pause or resume, to
a temporary file in the same directory and renamed into place: the collector
never reads a half-written file.

The job is the label ``job_name``, not ``job``: Prometheus sets ``job`` on every
scraped series (the scrape job, e.g. "node") and would rename ours to
``exported_job``. The shipped rules (prometheus/memsched.rules.yml) read these
metrics; docs/metrics.md lists every metric, its labels and the rules.
Thresholds the rules compare with are metrics too (``*_alert_*``), written from
the ``[alerts]`` settings, so an operator tunes them in memsched's config and
the rules file stays as shipped.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from memsched.config.load import Config, JobConfig
from memsched.registry import LOST_CODES, SKIP_CODES, Registry, now_ms

# Skip reasons the skipped-slots rule counts: the job's own policy. A paused slot has the pause rule,
# a manual skip was asked for by a person.
POLICY_SKIP_CODES = ("overlap", "coalesced")

_HELP = {
    "memsched_job_last_run_start_timestamp_seconds": ("gauge", "Start of the job's last run (Unix time)."),
    "memsched_job_last_run_end_timestamp_seconds": ("gauge", "End of the job's last run (Unix time)."),
    "memsched_job_last_success_timestamp_seconds": ("gauge", "Start of the job's last successful run (Unix time)."),
    "memsched_job_last_run_duration_seconds": ("gauge", "Duration of the job's last run, random delay excluded."),
    "memsched_job_last_run_success": ("gauge", "1 when the job's last run succeeded, else 0."),
    "memsched_job_last_run_result": ("gauge", "The result of the job's last run (success, failed, interrupted, running), as a label (value 1)."),
    "memsched_job_runs_total": ("counter", "Successful runs of the job."),
    "memsched_job_errors_total": ("counter", "Failed runs of the job."),
    "memsched_job_skips_total": ("counter", "Slots of the job memsched decided not to run (overlap, pause, a manual skip)."),
    "memsched_job_skipped_slots_total": ("counter", "Slots of the job memsched decided not to run, by reason code."),
    "memsched_job_lost_slots_total": ("counter", "Slots of the job that should have run and did not, by reason code."),
    "memsched_job_tracked_since_timestamp_seconds": (
        "gauge", "When memsched first knew the job: its first registry record or the install of its units (Unix time).",
    ),
    "memsched_job_expected_interval_seconds": ("gauge", "Longest time between two consecutive fire times of the job's calendar."),
    "memsched_job_late_after_seconds": (
        "gauge", "The job is late after this long without a successful run: expected interval + jitter + accuracy + longest run + [alerts] late_grace.",
    ),
    "memsched_job_paused": ("gauge", "1 when the job is paused, else 0."),
    "memsched_job_paused_since_timestamp_seconds": ("gauge", "When the job was paused (Unix time); absent when it is not paused."),
    "memsched_job_pause_alert_after_seconds": ("gauge", "[alerts] paused_after: a pause longer than this fires MemschedJobPausedTooLong."),
    "memsched_job_lost_slots_alert_threshold": ("gauge", "[alerts] lost_slots: more slots lost in 24 hours fire MemschedJobLostSlots."),
    "memsched_job_skipped_slots_alert_threshold": (
        "gauge", "[alerts] skipped_slots: more slots skipped by policy (overlap, coalesced) in 24 hours fire MemschedJobSkippedSlots.",
    ),
    "memsched_textfile_written_timestamp_seconds": ("gauge", "When memsched last wrote this file (Unix time)."),
    "memsched_textfile_stale_after_seconds": (
        "gauge", "The longest late_after of the jobs: the file not rewritten for longer fires MemschedMetricsStale.",
    ),
}


def _seconds(ms: int | float) -> str:
    return f"{ms / 1000:.3f}"


def render(registry: Registry, jobs: Sequence[JobConfig | str], config: Config | None = None, now: int | None = None) -> str:
    """Return the metrics of ``jobs`` in the Prometheus text exposition format.

    ``jobs`` are job configs, or bare names (then the calendar-derived metrics and
    thresholds are left out). ``config`` gives the ``[alerts]`` thresholds; ``now``
    (ms) is the write time, default the clock.
    """
    from memsched.late import grace_ms, late_after_ms

    now = now_ms() if now is None else now
    settings = (config.settings if config else {}).get("alerts", {})
    grace = grace_ms(config) if config else 0
    counts = registry.counts()
    by_reason = registry.slot_counts()
    last = registry.last_runs()
    successes = registry.last_successes()
    first = registry.first_known()
    pauses = {name: p for name, p in registry.pauses().items() if p.active(now)}  # a timed pause that ended is over
    samples: dict[str, list[str]] = {name: [] for name in _HELP}

    def add(name: str, labels: str, value: object) -> None:
        samples[name].append(f"{name}{{{labels}}} {value}")

    stale_after = 0
    for job in sorted(jobs, key=lambda j: j if isinstance(j, str) else j.name):
        name = job if isinstance(job, str) else job.name
        label = f'job_name="{name}"'
        c = counts.get(name)
        add("memsched_job_runs_total", label, c.runs if c else 0)
        add("memsched_job_errors_total", label, c.errors if c else 0)
        add("memsched_job_skips_total", label, c.skips if c else 0)
        slots = by_reason.get(name, {})
        # Every reason code, 0 until it happens: a series that appears only at its first slot would
        # never show an increase to the rules.
        for code in SKIP_CODES:
            add("memsched_job_skipped_slots_total", f'{label},reason="{code}"', slots.get(("skipped", code), 0))
        for code in LOST_CODES:
            add("memsched_job_lost_slots_total", f'{label},reason="{code}"', slots.get(("lost", code), 0))
        run = last.get(name)
        if run is not None:
            add("memsched_job_last_run_start_timestamp_seconds", label, _seconds(run.started_ms))
            if run.ended_ms:
                add("memsched_job_last_run_end_timestamp_seconds", label, _seconds(run.ended_ms))
                add("memsched_job_last_run_duration_seconds", label, _seconds(run.duration_ms or 0))
            add("memsched_job_last_run_success", label, 1 if run.result == "success" else 0)
            add("memsched_job_last_run_result", f'{label},result="{run.result}"', 1)
        if name in successes:
            add("memsched_job_last_success_timestamp_seconds", label, _seconds(successes[name]))
        if name in first:
            add("memsched_job_tracked_since_timestamp_seconds", label, _seconds(first[name]))
        pause = pauses.get(name)
        add("memsched_job_paused", label, 1 if pause else 0)
        if pause is not None:
            add("memsched_job_paused_since_timestamp_seconds", label, _seconds(pause.paused_ms))
        if isinstance(job, str):
            continue
        from memsched.late import interval_ms

        interval = interval_ms(job, now)
        after = late_after_ms(job, grace, now)
        if interval is not None and after is not None:
            add("memsched_job_expected_interval_seconds", label, _seconds(interval))
            add("memsched_job_late_after_seconds", label, _seconds(after))
            stale_after = max(stale_after, after)
        add("memsched_job_pause_alert_after_seconds", label, _seconds(int(settings.get("paused_after", 86_400_000))))
        add("memsched_job_lost_slots_alert_threshold", label, int(settings.get("lost_slots", 0)))
        add("memsched_job_skipped_slots_alert_threshold", label, int(settings.get("skipped_slots", 3)))
    samples["memsched_textfile_written_timestamp_seconds"].append(f"memsched_textfile_written_timestamp_seconds {_seconds(now)}")
    if stale_after:
        samples["memsched_textfile_stale_after_seconds"].append(f"memsched_textfile_stale_after_seconds {_seconds(stale_after)}")
    lines = []
    for metric, (kind, help_text) in _HELP.items():
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}", *samples[metric]]
    return "\n".join(lines) + "\n"


def write_textfile(path: Path | str, registry: Registry, jobs: Sequence[JobConfig | str], config: Config | None = None) -> None:
    """Write the metrics to ``path`` atomically (temporary file in the same directory, then rename).

    Writers are serialized by a lock on the directory, taken before the registry is read:
    two runs ending together each record their result first, so the one that writes
    last has read both, and an older snapshot never replaces a newer file.
    Raises OSError when the directory or file cannot be written (nothing is left behind).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    directory = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _lock(directory)
        text = render(registry, jobs, config)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    finally:
        os.close(directory)  # releases the lock


def _lock(fd: int, timeout_s: float = 10.0) -> None:
    """Take an exclusive flock on ``fd``, waiting up to ``timeout_s``; past that write unlocked.

    A writer stuck holding it (it never should: a write takes milliseconds) must not stop
    the metrics of every later run.
    """
    import fcntl
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.01)


def textfile_path(config: Config) -> str:
    """Return ``[metrics] textfile`` ("" when metrics are off)."""
    return str((config.settings or {}).get("metrics", {}).get("textfile") or "")


def update_textfile(config: Config, registry: Registry, warn: Callable[[str], None] | None = None) -> bool:
    """Rewrite the textfile of ``config``'s enabled jobs when ``[metrics] textfile`` is set.

    Returns whether a file was written. A failure to write never raises: it is
    passed to ``warn`` (the run, the pause it follows, has happened either way).
    """
    path = textfile_path(config)
    if not path:
        return False
    try:
        write_textfile(path, registry, [config.enabled_jobs[name] for name in sorted(config.enabled_jobs)], config)
    except OSError as exc:
        if warn is not None:
            warn(f"cannot write metrics to {path}: {exc.strerror or exc}")
        return False
    return True
