"""Operations on units: render, install, uninstall. Returns data, never prints."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from memsched.config.load import Config
from memsched.errors import ManagerUnavailable, MemschedError, PermissionDenied, UsageError
from memsched.systemd.facade_units import apply_facade, facade_unit_vars
from memsched.paths import SYSTEM_STATE_DIR
from memsched.paths import unit_dir as default_unit_dir
from memsched.registry import InstalledUnit, Registry, open_registry
from memsched.systemd.install import (
    DirectoryLock,
    InstallPlan,
    kill_point,
    plan_install,
    record_plan,
    refuse_conflicts,
    remove_files,
    remove_stale_temps,
    shipped_elsewhere,
    write_files,
)
from memsched.systemd.manager import ManagerClient
from memsched.systemd.render import (
    SYSTEM_USER,
    RenderContext,
    RenderedUnit,
    local_systemd_version,
    memsched_command,
    render_all,
    timer_name,
)

SYSUSERS_LINE = f'u {SYSTEM_USER} - "memsched maintenance jobs" /var/lib/memsched'


def render_context(
    config: Config, scope: str, systemd_version: int | None = None, manager: ManagerClient | None = None, memsched_path: str | None = None
) -> RenderContext:
    """Build the rendering context: the memsched command, the config path, the manager's systemd version."""
    if systemd_version is None:
        systemd_version = manager.major_version() if manager is not None else local_systemd_version()
    settings = config.settings or {}
    network = str(settings.get("summarizer", {}).get("kind", "local")) != "local"
    extra_paths: list[str] = []
    if scope == "system":
        for path in _configured_paths(config, scope):
            # Normalized, because systemd refuses ReadWritePaths= with ".." ("not normalized, ignoring").
            parent = os.path.normpath(str(path.parent))
            if not (parent + "/").startswith("/var/lib/memsched/"):
                extra_paths.append(parent)
    # System scope: the key file may be root's 0600; PID 1 reads it and hands it to the jobs as a credential.
    key_file = str(settings.get("summarizer", {}).get("api_key_file") or "") if network and scope == "system" else ""
    return RenderContext(
        scope=scope,
        memsched_argv=(memsched_path,) if memsched_path else memsched_command(),
        config_path=config.source,
        systemd_version=systemd_version,
        read_write_paths=tuple(sorted(set(extra_paths))),
        network=network,
        facade=facade_unit_vars(config, scope),
        api_key_credential=os.path.normpath(key_file) if key_file else "",
    )


def _program_paths(argv: tuple[str, ...]) -> list[tuple[str, str]]:
    """The files the service must reach to run ``argv``: the program, what it resolves to, the
    interpreter of a script (a virtualenv's python), and this installation's code."""
    import memsched

    program = argv[0]
    paths = [("the memsched executable", program), ("the memsched executable", os.path.realpath(program))]
    try:
        with open(program, "rb") as fh:
            first = fh.readline(512)
        if first.startswith(b"#!"):
            interpreter = first[2:].decode(errors="replace").split()[0]
            paths.append(("the interpreter of the memsched executable", interpreter))
    except (OSError, IndexError):
        pass
    paths.append(("memsched's code", os.path.dirname(os.path.realpath(memsched.__file__))))
    return list(dict.fromkeys(paths))


def refuse_hidden_paths(config: Config, ctx: RenderContext) -> None:
    """Raise :class:`UsageError` (exit 2) naming the path and the setting when the hardening of
    system-scope units would hide a file the jobs need (ProtectHome=, PrivateTmp=) or keep them
    from writing one (ProtectSystem=strict): such units would only fail at run time."""
    from memsched.systemd.hardening import check_paths

    read = _program_paths(ctx.memsched_argv)
    if config.source is not None:
        read.append(("the config", str(config.source)))
    written = list(zip(("store.path", "registry.path", "metrics.textfile"), map(str, _configured_paths(config, "system"))))
    blocked = check_paths(read, written, str(SYSTEM_STATE_DIR))
    if blocked:
        raise UsageError("; ".join(b.message() for b in blocked))


def _configured_paths(config: Config, scope: str) -> list[Path]:
    """Files the jobs write (system scope needs those outside StateDirectory= in ReadWritePaths=)."""
    from memsched.paths import registry_path
    from memsched.store import resolve_store_path

    settings = config.settings or {}
    paths = [resolve_store_path(config, scope), Path(str(settings.get("registry", {}).get("path") or registry_path(scope)))]
    metrics = str(settings.get("metrics", {}).get("textfile") or "")
    if metrics:
        paths.append(Path(metrics))
    return [p if p.is_absolute() else Path.cwd() / p for p in paths]


def render(config: Config, scope: str, systemd_version: int | None = None, memsched_path: str | None = None) -> list[RenderedUnit]:
    """Return the units the config renders to, without touching systemd."""
    return render_all(config, render_context(config, scope, systemd_version, memsched_path=memsched_path))


@dataclass
class InstallReport:
    """What install-units or uninstall-units did."""

    plan: InstallPlan
    applied: bool
    loaded: bool = False
    enabled: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    skipped_paused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return len(self.plan.pending)


def _open_manager(scope: str, required: bool) -> ManagerClient | None:
    try:
        return ManagerClient(scope).open()
    except ManagerUnavailable:
        if required:
            raise
        return None


def _target(scope: str, unit_dir: Path | None, dry_run: bool) -> tuple[Path, bool, ManagerClient | None]:
    """Return (the unit directory, whether it is not the scope's own, the manager or None).

    The manager is required unless this is a dry run or a directory of our own choosing.
    """
    target = Path(unit_dir) if unit_dir else default_unit_dir(scope)
    custom_dir = unit_dir is not None and target != default_unit_dir(scope)
    return target, custom_dir, _open_manager(scope, required=not (dry_run or custom_dir))


def install(
    config: Config,
    scope: str,
    *,
    unit_dir: Path | None = None,
    dry_run: bool = False,
    enable: bool = True,
    force: bool = False,
    registry: Registry | None = None,
) -> InstallReport:
    """Plan and (unless ``dry_run``) apply the installation of the config's units.

    Converges after a kill at any point (see :mod:`memsched.systemd.install`).
    Raises :class:`UsageError` on conflicts with files memsched does not own (unless
    ``force``), :class:`ManagerUnavailable` when the manager is needed and unreachable.
    """
    target, custom_dir, manager = _target(scope, unit_dir, dry_run)
    try:
        ctx = render_context(config, scope, manager=manager)
        if scope == "system":
            refuse_hidden_paths(config, ctx)
        units = render_all(config, ctx)
        own_registry = registry is None
        registry = registry or open_registry(config, scope)
        try:
            with _locked(target, dry_run):
                manager = _reading(manager, target, custom_dir)
                recorded = registry.installed_units(target)
                plan = plan_install(units, target, scope, recorded, _unloaded(manager, units, recorded), force, shipped_units(manager, units, target))
                report = InstallReport(plan, applied=False)
                refuse_conflicts(plan)
                if dry_run:
                    return report
                if scope == "system":
                    _ensure_system_user(report)
                paused = set(registry.pauses())
                _apply(plan, report, registry, manager, config, enable, paused, str(config.source) if config.source else None)
            from memsched.metrics import update_textfile

            # The metrics exist from the install on: a job that never runs is seen late, not missing.
            update_textfile(config, registry, report.notes.append)
            if scope == "user":
                _linger_note(report)
            return report
        finally:
            if own_registry:
                registry.close()
    finally:
        if manager is not None:
            manager.close()


def _locked(target: Path, dry_run: bool) -> AbstractContextManager[object]:
    """The unit directory's lock while applying; a dry run changes nothing and takes none (nor creates the directory)."""
    return nullcontext() if dry_run else DirectoryLock(target)


def _reading(manager: ManagerClient | None, target: Path, custom_dir: bool) -> ManagerClient | None:
    """The manager, if it reads ``target``; None for a directory it does not read (files only)."""
    if manager is not None and custom_dir and str(target) not in _unit_paths(manager):
        manager.close()
        return None
    return manager


def _unloaded(manager: ManagerClient | None, units: list[RenderedUnit], recorded: list[InstalledUnit]) -> set[str]:
    """Units (wanted or installed) whose files the manager has not loaded as they are on disk."""
    if manager is None:
        return set()
    return manager.needs_reload(sorted({u.name for u in units} | {u.name for u in recorded}))


def _apply(
    plan: InstallPlan,
    report: InstallReport,
    registry: Registry,
    manager: ManagerClient | None,
    config: Config,
    enable: bool,
    paused: set[str],
    config_label: str | None,
) -> None:
    """Apply the plan in an order that a kill at any point leaves recoverable: stop what goes away,
    write, delete, daemon-reload, (re)start, and only then record (see memsched.systemd.install)."""
    deleted = plan.of("delete")
    for path in remove_stale_temps(plan):
        report.notes.append(f"removed {path.name}, left by an install that was killed")
    if manager is not None:
        # Stop and disable what goes away before its files disappear, running concurrent instances included.
        for change in deleted:
            if change.name.endswith("@.service") and change.job:
                for unit in manager.list_units([change.name.replace("@.", "@*.")]):
                    manager.stop(unit["name"])
                    report.stopped.append(unit["name"])
            if change.name.endswith((".timer", ".socket")) and change.old is not None:
                # A file already gone (an interrupted run deleted it) cannot be disabled; its links go below.
                manager.disable([change.name])
            if change.name.endswith((".timer", ".service", ".socket")) and "@." not in change.name:
                manager.stop(change.name)
                report.stopped.append(change.name)
    kill_point("stopped")
    write_files(plan)
    remove_files(plan)
    kill_point("files-written")
    report.applied = True
    if manager is None:
        record_plan(plan, registry, config_label)
        report.notes.append(f"units written to {plan.unit_dir}; no manager loaded them (it does not read that directory)")
        return
    if plan.pending:
        manager.reload()
    kill_point("reloaded")
    for change in deleted:
        manager.reset_failed(change.name)
    report.loaded = True
    if enable:
        _start_timers(plan, report, manager, config, paused)
        apply_facade(manager, plan, report)
    kill_point("started")
    record_plan(plan, registry, config_label)
    kill_point("recorded")


def _start_timers(plan: InstallPlan, report: InstallReport, manager: ManagerClient, config: Config, paused: set[str]) -> None:
    """Enable and start the timers of enabled, unpaused jobs; restart those whose units changed."""
    changed = {c.name for c in plan.of("add", "update", "reload")}
    for job in config.enabled_jobs.values():
        timer = timer_name(job.name)
        if job.name in paused:
            report.skipped_paused.append(job.name)
            continue
        if manager.unit_file_state(timer) != "enabled":
            manager.enable([timer])
            report.enabled.append(timer)
        active = manager.properties(timer)["ActiveState"]
        if active != "active":
            manager.start(timer)
            report.started.append(timer)
        elif timer in changed:
            manager._manager("RestartUnit", "ss", timer.encode(), b"replace")
            report.restarted.append(timer)


def shipped_units(manager: ManagerClient | None, units: list[RenderedUnit], target: Path) -> dict[str, Path]:
    """memsched's unit files the manager reads from a directory after ``target`` (the Debian package's
    in /usr/lib/systemd/system), by name; empty without a manager."""
    if manager is None:
        return {}
    return shipped_elsewhere([u.name for u in units], target, _unit_paths(manager))


def _unit_paths(manager: ManagerClient) -> list[str]:
    from memsched.systemd.manager import _MANAGER_IFACE, _MANAGER_PATH, _PROPS_IFACE, _decode

    body = manager._call(_MANAGER_PATH, _PROPS_IFACE, b"Get", "ss", [_MANAGER_IFACE, b"UnitPath"]).body
    return [str(Path(p)) for p in _decode(body)]


def _ensure_system_user(report: InstallReport) -> None:
    try:
        pwd.getpwnam(SYSTEM_USER)
        return
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise PermissionDenied(f"system scope needs the system user {SYSTEM_USER!r}; run as root so memsched can create it")
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        raise MemschedError(f"the system user {SYSTEM_USER!r} does not exist and systemd-sysusers is not installed")
    proc = subprocess.run([sysusers, "-"], input=SYSUSERS_LINE + "\n", capture_output=True, text=True)
    if proc.returncode != 0:
        raise MemschedError(f"could not create the system user {SYSTEM_USER!r}: {proc.stderr.strip()}")
    report.notes.append(f"created the system user {SYSTEM_USER!r} (systemd-sysusers)")


def _linger_note(report: InstallReport) -> None:
    if os.environ.get("MEMSCHED_SANDBOX"):
        return
    user = pwd.getpwuid(os.getuid()).pw_name
    if not Path(f"/var/lib/systemd/linger/{user}").exists():
        report.notes.append(
            f"user timers run only while {user} has a session; to run them while logged out: loginctl enable-linger {user}"
        )


def uninstall(config: Config, scope: str, *, unit_dir: Path | None = None, dry_run: bool = False, force: bool = False) -> InstallReport:
    """Stop, disable, reset-failed and delete every unit memsched owns in the directory, then daemon-reload.

    Raises :class:`UsageError` when a unit the registry records has lost memsched's header
    (unless ``force``): such a file is not deleted.
    """
    target, custom_dir, manager = _target(scope, unit_dir, dry_run)
    try:
        with open_registry(config, scope) as registry, _locked(target, dry_run):
            manager = _reading(manager, target, custom_dir)
            plan = plan_install([], target, scope, registry.installed_units(target), force=force)
            report = InstallReport(plan, applied=False)
            refuse_conflicts(plan)
            if dry_run:
                return report
            _apply(plan, report, registry, manager, config, enable=False, paused=set(), config_label=None)
            return report
    finally:
        if manager is not None:
            manager.close()
