"""render, install-units, uninstall-units."""

from __future__ import annotations

from pathlib import Path

import click

from memsched.cli.common import app, common_options, echo_json, handle_errors, json_option
from memsched.config.values import check_program_path
from memsched.ops import units as units_ops
from memsched.ops.units import InstallReport

def unit_dir_option(verb: str) -> click.Option:
    """``--unit-dir``, its help saying what the command does there (``verb``: "Install into", "Remove from")."""
    return click.option(
        "--unit-dir",
        type=click.Path(file_okay=False),
        default=None,
        help=f"{verb} this directory instead of the scope's ($XDG_CONFIG_HOME/systemd/user or /etc/systemd/system).",
    )


dry_run_option = click.option("--dry-run", is_flag=True, help="Show the plan (a unified diff) and change nothing.")
force_option = click.option(
    "--force",
    is_flag=True,
    help="Also replace or delete unit files that have lost memsched's header but are recorded as memsched's "
    "(without it such a file is a conflict: exit 2, nothing changed).",
)


@click.command("render")
@click.option("--scope", type=click.Choice(["user", "system"]), default=None, help="Render for this scope (default: the current one).")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None, help="Write the unit files into this directory.")
@click.option("--systemd-version", type=click.IntRange(200, 999), default=None, help="Render for this systemd version (default: the installed one).")
@click.option(
    "--memsched-path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Absolute path the units run memsched as (default: this installation's; packagers use /usr/bin/memsched).",
)
@click.option("--defaults", is_flag=True, help="Render the built-in defaults and let the units find the config themselves (packaging).")
@common_options
@handle_errors
def render_cmd(scope: str | None, out: str | None, systemd_version: int | None, memsched_path: str | None, defaults: bool) -> None:
    """Render the units of every enabled job, without touching systemd."""
    from memsched.config.load import parse_config

    ctx = app()
    if memsched_path is not None:
        try:
            check_program_path(memsched_path)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--memsched-path") from None
    config = parse_config({}) if defaults else ctx.config()
    units = units_ops.render(config, scope or ctx.scope, systemd_version, memsched_path)
    if out:
        target = Path(out)
        target.mkdir(parents=True, exist_ok=True)
        for unit in units:
            (target / unit.name).write_text(unit.content)
        click.echo(f"wrote {len(units)} units to {target}")
        return
    for index, unit in enumerate(units):
        if index:
            click.echo()
        click.echo(f"### {unit.name}")
        click.echo(unit.content, nl=False)


def _report(report: InstallReport, as_json: bool, verb: str) -> None:
    plan = report.plan
    if as_json:
        echo_json(
            {
                "scope": plan.scope,
                "unit_dir": str(plan.unit_dir),
                "applied": report.applied,
                "changes": report.changes,
                "summary": plan.summary(),
                "units": [{"name": c.name, "action": c.action, "job": c.job, "note": c.note} for c in plan.changes],
                "enabled": report.enabled,
                "started": report.started,
                "restarted": report.restarted,
                "stopped": report.stopped,
                "paused_not_started": report.skipped_paused,
                "notes": report.notes,
            }
        )
        return
    diff = plan.diff_text()
    if diff:
        click.echo(diff, nl=not diff.endswith("\n"))
    s = plan.summary()
    state = "applied" if report.applied else "planned (dry run)"
    click.echo(
        f"{verb} {state} in {plan.unit_dir}: {report.changes} change(s): "
        f"{s['add']} to add, {s['update']} to update, {s['reload']} to load, {s['delete']} to delete, {s['unchanged']} unchanged"
    )
    for change in plan.changes:
        if change.note:
            click.echo(f"  note: {change.name}: {change.note}")
    for label, items in (
        ("enabled", report.enabled),
        ("started", report.started),
        ("restarted", report.restarted),
        ("stopped", report.stopped),
        ("paused, left stopped", report.skipped_paused),
    ):
        if items:
            click.echo(f"  {label}: {', '.join(items)}")
    for note in report.notes:
        click.echo(f"  note: {note}")


@click.command("install-units")
@unit_dir_option("Install into")
@dry_run_option
@click.option("--no-enable", is_flag=True, help="Install and load the units, but do not enable or start the timers.")
@force_option
@json_option
@common_options
@handle_errors
def install_cmd(unit_dir: str | None, dry_run: bool, no_enable: bool, force: bool, as_json: bool) -> None:
    """Install (or update) the units of every enabled job, as a plan of add / update / load / delete.

    Files without memsched's header are never touched (exit 2, nothing changed);
    units of jobs removed from the config are stopped, disabled and deleted; a
    second run with nothing changed changes nothing. Then daemon-reload, and enable
    and start the timers (paused jobs stay stopped). An install that was killed is
    finished by the next one: units written but not loaded are loaded and their
    timers restarted ("to load"), and its temporary files are removed.

    The Debian package's units (/usr/lib/systemd/system) count as installed while
    they are what the config renders; a changed one is overridden in
    /etc/systemd/system. System scope refuses (exit 2, nothing changed) an
    executable, config, store, registry or metrics path that the units' hardening
    would hide (ProtectHome=, PrivateTmp=) or keep read-only (ProtectSystem=strict).
    """
    ctx = app()
    report = units_ops.install(
        ctx.config(), ctx.scope, unit_dir=Path(unit_dir) if unit_dir else None, dry_run=dry_run, enable=not no_enable, force=force
    )
    _report(report, as_json, "install")


@click.command("uninstall-units")
@unit_dir_option("Remove from")
@dry_run_option
@force_option
@json_option
@common_options
@handle_errors
def uninstall_cmd(unit_dir: str | None, dry_run: bool, force: bool, as_json: bool) -> None:
    """Stop, disable, reset-failed and delete every unit memsched owns, then daemon-reload."""
    ctx = app()
    report = units_ops.uninstall(ctx.config(), ctx.scope, unit_dir=Path(unit_dir) if unit_dir else None, dry_run=dry_run, force=force)
    _report(report, as_json, "uninstall")
