"""The memsched command line: parse arguments, call the core, print. Nothing else lives here."""

from __future__ import annotations

import click

from memsched import __version__
from memsched.cli.common import common_options
from memsched.cli.config import config_group
from memsched.cli.exec import exec_cmd, notify_failure_cmd
from memsched.cli.sandbox import sandbox_group
from memsched.cli.schedule import calendar_cmd, next_cmd, validate_cmd
from memsched.cli.units import install_cmd, render_cmd, uninstall_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="memsched")
@common_options
def cli() -> None:
    """memsched: agent-memory maintenance as systemd timers and one-shot services.

    Exit codes: 0 ok, 1 failed or problems found, 2 bad input (config key, argument,
    cron expression), 3 no systemd manager reachable, 4 permission denied,
    70 internal error. See docs/exit-codes.md.
    """


for command in (calendar_cmd, next_cmd, validate_cmd, config_group, sandbox_group, render_cmd, install_cmd, uninstall_cmd, exec_cmd, notify_failure_cmd):
    cli.add_command(command)


def main() -> None:
    """Entry point of the `memsched` console script."""
    cli(prog_name="memsched")
