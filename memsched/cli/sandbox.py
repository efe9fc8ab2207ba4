"""memsched sandbox start|status|env|stop|reap: a private systemd user manager for machines without one."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from memsched.cli.common import echo_json, handle_errors, json_option
from memsched.errors import EXIT_NO_MANAGER
from memsched.systemd.sandbox import Sandbox, reap_stale, shell_exports

DEFAULT_BASE = Path("/run/memsched/sandbox")

name_option = click.option("--name", default="default", show_default=True, help="Which sandbox (several can run side by side).")
root_option = click.option("--root", type=click.Path(file_okay=False), default=None, help="Its directory (default /run/memsched/sandbox/NAME).")


def _sandbox(name: str, root: str | None) -> Sandbox:
    if not name.replace("-", "").replace("_", "").isalnum():
        raise click.BadParameter("letters, digits, '-' and '_' only", param_hint="--name")
    return Sandbox(Path(root) if root else DEFAULT_BASE / name, name)


@click.group("sandbox")
def sandbox_group() -> None:
    """Run a private systemd user manager (for containers, CI, machines without a session manager).

    \b
    memsched sandbox start
    eval "$(memsched sandbox env)"
    memsched install-units && systemctl --user list-timers
    """


@sandbox_group.command("start")
@name_option
@root_option
@handle_errors
def start_cmd(name: str, root: str | None) -> None:
    """Start the private manager (harmless when it already runs)."""
    sandbox = _sandbox(name, root)
    state = sandbox.load()
    if state is not None and sandbox.is_running():
        click.echo(f"sandbox {name!r} already running (manager pid {state.manager_pid}, {sandbox.root})")
        return
    state = sandbox.start()
    click.echo(f"sandbox {name!r} started: manager pid {state.manager_pid}, directory {sandbox.root}")
    click.echo(f'use it with: eval "$(memsched sandbox env{"" if name == "default" else " --name " + name})"')


@sandbox_group.command("status")
@name_option
@root_option
@json_option
@handle_errors
def status_cmd(name: str, root: str | None, as_json: bool) -> None:
    """Say whether the private manager runs (exit 3 when it does not)."""
    sandbox = _sandbox(name, root)
    state = sandbox.load()
    running = state is not None and sandbox.is_running()
    if as_json:
        echo_json(
            {
                "name": name,
                "root": str(sandbox.root),
                "running": running,
                "supervisor_pid": state.supervisor_pid if state else None,
                "manager_pid": state.manager_pid if state else None,
                "journal_dir": str(sandbox.journal_dir()) if running else None,
                "env": sandbox.env() if running else None,
            }
        )
    elif running and state is not None:
        click.echo(f"sandbox {name!r}: running, manager pid {state.manager_pid}, supervisor pid {state.supervisor_pid}")
        click.echo(f"  directory: {sandbox.root}")
        click.echo(f"  unit directory: {sandbox.unit_dir}")
        click.echo(f"  journal: journalctl --directory={sandbox.journal_dir()}")
    else:
        click.echo(f"sandbox {name!r}: not running")
    if not running:
        sys.exit(EXIT_NO_MANAGER)


@sandbox_group.command("env")
@name_option
@root_option
@handle_errors
def env_cmd(name: str, root: str | None) -> None:
    """Print the environment for using it: eval "$(memsched sandbox env)"."""
    sandbox = _sandbox(name, root)
    if not sandbox.is_running():
        click.echo(f"memsched: sandbox {name!r} is not running; start it with `memsched sandbox start`", err=True)
        sys.exit(EXIT_NO_MANAGER)
    click.echo(shell_exports(sandbox.env()), nl=False)


@sandbox_group.command("stop")
@name_option
@root_option
@handle_errors
def stop_cmd(name: str, root: str | None) -> None:
    """Stop the private manager and everything it started; remove its directory."""
    sandbox = _sandbox(name, root)
    if sandbox.stop():
        click.echo(f"sandbox {name!r} stopped")
    else:
        click.echo(f"sandbox {name!r} is not running; nothing to stop")


@sandbox_group.command("reap")
@handle_errors
def reap_cmd() -> None:
    """Clean up sandboxes whose supervisor was killed (their processes, cgroups and directories)."""
    roots = reap_stale()
    for root in roots:
        click.echo(f"reaped {root}")
    if not roots:
        click.echo("nothing to reap")
