"""status, pause, resume, run, history, logs, doctor."""

from __future__ import annotations

import json
import os
import sys

import click

from memsched.cli.reference import complete_jobs

from memsched.cli.common import (
    app, common_options, echo_json, echo_table, format_duration, format_time, handle_errors, json_option, usage_fail,
)
from memsched.errors import EXIT_FAILURE

utc_option = click.option("--utc", is_flag=True, help="Show times in UTC instead of local time.")


def _jobs_argument(names: tuple[str, ...], all_jobs: bool, verb: str) -> list[str] | None:
    if all_jobs and names:
        usage_fail("give JOB names or --all, not both")
    if not all_jobs and not names:
        usage_fail(f"name the job(s) to {verb}, or use --all")
    return None if all_jobs else list(names)


@click.command("status")
@click.argument("jobs", nargs=-1, shell_complete=complete_jobs)
@utc_option
@json_option
@common_options
@handle_errors
def status_cmd(jobs: tuple[str, ...], utc: bool, as_json: bool) -> None:
    """Show every job (or the JOBS named): state, last run, result, duration, next run, counts.

    STATE is idle, running, paused, failed or not installed. NEXT RUN is
    systemd's own next elapse (random delay included); counts come from the run
    registry and survive reboots. RUNS counts successful runs only, ERRORS failed
    ones (a run stopped at a safe point counts in neither; `history` shows it).
    SKIPS counts slots memsched decided not to run (overlap, pause, a manual
    skip), LOST slots that should have run and did not (systemd's start limit,
    the machine off); `history` gives each one's reason.
    LATE says "late" for a job with no successful run within its expected
    interval (the longest gap of its calendar) plus allowances, as the shipped
    Prometheus rule MemschedJobLate decides (docs/metrics.md).
    """
    from memsched.ops.status import job_status_dict, read_status

    ctx = app()
    if ctx.endpoint:
        from memsched.cli.remote import remote_status

        return remote_status(ctx.endpoint, list(jobs), utc, as_json)
    status = read_status(ctx.config(), ctx.scope, list(jobs) or None, require_manager=True)
    if as_json:
        echo_json(
            {
                "scheduler_running": status.scheduler_running,
                "scope": status.scope,
                "manager_version": status.manager_version,
                "jobs": [job_status_dict(j) for j in status.jobs],
            }
        )
        return
    rows = [
        [
            j.job_name,
            j.state,
            format_time(j.last_run_ms, utc),
            j.last_result or "-",
            format_duration(j.last_duration_ms) if j.last_run else "-",
            format_time(j.next_run_ms, utc),
            str(j.run_count),
            str(j.error_count),
            str(j.skip_count),
            str(j.lost_count),
            "late" if j.late else "-",
        ]
        for j in status.jobs
    ]
    echo_table(["JOB", "STATE", "LAST RUN", "RESULT", "DURATION", "NEXT RUN", "RUNS", "ERRORS", "SKIPS", "LOST", "LATE"], rows)


@click.command("pause")
@click.argument("jobs", nargs=-1, shell_complete=complete_jobs)
@click.option("--all", "all_jobs", is_flag=True, help="Pause every enabled job.")
@click.option("--stop-running", is_flag=True, help="Also stop a run in progress (it ends at a safe point).")
@click.option("--reason", default=None, help="Why, for the record.")
@json_option
@common_options
@handle_errors
def pause_cmd(jobs: tuple[str, ...], all_jobs: bool, stop_running: bool, reason: str | None, as_json: bool) -> None:
    """Pause JOB(s): disable and stop the timer. Survives reboots and daemon-reloads."""
    from memsched.ops.control import pause

    ctx = app()
    if ctx.endpoint:
        from memsched.cli.remote import refuse, remote_pause_resume

        if stop_running or reason:
            refuse("--stop-running" if stop_running else "--reason")
        return remote_pause_resume(ctx.endpoint, "pause", _jobs_argument(jobs, all_jobs, "pause"), as_json)
    results = pause(ctx.config(), ctx.scope, _jobs_argument(jobs, all_jobs, "pause"), stop_running=stop_running, reason=reason)
    if as_json:
        echo_json([{"job": r.job, "was_paused": r.was_paused, "stopped_running": r.stopped_running} for r in results])
        return
    for r in results:
        extra = f"; stopped {', '.join(r.stopped_running)}" if r.stopped_running else ""
        click.echo(f"{r.job}: {'still ' if r.was_paused else ''}paused{extra}")


@click.command("resume")
@click.argument("jobs", nargs=-1, shell_complete=complete_jobs)
@click.option("--all", "all_jobs", is_flag=True, help="Resume every enabled job.")
@click.option("--skip-missed", is_flag=True, help="Do not catch up a slot missed while paused.")
@json_option
@common_options
@handle_errors
def resume_cmd(jobs: tuple[str, ...], all_jobs: bool, skip_missed: bool, as_json: bool) -> None:
    """Resume JOB(s): enable and start the timer; say whether a missed slot is caught up."""
    from memsched.ops.control import resume

    ctx = app()
    if ctx.endpoint:
        from memsched.cli.remote import refuse, remote_pause_resume

        if skip_missed:
            refuse("--skip-missed")
        return remote_pause_resume(ctx.endpoint, "resume", _jobs_argument(jobs, all_jobs, "resume"), as_json)
    results = resume(ctx.config(), ctx.scope, _jobs_argument(jobs, all_jobs, "resume"), skip_missed=skip_missed)
    if as_json:
        echo_json(
            [
                {"job": r.job, "was_paused": r.was_paused, "missed_slot": r.missed_slot.isoformat() if r.missed_slot else None, "catch_up": r.catch_up}
                for r in results
            ]
        )
        return
    for r in results:
        if r.missed_slot is None:
            note = "no slot was missed"
        elif r.catch_up:
            note = f"the slot missed at {r.missed_slot:%Y-%m-%d %H:%M:%S}Z is caught up now (Persistent=)"
        else:
            note = f"the slot missed at {r.missed_slot:%Y-%m-%d %H:%M:%S}Z is not caught up"
        click.echo(f"{r.job}: resumed{'' if r.was_paused else ' (was not paused)'}; {note}")


@click.command("run")
@click.argument("job", shell_complete=complete_jobs)
@click.option("--wait", is_flag=True, help="Follow the run and exit with its result.")
@json_option
@common_options
@handle_errors
def run_cmd(job: str, wait: bool, as_json: bool) -> None:
    """Run JOB now through systemd (same unit, limits, journal and accounting as a scheduled run).

    With --wait, exit with the run's exit code (0 success, 1 failed, 75 interrupted).
    """
    from memsched.ops.control import run_now

    ctx = app()
    if ctx.endpoint:
        from memsched.cli.remote import remote_run

        return remote_run(ctx.endpoint, job, wait, as_json)
    outcome = run_now(ctx.config(), ctx.scope, job, wait=wait)
    if as_json:
        run = outcome.run
        echo_json(
            {
                "job": outcome.job,
                "unit": outcome.unit,
                "waited": outcome.waited,
                "exit_code": outcome.exit_code,
                "result": run.result if run else outcome.result,
                "reason": run.reason if run else None,
                "invocation_id": outcome.invocation_id,
                "duration_ms": run.duration_ms if run else None,
            }
        )
    elif not wait:
        click.echo(f"started {outcome.unit}; follow it with: memsched logs {job} -f")
    else:
        run = outcome.run
        result = run.result if run else outcome.result
        reason = f": {run.reason}" if run and run.reason else ""
        click.echo(f"{outcome.unit}: {result}{reason} (exit {outcome.exit_code})")
    if wait and outcome.exit_code:
        sys.exit(outcome.exit_code)


@click.command("history")
@click.argument("job", shell_complete=complete_jobs)
@click.option("-n", "limit", type=int, default=20, show_default=True, help="How many records.")
@utc_option
@json_option
@common_options
@handle_errors
def history_cmd(job: str, limit: int, utc: bool, as_json: bool) -> None:
    """Show JOB's past runs and its skipped and lost slots: start, duration, result, reason, exit code, invocation id.

    A skipped or lost record may stand for several slots (RESULT shows "skipped xN"); its reason code is in --json.
    """
    from memsched.ops.logs import history
    from memsched.ops.status import iso_ms

    ctx = app()
    records = history(ctx.config(), ctx.scope, job, limit)
    if as_json:
        echo_json(
            [
                {
                    "id": r.id,
                    "job": r.job,
                    "started": iso_ms(r.started_ms),
                    "started_ms": r.started_ms,
                    "ended_ms": r.ended_ms,
                    "duration_ms": r.duration_ms,
                    "result": r.result,
                    "reason": r.reason,
                    "exit_code": r.exit_code,
                    "invocation_id": r.invocation_id,
                    "trigger": r.trigger,
                    "instance": r.instance,
                    "actor": r.actor,
                    "slot": iso_ms(r.slot_ms or 0),
                    "slot_ms": r.slot_ms,
                    "reason_code": r.reason_code,
                    "slot_end_ms": r.slot_end_ms,
                    "slot_count": r.slot_count if r.result in ("skipped", "lost") else None,
                    "metadata": r.metadata,
                }
                for r in records
            ]
        )
        return
    rows = [
        [
            format_time(r.started_ms, utc),
            format_duration(r.duration_ms) if r.result not in ("skipped", "lost") else "-",
            r.result if r.result not in ("skipped", "lost") or r.slot_count == 1 else f"{r.result} x{r.slot_count}",
            "-" if r.exit_code is None else str(r.exit_code),
            r.trigger,
            r.invocation_id or "-",
            r.reason or "",
        ]
        for r in records
    ]
    echo_table(["STARTED", "DURATION", "RESULT", "EXIT", "TRIGGER", "INVOCATION", "REASON"], rows)


@click.command("logs")
@click.argument("job", shell_complete=complete_jobs)
@click.option("-n", "lines", type=int, default=50, show_default=True, help="How many lines.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--run", "invocation", default=None, metavar="INVOCATION_ID", help="Only this run (see `memsched history`).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line: time, job, unit, invocation, priority, message.")
@common_options
@handle_errors
def logs_cmd(job: str, lines: int, follow: bool, invocation: str | None, as_json: bool) -> None:
    """Show JOB's journal output (every run, or one with --run)."""
    from memsched.ops.logs import journal_command, journal_entries

    ctx = app()
    argv = journal_command(ctx.config(), ctx.scope, job, lines=lines, follow=follow, invocation=invocation, as_json=as_json)
    if as_json:
        # JSON Lines, not one array: it streams with --follow, and each line stands alone.
        for entry in journal_entries(argv):
            click.echo(json.dumps(entry, ensure_ascii=False))
        return
    sys.stdout.flush()
    os.execv(argv[0], argv)


@click.command("doctor")
@json_option
@common_options
@handle_errors
def doctor_cmd(as_json: bool) -> None:
    """Find drift (hand-edited, missing or stale units, timers that disagree with pauses, failed units,
    no linger) and say how to fix each. Exit 1 when an error is found."""
    from memsched.ops.doctor import doctor

    ctx = app()
    findings = doctor(ctx.config(), ctx.scope)
    errors = [f for f in findings if f.severity == "error"]
    if as_json:
        echo_json({"ok": not errors, "findings": [f.__dict__ for f in findings]})
    elif not findings:
        click.echo("no problems found")
    else:
        for f in findings:
            click.echo(f"{f.severity}: {f.job + ': ' if f.job else ''}{f.problem}\n  fix: {f.fix}")
    if errors:
        sys.exit(EXIT_FAILURE)
