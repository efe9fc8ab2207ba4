"""The click application: the `memsched` group and its lazily imported commands.

Commands are imported only when invoked, so that `memsched status` does not pay
for templating, cron iteration or gRPC. `memsched exec` as the units call it does
not come here at all (memsched.cli.fastexec).
"""

from __future__ import annotations

import importlib

import click

from memsched import __version__
from memsched.cli.common import common_options, endpoint_option

# command name -> "module:attribute"
COMMANDS = {
    "calendar": "memsched.cli.schedule:calendar_cmd",
    "next": "memsched.cli.schedule:next_cmd",
    "validate": "memsched.cli.schedule:validate_cmd",
    "config": "memsched.cli.config:config_group",
    "sandbox": "memsched.cli.sandbox:sandbox_group",
    "render": "memsched.cli.units:render_cmd",
    "install-units": "memsched.cli.units:install_cmd",
    "uninstall-units": "memsched.cli.units:uninstall_cmd",
    "exec": "memsched.cli.exec:exec_cmd",
    "notify-failure": "memsched.cli.exec:notify_failure_cmd",
    "status": "memsched.cli.jobs:status_cmd",
    "pause": "memsched.cli.jobs:pause_cmd",
    "resume": "memsched.cli.jobs:resume_cmd",
    "skip": "memsched.cli.jobs:skip_cmd",
    "run": "memsched.cli.jobs:run_cmd",
    "history": "memsched.cli.jobs:history_cmd",
    "logs": "memsched.cli.jobs:logs_cmd",
    "doctor": "memsched.cli.jobs:doctor_cmd",
    "ingest": "memsched.cli.memory:ingest_cmd",
    "toc": "memsched.cli.memory:toc_group",
    "quickstart": "memsched.cli.quickstart:quickstart_cmd",
    "completion": "memsched.cli.reference:completion_cmd",
    "cli-reference": "memsched.cli.reference:cli_reference_cmd",
    "serve": "memsched.cli.facade:serve_cmd",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module on first use."""

    def __init__(self, *args: object, lazy: dict[str, str] | None = None, **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            module, attr = self.lazy[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="memsched")
@common_options
@endpoint_option
def cli() -> None:
    """memsched: agent-memory maintenance as systemd timers and one-shot services.

    Exit codes: 0 ok, 1 failed or problems found, 2 bad input (config key, argument,
    cron expression), 3 no systemd manager reachable, 4 permission denied,
    70 internal error. See docs/exit-codes.md.
    """
    ctx = click.get_current_context()
    if ctx.obj is not None and ctx.obj.endpoint and ctx.invoked_subcommand not in ("status", "pause", "resume", "run"):
        raise click.UsageError(f"--endpoint works with status, pause, resume and run, not {ctx.invoked_subcommand}")

