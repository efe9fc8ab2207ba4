"""status, pause, resume, skip, run, history, logs, doctor."""

from __future__ import annotations

import json
import os
import sys

import click

from memsched.cli.reference import complete_jobs

from memsched.cli.common import (
    app, common_options, echo_json, echo_table, format_duration, format_time, handle_errors, json_option, usage_fail,
)
from memsched.errors import EXIT_FAILURE, EXIT_PERMISSION

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
    A last line says when the memory store was last fully verified, and with what
    result (`store_verification` in --json; docs/store.md).
    """
    from memsched.ops.status import job_status_dict, read_status
    from memsched.ops.verification import describe, verification_report

    ctx = app()
    if ctx.endpoint:
        from memsched.cli.remote import remote_status

        return remote_status(ctx.endpoint, list(jobs), utc, as_json)
    status = read_status(ctx.config(), ctx.scope, list(jobs) or None, require_manager=True, partial=True)
    unread = status.registry_error is not None  # what the registry holds is unknown: "?", never a made-up 0
    verification = verification_report(ctx.config(), ctx.scope)
    if as_json:
        listed = [job_status_dict(j, registry_known=not unread) for j in status.jobs]
        echo_json(
            {
                "scheduler_running": status.scheduler_running,
                "scope": status.scope,
                "manager_version": status.manager_version,
                "registry_readable": not unread,
                "jobs": listed,
                "store_verification": verification,
            }
        )
    else:
        rows = [
            [
                j.job_name,
                j.state,
                "?" if unread else format_time(j.last_run_ms, utc),
                "?" if unread else j.last_result or "-",
                "?" if unread else format_duration(j.last_duration_ms) if j.last_run else "-",
                format_time(j.next_run_ms, utc),
                *(["?"] * 4 if unread else [str(j.run_count), str(j.error_count), str(j.skip_count), str(j.lost_count)]),
                "?" if unread else "late" if j.late else "-",
            ]
            for j in status.jobs
        ]
        echo_table(["JOB", "STATE", "LAST RUN", "RESULT", "DURATION", "NEXT RUN", "RUNS", "ERRORS", "SKIPS", "LOST", "LATE"], rows)
        for j in status.jobs:
            if j.paused_until_ms:
                click.echo(f"{j.job_name}: paused until {format_time(j.paused_until_ms, utc)} (resumes by itself), by {j.pause.paused_by}")  # type: ignore[union-attr]
            if j.skip_window is not None:
                w = j.skip_window
                what = f"the next {w.next_n} slot(s) after {format_time(w.asked_ms, utc)}" if w.next_n else "every slot"
                click.echo(f"{j.job_name}: skipping {what} through {format_time(w.through_ms, utc)}, asked by {w.actor}")
        line = describe(verification)
        if line:
            click.echo(line)
    if unread:
        click.echo(f"memsched: {status.registry_error}", err=True)
        sys.exit(EXIT_PERMISSION)


@click.command("pause")
@click.argument("jobs", nargs=-1, shell_complete=complete_jobs)
@click.option("--all", "all_jobs", is_flag=True, help="Pause every enabled job.")
@click.option("--for", "for_text", metavar="DURATION", default=None, help="Resume by itself after this long (2h, 90min, 1h 30min).")
@click.option(
    "--until", "until_text", metavar="TIME", default=None,
    help="Resume by itself at this instant (ISO 8601: 2026-12-24T08:00, with an offset, Z or a zone name; default: the job's zone).",
)
@click.option("--stop-running", is_flag=True, help="Also stop a run in progress (it ends at a safe point).")
@click.option("--reason", default=None, help="Why, for the record.")
@json_option
@common_options
@handle_errors
def pause_cmd(
    jobs: tuple[str, ...], all_jobs: bool, for_text: str | None, until_text: str | None, stop_running: bool, reason: str | None, as_json: bool
) -> None:
    """Pause JOB(s): stop the timer. Survives reboots and daemon-reloads.

    Without --for/--until the timer is disabled until `memsched resume`. With
    --for or --until the pause ends by itself at that instant (also after a
    reboot or manager restart) and resumes as `memsched resume` does; slots
    before it do not run. `memsched resume` ends it early.
    """
    from memsched.ops.pause import pause

    ctx = app()
    names = _jobs_argument(jobs, all_jobs, "pause")
    if ctx.endpoint:
        from memsched.cli.remote import refuse, remote_pause_resume

        if stop_running or reason:
            refuse("--stop-running" if stop_running else "--reason")
        return remote_pause_resume(ctx.endpoint, "pause", names, as_json, _remote_until(for_text, until_text))
    results = pause(ctx.config(), ctx.scope, names, stop_running=stop_running, reason=reason, for_text=for_text, until_text=until_text)
    if as_json:
        echo_json(
            [
                {
                    "job": r.job,
                    "was_paused": r.was_paused,
                    "stopped_running": r.stopped_running,
                    "paused_until": iso_or_none(r.until_ms),
                    "paused_until_ms": r.until_ms,
                    "resume_unit": r.resume_unit,
                }
                for r in results
            ]
        )
        return
    for r in results:
        extra = f"; stopped {', '.join(r.stopped_running)}" if r.stopped_running else ""
        until = f" until {format_time(r.until_ms, True)} (resumes by itself)" if r.until_ms else ""
        click.echo(f"{r.job}: {'still ' if r.was_paused else ''}paused{until}{extra}")


def _remote_until(for_text: str | None, until_text: str | None) -> int | None:
    """The PauseJob resume_at_ms for --for/--until through --endpoint (the job's zone is the server's: give one)."""
    from memsched.errors import UsageError
    from memsched.ops.instants import parse_for, parse_instant
    from memsched.registry import now_ms

    if for_text is not None and until_text is not None:
        raise UsageError("give --for or --until, not both")
    if for_text is not None:
        return now_ms() + parse_for(for_text)
    return parse_instant(until_text, None) if until_text is not None else None


def iso_or_none(ms: int | None) -> str | None:
    from memsched.ops.status import iso_ms

    return iso_ms(ms) if ms else None


@click.command("resume")
@click.argument("jobs", nargs=-1, shell_complete=complete_jobs)
@click.option("--all", "all_jobs", is_flag=True, help="Resume every enabled job.")
@click.option("--skip-missed", is_flag=True, help="Do not catch up a slot missed while paused.")
@click.option("--due", is_flag=True, hidden=True, help="Only jobs whose timed pause has ended (what the resume timer runs).")
@json_option
@common_options
@handle_errors
def resume_cmd(jobs: tuple[str, ...], all_jobs: bool, skip_missed: bool, due: bool, as_json: bool) -> None:
    """Resume JOB(s): enable and start the timer (ending a timed pause early); say whether a missed slot is caught up."""
    from memsched.ops.pause import resume

    ctx = app()
    if ctx.endpoint:
        from memsched.cli.remote import refuse, remote_pause_resume

        if skip_missed or due:
            refuse("--skip-missed" if skip_missed else "--due")
        return remote_pause_resume(ctx.endpoint, "resume", _jobs_argument(jobs, all_jobs, "resume"), as_json)
    results = resume(ctx.config(), ctx.scope, _jobs_argument(jobs, all_jobs, "resume"), skip_missed=skip_missed, due=due)
    if as_json:
        echo_json(
            [
                {
                    "job": r.job,
                    "was_paused": r.was_paused,
                    "missed_slot": r.missed_slot.isoformat() if r.missed_slot else None,
                    "catch_up": r.catch_up,
                    "paused_until": iso_or_none(r.until_ms),
                    "cancelled_timed_resume": r.cancelled_timer,
                }
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
        timed = ""
        if r.until_ms and due:
            timed = f" (its pause ended at {format_time(r.until_ms, True)})"
        elif r.until_ms:
            timed = f" (before its pause's end at {format_time(r.until_ms, True)}; that timed resume is cancelled)"
        click.echo(f"{r.job}: resumed{'' if r.was_paused else ' (was not paused)'}{timed}; {note}")


@click.command("skip")
@click.argument("jobs", nargs=-1, shell_complete=complete_jobs)
@click.option("--all", "all_jobs", is_flag=True, help="Every enabled job.")
@click.option("--next", "next_n", type=int, metavar="N", default=None, help="Skip the next N slots (1 to 1000).")
@click.option(
    "--until", "until_text", metavar="TIME", default=None,
    help="Skip every slot before this instant (ISO 8601, with an offset, Z or a zone name; default: the job's zone).",
)
@click.option("--cancel", is_flag=True, help="Forget the job's skip request: its next slots run.")
@click.option("--reason", default=None, help="Why, for the record.")
@json_option
@common_options
@handle_errors
def skip_cmd(
    jobs: tuple[str, ...], all_jobs: bool, next_n: int | None, until_text: str | None, cancel: bool, reason: str | None, as_json: bool
) -> None:
    """Skip JOB(s)' next N slots (--next N) or every slot before TIME (--until TIME); the timer stays enabled.

    Each slot skipped is recorded (history: skipped, reason code manual-skip,
    who asked); `status` and `next` show what is skipped. A new request
    replaces the job's earlier one; --cancel forgets it. Manual runs still run.
    """
    from memsched.ops.skip import cancel_skip, skip

    ctx = app()
    names = _jobs_argument(jobs, all_jobs, "skip")
    if cancel:
        if next_n is not None or until_text is not None:
            usage_fail("--cancel takes no --next or --until")
        cancelled = cancel_skip(ctx.config(), ctx.scope, names)
        if as_json:
            echo_json([{"job": job, "cancelled": window is not None} for job, window in cancelled])
            return
        for job, window in cancelled:
            click.echo(f"{job}: {'skip request cancelled' if window else 'had no skip request'}; its next slots run")
        return
    results = skip(ctx.config(), ctx.scope, names, next_n=next_n, until_text=until_text, reason=reason)
    if as_json:
        echo_json(
            [
                {
                    "job": r.job,
                    "next_n": r.window.next_n,
                    "through": iso_or_none(r.window.through_ms),
                    "through_ms": r.window.through_ms,
                    "asked_by": r.window.actor,
                    "slots": [iso_or_none(ms) for ms in r.slots_ms],
                    "slots_ms": r.slots_ms,
                    "more_slots": r.more,
                    "replaced": r.replaced is not None,
                }
                for r in results
            ]
        )
        return
    for r in results:
        what = f"the next {r.window.next_n} slot(s)" if r.window.next_n else f"every slot before {format_time(r.window.through_ms + 1, True)}"
        listed = ", ".join(format_time(ms, True) for ms in r.slots_ms[:5]) or "none in that time"
        more = ", ..." if r.more or len(r.slots_ms) > 5 else ""
        click.echo(f"{r.job}: skipping {what}: {listed}{more}{' (replaces the earlier request)' if r.replaced else ''}")


@click.command("run")
@click.argument("job", shell_complete=complete_jobs)
@click.option("--wait", is_flag=True, help="Follow the run and exit with its result.")
@json_option
@common_options
@handle_errors
def run_cmd(job: str, wait: bool, as_json: bool) -> None:
    """Run JOB now through systemd (same unit, limits, journal and accounting as a scheduled run).

    With --wait, exit with the run's exit code (0 success, 1 failed, 75 interrupted).
    Exit 5 when the job's overlap policy refused the run (overlap = skip and a run is
    in progress); under overlap = queue the run starts right after the one in progress.
    """
    from memsched.ops.control import run_now

    ctx = app()
    if ctx.endpoint:
        from memsched.cli.remote import remote_run

        return remote_run(ctx.endpoint, job, wait, as_json)
    outcome = run_now(ctx.config(), ctx.scope, job, wait=wait, caller_env=os.environ)
    for note in outcome.notes:
        click.echo(f"memsched: {note}", err=True)
    if as_json:
        run = outcome.run
        echo_json(
            {
                "job": outcome.job,
                "unit": outcome.unit,
                "waited": outcome.waited,
                "exit_code": outcome.exit_code,
                "run_id": run.id if run else None,
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
    no linger, a failed or overdue store verification) and say how to fix each; say when the store
    was last fully verified. Exit 1 when an error is found."""
    from memsched.ops.doctor import doctor
    from memsched.ops.verification import describe, verification_report

    ctx = app()
    findings = doctor(ctx.config(), ctx.scope)
    verification = verification_report(ctx.config(), ctx.scope)
    errors = [f for f in findings if f.severity == "error"]
    if as_json:
        echo_json({"ok": not errors, "findings": [f.__dict__ for f in findings], "store_verification": verification})
    else:
        if not findings:
            click.echo("no problems found")
        for f in findings:
            click.echo(f"{f.severity}: {f.job + ': ' if f.job else ''}{f.problem}\n  fix: {f.fix}")
        line = describe(verification)
        if line:
            click.echo(line)
    if errors:
        sys.exit(EXIT_FAILURE)
