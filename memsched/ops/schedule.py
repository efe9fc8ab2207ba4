"""Schedule questions: translate, predict and check jobs' calendars. Returns data, never prints."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from memsched.config.load import Config, JobConfig, is_valid_timezone
from memsched.config.secrets import api_key_problem
from memsched.config.durations import humanize_ms
from memsched.cron.calendar import to_on_calendar
from memsched.systemd.dst import DstWarning, dst_warnings
from memsched.cron.parse import parse_cron
from memsched.cron.spacing import shortest_gap_in_day_s
from memsched.systemd.predict import Prediction, predict
from memsched.errors import UnknownJobError, UsageError
from memsched.systemd.analyze import calendar_next


def check_timezone(tz: str, option: str = "--tz") -> str:
    """Return ``tz`` when it is a valid IANA zone name; raise :class:`UsageError` naming ``option`` otherwise."""
    if not is_valid_timezone(tz):
        raise UsageError(f'{option} {tz!r}: not an IANA time zone name (expected e.g. "UTC" or "Europe/Berlin")')
    return tz


def calendar(expression: str, tz: str = "UTC") -> list[str]:
    """Return the ``OnCalendar=`` values for a cron expression in a zone.

    Raises :class:`memsched.errors.CronError` or :class:`UsageError`.
    """
    check_timezone(tz)
    return to_on_calendar(parse_cron(expression), tz)


def get_job(config: Config, name: str) -> JobConfig:
    """Return the named job; raise :class:`UnknownJobError` listing the known ones."""
    try:
        return config.jobs[name]
    except KeyError:
        raise UnknownJobError(name, sorted(config.jobs)) from None


def next_fire_times(expression: str, tz: str, count: int, after: datetime | None = None) -> Prediction:
    """Return the next ``count`` fire times after ``after`` (default now), systemd's checked against croniter.

    Raises :class:`memsched.errors.CronError` or :class:`UsageError`.
    """
    check_timezone(tz)
    if not 1 <= count <= 1000:
        raise UsageError(f"-n {count}: expected 1 to 1000")
    spec = parse_cron(expression)
    return predict(spec, tz, after or datetime.now(timezone.utc), count)


def job_environment(scope: str) -> tuple[dict[str, str], bool]:
    """Return the environment the jobs' units start with (the manager's), and whether the manager told it.

    When no manager answers, this process's environment stands in (False).
    """
    from memsched.errors import MemschedError
    from memsched.systemd.manager import ManagerClient

    try:
        with ManagerClient(scope) as manager:
            return manager.environment(), True
    except MemschedError:
        return dict(os.environ), False


SPACING_SAMPLE = 1000  # elapses systemd lists to find the shortest gap between days' slots


def delay_problem(job: JobConfig, upcoming: list[datetime]) -> str | None:
    """Return why the job's timer would lose slots, or None.

    systemd computes a timer's next elapse from when it last fired, so a start later than
    the next slot (the random delay, ``jitter``, plus ``accuracy``) silently loses the
    slots in between. ``upcoming`` are the calendar's next elapses, for gaps between days.
    """
    assert job.spec is not None
    gaps = [int((b - a).total_seconds() * 1000) for a, b in zip(upcoming, upcoming[1:])]
    in_day = shortest_gap_in_day_s(job.spec)
    if in_day is not None:
        gaps.append(in_day * 1000)
    if not gaps:
        return None
    gap = min(gaps)
    delay = int(job.jitter or 0) + int(job.accuracy or 0)
    if delay <= gap:
        return None
    key = "jitter" if job.jitter else "accuracy"
    return (
        f"jobs.{job.name}.{key}: jitter + accuracy ({humanize_ms(int(job.jitter or 0))} + {humanize_ms(int(job.accuracy or 0))}) "
        f"is longer than the {humanize_ms(gap)} between slots of {job.cron!r}: systemd counts the next slot from a late "
        f"start, so the slots in between would be lost; keep jitter + accuracy within {humanize_ms(gap)}"
    )


@dataclass
class JobCheck:
    """What ``validate`` found for one job."""

    name: str
    on_calendar: list[str]
    next_run: datetime | None
    warnings: list[DstWarning] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class ValidationReport:
    """The result of checking a whole config: per job, and ``problems`` of the config as a whole."""

    source: str | None
    jobs: list[JobCheck]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not any(j.problems for j in self.jobs)


def validate(
    config: Config,
    now: datetime | None = None,
    months: int = 12,
    scope: str | None = None,
    job_env: Mapping[str, str] | None = None,
) -> ValidationReport:
    """Check every enabled job: systemd accepts its calendar, it fires again, and where DST bites.

    Schema problems were already raised by loading; this finds what only systemd, the
    calendar and the jobs' surroundings can tell. With ``scope``, also that the units
    render (exactly what ``render`` and ``install-units`` would refuse is refused here)
    and that an API summarizer finds its key in ``job_env``, the environment the jobs run in.
    """
    now = now or datetime.now(timezone.utc)
    report = ValidationReport(str(config.source) if config.source else None, [])
    if scope is not None:
        from memsched.ops.units import render

        try:
            render(config, scope)
        except UsageError as exc:
            report.problems.append(exc.message)
        missing = api_key_problem(config.settings, os.environ if job_env is None else job_env, str(config.source) if config.source else None)
        if missing is not None:
            report.problems.append(f"{missing[0]}: {missing[1]}")
    checks = report.jobs
    for job in config.enabled_jobs.values():
        values = list(job.on_calendar)
        check = JobCheck(job.name, values, None)
        try:
            upcoming = calendar_next(values, now, SPACING_SAMPLE)
        except UsageError as exc:
            check.problems.append(f"jobs.{job.name}.cron: {exc}")
            checks.append(check)
            continue
        if not upcoming:
            check.problems.append(f"jobs.{job.name}.cron: {job.cron!r} never fires again after {now:%Y-%m-%d}")
        else:
            check.next_run = upcoming[0]
        assert job.spec is not None
        problem = delay_problem(job, upcoming)
        if problem:
            check.problems.append(problem)
        for warning in dst_warnings(job.spec, job.timezone, now, months):
            if warning.fatal:
                check.problems.append(f"jobs.{job.name}.cron: {warning.message}")
            else:
                check.warnings.append(warning)
        checks.append(check)
    return report
