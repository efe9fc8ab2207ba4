"""Commands about calendars: calendar, next, validate."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import click

from memsched.cli.reference import complete_jobs

from memsched.cli.common import app, common_options, echo_json, echo_table, handle_errors, json_option, usage_fail
from memsched.errors import EXIT_FAILURE, EXIT_USAGE, UsageError
from memsched.ops import schedule


@click.command("calendar")
@click.argument("expression")
@click.option("--tz", "tz", default="UTC", show_default=True, help="IANA time zone of the expression.")
@json_option
@handle_errors
def calendar_cmd(expression: str, tz: str, as_json: bool) -> None:
    """Translate a cron EXPRESSION into systemd OnCalendar= values, one per line."""
    values = schedule.calendar(expression, tz)
    if as_json:
        echo_json({"expr": expression, "timezone": tz, "on_calendar": values})
    else:
        for value in values:
            click.echo(value)


def _parse_after(text: str | None, tz: str) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--after {text!r}: expected an ISO 8601 time such as 2027-01-01T00:00 or 2027-01-01T00:00+01:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(tz))
    return when.astimezone(timezone.utc)


def _not_run_marks(job: str, times: list[datetime]) -> dict[datetime, str]:
    """Why each of the job's instants will not run (a pause, `memsched skip`); instants that run are left out."""
    from memsched.ops.skip import requests_of, slot_mark

    ctx = app()
    pause, window = requests_of(ctx.config(), ctx.scope, job)
    marks = {t: slot_mark(int(t.timestamp() * 1000), pause, window) for t in times}
    return {t: m for t, m in marks.items() if m}


@click.command("next")
@click.argument("job", required=False, shell_complete=complete_jobs)
@click.option("--cron", "cron", metavar="EXPR", help="A cron expression instead of a configured JOB.")
@click.option("--tz", "tz", default=None, help="Time zone for --cron (default UTC).")
@click.option("-n", "count", type=int, default=5, show_default=True, help="How many fire times.")
@click.option("--after", "after", metavar="ISO", help="Start after this time (naive = in the job's zone; default now).")
@json_option
@common_options
@handle_errors
def next_cmd(job: str | None, cron: str | None, tz: str | None, count: int, after: str | None, as_json: bool) -> None:
    """Show the next fire times of JOB (or --cron EXPR) as systemd computes them.

    Each time is checked against croniter. At daylight-saving transitions the two
    differ by design and the row says why; any other difference is a bug: it is
    printed and the exit status is 1. For a JOB, the NOTE column marks the
    instants that will not run (paused, or skipped with `memsched skip`). A wall
    time a gap removes has a row of its own (marked -, not a run); a repeated wall
    time listed because --after falls inside a fold is marked, naming when it first
    happened.
    """
    if (job is None) == (cron is None):
        usage_fail("give either a JOB or --cron EXPR")
    if job is not None:
        if tz is not None:
            usage_fail("--tz only applies with --cron; a job has its own timezone")
        job_cfg = schedule.get_job(app().config(), job)
        expression, zone = job_cfg.cron, job_cfg.timezone
    else:
        expression, zone = cron, schedule.check_timezone(tz or "UTC")
    prediction = schedule.next_fire_times(expression, zone, count, _parse_after(after, zone))
    marks = _not_run_marks(job, [t.at for t in prediction.times]) if job is not None else {}
    if as_json:
        echo_json(
            {
                "job": job,
                "expr": expression,
                "timezone": zone,
                "on_calendar": prediction.on_calendar,
                "checked_against_croniter": prediction.checked,
                "times": [
                    {
                        "at": t.at.isoformat(),
                        "at_ms": int(t.at.timestamp() * 1000),
                        "local": t.at.astimezone(ZoneInfo(zone)).isoformat(),
                        "systemd": t.systemd,
                        "croniter": t.croniter,
                        "dst": t.dst,
                        "note": t.note,
                        "not_run": marks.get(t.at) if t.systemd else None,
                        "wall": t.wall,
                    }
                    for t in prediction.times
                ],
                "disagreements": len(prediction.disagreements),
            }
        )
    else:
        rows = []
        index = 0
        for t in prediction.times:
            local = t.at.astimezone(ZoneInfo(zone))
            if t.systemd:
                index += 1
            marker = str(index) if t.systemd else "-"
            note = ""
            if t.dst:
                note = f"DST {t.dst}: {t.note}"
            elif t.note:
                note = f"DISAGREEMENT: {t.note}"
            if t.systemd and marks.get(t.at):
                note = f"{note}; NOT RUN: {marks[t.at]}" if note else f"NOT RUN: {marks[t.at]}"
            shown = f"{local:%a} {t.wall.replace('T', ' ')} (none)" if t.wall else f"{local:%a %Y-%m-%d %H:%M:%S %Z}"
            rows.append([marker, f"{t.at:%Y-%m-%d %H:%M:%S}Z", shown, note])
        echo_table(["#", "UTC", f"LOCAL ({zone})", "NOTE"], rows)
        if not prediction.checked:
            click.echo("(not checked against croniter: it cannot evaluate L-n or LW; times are systemd's)")
    if prediction.disagreements:
        click.echo(
            f"memsched: systemd and croniter disagree on {len(prediction.disagreements)} instant(s) "
            f"for {expression!r}: this is a translation bug, please report it",
            err=True,
        )
        sys.exit(EXIT_FAILURE)


@click.command("validate")
@json_option
@common_options
@handle_errors
def validate_cmd(as_json: bool) -> None:
    """Check the config; warn where jobs meet daylight-saving gaps or folds in the next 12 months.

    A job whose jitter + accuracy is longer than the gap between its slots is a problem
    (systemd would lose slots). Exit 0 when all is well, 2 when any problem was found.
    """
    ctx = app()
    config = ctx.config()
    job_env, _from_manager = schedule.job_environment(ctx.scope)
    report = schedule.validate(config, scope=ctx.scope, job_env=job_env)
    if as_json:
        echo_json(
            {
                "config": report.source,
                "ok": report.ok,
                "problems": report.problems,
                "jobs": [
                    {
                        "job": j.name,
                        "on_calendar": j.on_calendar,
                        "next_run": j.next_run.isoformat() if j.next_run else None,
                        "problems": j.problems,
                        "warnings": [w.message for w in j.warnings],
                    }
                    for j in report.jobs
                ],
            }
        )
    else:
        click.echo(f"config: {report.source or '(built-in defaults)'}")
        for problem in report.problems:
            click.echo(f"  error: {problem}")
        for j in report.jobs:
            status = "ok" if not j.problems else "PROBLEM"
            next_run = f"next {j.next_run:%Y-%m-%d %H:%M:%S}Z" if j.next_run else "never fires"
            click.echo(f"{j.name}: {status}, {next_run}")
            for problem in j.problems:
                click.echo(f"  error: {problem}")
            for warning in j.warnings:
                click.echo(f"  warning: jobs.{j.name}.cron {warning.message}")
    if not report.ok:
        sys.exit(EXIT_USAGE)
