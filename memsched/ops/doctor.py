"""Find drift between the config, the installed units, the registry and systemd; say how to fix each."""

from __future__ import annotations

import hashlib
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from memsched.config.load import Config
from memsched.paths import unit_dir as default_unit_dir
from memsched.registry import now_ms, open_registry
from memsched.systemd.install import plan_install
from memsched.systemd.manager import ManagerClient
from memsched.systemd.names import job_of_unit, service_name, timer_name


@dataclass
class Finding:
    """One problem: which job (or None), what is wrong, how to fix it."""

    job: str | None
    problem: str
    fix: str
    severity: str = "error"  # error | warning


def doctor(config: Config, scope: str, unit_dir: Path | None = None) -> list[Finding]:
    """Return every problem found (empty when all is well). Raises ManagerUnavailable when no manager answers."""
    from memsched.ops.units import render_context, shipped_units
    from memsched.systemd.render import render_all

    target = unit_dir or default_unit_dir(scope)
    findings: list[Finding] = []
    with ManagerClient(scope) as manager, open_registry(config, scope) as registry:
        rendered = render_all(config, render_context(config, scope, manager=manager))
        recorded = {u.name: u for u in registry.installed_units(target)}
        unloaded = manager.needs_reload(sorted({u.name for u in rendered} | set(recorded)))
        # The Debian package ships the units in /usr/lib/systemd/system: those count as installed
        # while they are what the config renders (an override in the target would be a second copy).
        shipped = shipped_units(manager, rendered, target)
        plan = plan_install(rendered, target, scope, list(recorded.values()), unloaded, shipped=shipped)
        for path in plan.stale_temps:
            findings.append(Finding(None, f"{path} was left by an install that was killed", "run `memsched install-units` (it removes it)", "warning"))
        for name in sorted(unloaded - {c.name for c in plan.of("reload")}):
            findings.append(Finding(job_of_unit(name), f"{name} changed on disk but the manager has not loaded it", "run `memsched install-units`"))
        for change in plan.changes:
            path = change.path
            if change.action == "add" and change.name in shipped:
                findings.append(
                    Finding(change.job, f"{shipped[change.name]} (the package's) is stale against the config",
                            f"run `memsched install-units` (it installs {path}, which overrides it)")
                )
            elif change.action == "add":
                findings.append(Finding(change.job, f"{change.name} is not installed", "run `memsched install-units`"))
            elif change.action == "conflict":
                findings.append(Finding(change.job, f"{path} exists but memsched does not own it", "move it away or rename the job"))
            elif change.action == "delete":
                findings.append(Finding(change.job, f"{change.name} is installed but no enabled job needs it", "run `memsched install-units` (it removes it)"))
            elif change.action == "update":
                current = change.old or ""
                known = recorded.get(change.name)
                if known is not None and hashlib.sha256(current.encode()).hexdigest() != known.sha256:
                    findings.append(
                        Finding(change.job, f"{path} was edited by hand", "run `memsched install-units` to restore it (change the config instead)")
                    )
                else:
                    findings.append(Finding(change.job, f"{change.name} is stale against the config", "run `memsched install-units`"))
            elif change.action == "reload":
                findings.append(Finding(change.job, f"{change.name} is not loaded as installed: {change.note}", "run `memsched install-units` (it loads it and restarts the timer)"))
        pauses = registry.pauses()
        for job in config.enabled_jobs.values():
            timer = timer_name(job.name)
            service = service_name(job.name)
            props = manager.properties(timer)
            if props.get("LoadState") != "loaded":
                continue
            enabled = manager.unit_file_state(timer) == "enabled"
            active = props.get("ActiveState") == "active"
            pause = pauses.get(job.name)
            if pause is not None and pause.until_ms is not None:
                # A timed pause leaves the timer enabled on purpose (memsched.ops.pause), so it comes back after a reboot.
                if not enabled:
                    findings.append(Finding(job.name, "paused for a while, but its timer is disabled: it would not come back after a reboot", f"run `memsched pause {job.name} --until ...` again, or `memsched resume {job.name}`"))
                elif not active and not pause.active(now_ms()):
                    findings.append(Finding(job.name, "its timed pause has ended but the job was not resumed (the resume timer failed?)", f"run `memsched resume {job.name}`"))
            elif pause is not None and (enabled or active):
                findings.append(Finding(job.name, "paused, but its timer is enabled or running", f"run `memsched pause {job.name}` again, or `memsched resume {job.name}`"))
            if job.name not in pauses and not enabled:
                findings.append(Finding(job.name, "its timer is disabled but the job is not paused", f"run `memsched resume {job.name}` (or `memsched pause {job.name}` to keep it off)"))
            elif job.name not in pauses and not active:
                findings.append(Finding(job.name, "its timer is enabled but not running", f"run `memsched resume {job.name}`"))
            if manager.properties(service).get("ActiveState") == "failed":
                findings.append(
                    Finding(job.name, f"{service} is in the failed state (its last run failed)", f"see `memsched logs {job.name}`; clear with `systemctl {'--user ' if scope == 'user' else ''}reset-failed {service}`")
                )
    from memsched.ops.verification import verification_findings

    findings.extend(Finding(*found) for found in verification_findings(config, scope))
    if scope == "user" and not os.environ.get("MEMSCHED_SANDBOX"):
        user = pwd.getpwuid(os.getuid()).pw_name
        if not Path(f"/var/lib/systemd/linger/{user}").exists():
            findings.append(
                Finding(None, f"the user manager of {user} has no linger: timers stop when {user} logs out", f"run `loginctl enable-linger {user}`", "warning")
            )
    return findings
