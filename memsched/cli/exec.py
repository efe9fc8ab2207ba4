"""memsched exec (what the service units run) and memsched notify-failure (what OnFailure= runs)."""

from __future__ import annotations

import os
import sys

import click

from memsched.cli.reference import complete_jobs

from memsched.cli.common import app, common_options
from memsched.config.secrets import api_key_problem
from memsched.errors import ConfigError, MemschedError
from memsched.jobs import runner
from memsched.ops.schedule import get_job


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
    try:
        config = ctx.config()
        job_cfg = get_job(config, job)
        scope = ctx.scope
        if job_cfg.kind == "rollup" and not (as_gate or spawn):
            missing = api_key_problem(config.settings, os.environ, str(config.source) if config.source else None)  # the environment the unit gave this run
            if missing is not None:
                raise ConfigError([missing], source=str(config.source) if config.source else None)
    except MemschedError as exc:
        click.echo(f"memsched exec: {exc.message}", err=True)
        sys.exit(runner.GATE_ERROR if as_gate else runner.EXIT_USAGE)
    except Exception as exc:  # noqa: BLE001 - the gate must end in 255, never in a "skip" traceback (exit 1)
        _unexpected(exc, runner.GATE_ERROR if as_gate else runner.EXIT_USAGE)
    try:
        if as_gate:
            sys.exit(runner.gate(config, job_cfg, scope))
        if spawn:
            sys.exit(runner.spawn(config, job_cfg, scope))
        sys.exit(runner.execute(config, job_cfg, scope, instance))
    except MemschedError as exc:
        click.echo(f"memsched exec: {exc.message}", err=True)
        sys.exit(runner.GATE_ERROR if as_gate else runner.EXIT_FAILED)
    except Exception as exc:  # noqa: BLE001 - see _unexpected
        _unexpected(exc, runner.GATE_ERROR if as_gate else runner.EXIT_FAILED)


def _unexpected(exc: Exception, code: int) -> None:
    """Print one line for an error no layer below turned into a MemschedError, and exit with ``code``.

    Under systemd the exit code is the whole message: the gate's 255 makes the start fail
    (not a silent skip), the runner's 1 marks the unit failed so OnFailure= reports it.
    MEMSCHED_DEBUG=1 shows the traceback instead.
    """
    import sqlite3

    if os.environ.get("MEMSCHED_DEBUG"):
        raise exc
    if isinstance(exc, sqlite3.Error):
        text = f"the run registry cannot be used: {type(exc).__name__}: {exc}"
    else:
        text = f"internal error: {type(exc).__name__}: {exc} (set MEMSCHED_DEBUG=1 for the traceback)"
    click.echo(f"memsched exec: {' '.join(text.split())}", err=True)
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
