"""memsched quickstart."""

from __future__ import annotations

import sys

import click

from memsched.cli.common import echo_table, handle_errors
from memsched.errors import EXIT_FAILURE


@click.command("quickstart")
@handle_errors
def quickstart_cmd() -> None:
    """A first look, end to end: a systemd manager (a private one where none runs), sample events,
    the units installed, every job run once through systemd, and the status."""
    from memsched.ops.quickstart import SANDBOX_NAME, quickstart
    from memsched.ops.status import read_status
    from memsched.config.load import load_config

    report = quickstart(lambda text: click.echo(f"- {text}"))
    click.echo()
    click.echo("TOC: " + ", ".join(f"{count} {level} nodes" for level, count in report.toc_counts.items()) + f"; {report.pending} placeholder(s) left, for periods still open")
    status = read_status(load_config(report.config_path), "user")
    echo_table(
        ["JOB", "STATE", "RESULT", "NEXT RUN (UTC)", "RUNS", "ERRORS", "SKIPS"],
        [
            [j.job_name, j.state, j.last_result or "-", _utc(j.next_run_ms), str(j.run_count), str(j.error_count), str(j.skip_count)]
            for j in status.jobs
        ],
    )
    click.echo()
    if report.sandbox:
        click.echo(f'next: eval "$(memsched sandbox env --name {SANDBOX_NAME})"; systemctl --user list-timers; memsched status')
        click.echo(f"      memsched logs toc_rollup_day; memsched toc; memsched sandbox stop --name {SANDBOX_NAME}")
    else:
        click.echo(f"next: systemctl --user list-timers; memsched status --config {report.config_path}")
    failed = [job for job, result, _code in report.runs if result != "success"]
    if failed:
        click.echo(f"memsched: these runs did not succeed: {', '.join(failed)} (see memsched logs JOB)", err=True)
        sys.exit(EXIT_FAILURE)


def _utc(ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"
