"""When a job is late: one definition, used by `memsched status` and written into the metrics the rules read.

A job is **late** when it has had no successful run for longer than its
``late_after``:

    late_after = expected interval  (the longest gap of its calendar, memsched.cron.interval)
               + jitter             (RandomizedDelaySec=: a run may start that much after its slot)
               + accuracy           (AccuracySec=: systemd may coalesce the elapse that much later)
               + longest run        (a success is recorded when the run ends; rollups and
                                     compactions may extend their timeout up to twice)
               + [alerts] late_grace

counted from the start of its last successful run or, when it never succeeded,
from when memsched first knew it (its first record in the run registry, or
the installation of its timer). A paused job is never late (it has its own
alert), nor a job whose calendar has no next fire time.

The Prometheus rule MemschedJobLate computes the same thing from
``memsched_job_last_success_timestamp_seconds`` (or
``memsched_job_tracked_since_timestamp_seconds``) and
``memsched_job_late_after_seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from memsched.config.load import Config, JobConfig
from memsched.cron.interval import expected_interval_ms

DEFAULT_GRACE_MS = 300_000


@dataclass(frozen=True)
class Lateness:
    """A job's late threshold and whether it is late now (times in ms since the epoch)."""

    interval_ms: int | None  # the calendar's longest gap; None: the calendar has no next fire time
    late_after_ms: int | None
    since_ms: int | None  # last success start, else first known; None: nothing known
    late: bool

    @property
    def deadline_ms(self) -> int | None:
        """When the job becomes late if it does not succeed before (None when it never can)."""
        if self.late_after_ms is None or self.since_ms is None:
            return None
        return self.since_ms + self.late_after_ms


def grace_ms(config: Config) -> int:
    """Return ``[alerts] late_grace`` in ms."""
    return int((config.settings or {}).get("alerts", {}).get("late_grace", DEFAULT_GRACE_MS))


def longest_run_ms(job: JobConfig) -> int:
    """Return the longest a run of ``job`` may take: its timeout, twice it for jobs that may extend it."""
    return job.timeout * (2 if job.kind in ("rollup", "compaction", "verify") else 1)


def interval_ms(job: JobConfig, now_ms: int) -> int | None:
    """Return the expected interval of ``job`` around ``now_ms`` (None when its calendar runs out)."""
    around = datetime.fromtimestamp(now_ms / 1000, timezone.utc)
    return expected_interval_ms(job.spec or job.cron, job.timezone, around)


def late_after_ms(job: JobConfig, grace: int, now_ms: int) -> int | None:
    """Return how long ``job`` may go without a success before it is late (None: never late)."""
    interval = interval_ms(job, now_ms)
    if interval is None:
        return None
    return interval + job.jitter + job.accuracy + longest_run_ms(job) + grace


def lateness(job: JobConfig, grace: int, now_ms: int, last_success_ms: int | None, first_known_ms: int | None, paused: bool) -> Lateness:
    """Return the job's :class:`Lateness` at ``now_ms``."""
    interval = interval_ms(job, now_ms)
    after = None if interval is None else interval + job.jitter + job.accuracy + longest_run_ms(job) + grace
    since = last_success_ms or first_known_ms
    late = bool(after is not None and since is not None and not paused and now_ms - since > after)
    return Lateness(interval, after, since, late)
