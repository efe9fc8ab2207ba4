"""memsched exec (what the service units run) and memsched notify-failure (what OnFailure= runs)."""

from __future__ import annotations

import os
import sys

import click

from memsched.cli.reference import complete_jobs

from memsched.cli.common import app, common_options
from memsched.cli.fastexec import ExecArgs, run_exec
from memsched.errors import MemschedError


@click.command("exec")
@click.argument("job", shell_complete=complete_jobs)
@click.option("--gate", "as_gate", is_flag=True, help="Only decide whether a timer start may run (overlap = skip on systemd < 257).")
@click.option("--spawn", is_flag=True, help="Start one instance of the job's template unit and return (overlap = concurrent).")
@click.option("--instance", default=None, help="The instance name, when running as memsched-JOB@INSTANCE.service.")
@common_options
def exec_cmd(job: str, as_gate: bool, spawn: bool, instance: str | None) -> None:
    """Run JOB once, now, in this process (the service units call this).

    \b
    Exit codes: 0 success, 1 the run failed, 2 bad config or unknown job,
    75 interrupted by SIGTERM at a safe point. With --gate: 0 run, 1 skip,
    255 cannot decide.
    """
    ctx = app()
    code = run_exec(ExecArgs(job, ctx.config_flag, ctx.scope_flag, as_gate, spawn, instance))
    sys.exit(code)


@click.command("notify-failure")
@click.argument("job", shell_complete=complete_jobs)
@common_options
def notify_failure_cmd(job: str) -> None:
    """Record a failed run of JOB and run the configured alert command (memsched-failure@.service runs this).

    Exit 0 when recorded (even if the alert command failed: that is logged), 2 for a bad config or job.
    """
    from memsched.ops.alerts import notify_failure

    from memsched.systemd.names import job_of_failure_instance

    ctx = app()
    try:  # a concurrent job's instance fails into memsched-failure@JOB:INSTANCE.service
        report = notify_failure(ctx.config(), ctx.scope, job_of_failure_instance(job))
    except MemschedError as exc:
        click.echo(f"memsched notify-failure: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    if report.command_error:
        click.echo(f"memsched notify-failure: {report.command_error}", err=True)
