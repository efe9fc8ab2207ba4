"""Install rendered units as a plan of add / update / delete, applied safely.

Ownership: a unit file is memsched's when it starts with memsched's header
(``# Managed by memsched``); the registry also records each installed file with
the hash of what was written, so a file edited by hand is noticed. Files
without the header are never touched: the plan marks them as conflicts and
nothing is applied.

Applying is safe to interrupt: files are written to a temporary name, synced
and renamed into place, and every step can be repeated (the next run plans
from what is on disk).
"""

from __future__ import annotations

import difflib
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from memsched.registry import InstalledUnit, Registry, now_ms
from memsched.systemd.names import UNIT_PREFIX, job_of_unit
from memsched.systemd.render import HEADER_MARK, RenderedUnit

ACTIONS = ("add", "update", "delete", "unchanged", "conflict")


@dataclass
class Change:
    """One unit file's planned change."""

    action: str
    name: str
    path: Path
    job: str | None
    old: str | None = None
    new: str | None = None
    note: str = ""

    def diff(self) -> str:
        """Return the unified diff of this change ('' when unchanged)."""
        if self.action in ("unchanged", "conflict"):
            return ""
        old = (self.old or "").splitlines(keepends=True)
        new = (self.new or "").splitlines(keepends=True)
        label_old = str(self.path) if self.old is not None else "/dev/null"
        label_new = str(self.path) if self.new is not None else "/dev/null"
        return "".join(difflib.unified_diff(old, new, label_old, label_new))


@dataclass
class InstallPlan:
    """What installing (or uninstalling) would do to one unit directory."""

    scope: str
    unit_dir: Path
    changes: list[Change] = field(default_factory=list)

    def of(self, *actions: str) -> list[Change]:
        return [c for c in self.changes if c.action in actions]

    @property
    def pending(self) -> list[Change]:
        return self.of("add", "update", "delete")

    @property
    def conflicts(self) -> list[Change]:
        return self.of("conflict")

    def diff_text(self) -> str:
        return "".join(c.diff() for c in self.pending)

    def summary(self) -> dict[str, int]:
        return {a: len(self.of(a)) for a in ACTIONS}


def is_owned_text(text: str) -> bool:
    return text.startswith(HEADER_MARK)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        return path.read_bytes().decode("utf-8", errors="replace")


def plan_install(rendered: list[RenderedUnit], unit_dir: Path, scope: str, recorded: list[InstalledUnit]) -> InstallPlan:
    """Compare what should be installed with what is on disk; return the plan."""
    plan = InstallPlan(scope, unit_dir)
    record = {u.name: u for u in recorded}
    desired = {u.name: u for u in rendered}
    for unit in rendered:
        path = unit_dir / unit.name
        current = _read(path)
        if current is None:
            plan.changes.append(Change("add", unit.name, path, unit.job, None, unit.content))
        elif not is_owned_text(current) and unit.name not in record:
            plan.changes.append(
                Change("conflict", unit.name, path, unit.job, current, unit.content, "exists and is not memsched's (no memsched header)")
            )
        elif current == unit.content:
            plan.changes.append(Change("unchanged", unit.name, path, unit.job, current, unit.content))
        else:
            note = ""
            known = record.get(unit.name)
            if known is not None and hashlib.sha256(current.encode()).hexdigest() != known.sha256:
                note = "edited by hand since memsched installed it"
            plan.changes.append(Change("update", unit.name, path, unit.job, current, unit.content, note))
    # Owned files that are no longer wanted: from the record, and header-marked files an interrupted run left.
    candidates = set(record)
    if unit_dir.is_dir():
        candidates |= {p.name for p in unit_dir.glob(f"{UNIT_PREFIX}*") if p.is_file()}
    for name in sorted(candidates - set(desired)):
        path = unit_dir / name
        current = _read(path)
        if current is not None and not is_owned_text(current) and name not in record:
            continue  # somebody else's file that happens to share our prefix
        plan.changes.append(Change("delete", name, path, job_of_unit(name), current, None))
    plan.changes.sort(key=lambda c: c.name)
    return plan


def write_atomic(path: Path, content: str, mode: int = 0o644) -> None:
    """Write ``content`` to ``path`` through a synced temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_files(plan: InstallPlan, registry: Registry, config_label: str | None) -> None:
    """Write added and updated files, then record them as owned."""
    written = []
    for change in plan.of("add", "update"):
        assert change.new is not None
        write_atomic(change.path, change.new)
        written.append(
            InstalledUnit(
                str(plan.unit_dir),
                change.name,
                change.job,
                hashlib.sha256(change.new.encode()).hexdigest(),
                plan.scope,
                config_label,
                now_ms(),
            )
        )
    # Unchanged files are recorded too, so the record stays complete after an interrupted run.
    for change in plan.of("unchanged"):
        assert change.new is not None
        written.append(
            InstalledUnit(str(plan.unit_dir), change.name, change.job, hashlib.sha256(change.new.encode()).hexdigest(), plan.scope, config_label, now_ms())
        )
    registry.record_installed(written)


def remove_files(plan: InstallPlan, registry: Registry) -> None:
    """Delete the files the plan deletes (and any enablement links memsched left), then forget them."""
    for change in plan.of("delete"):
        try:
            change.path.unlink()
        except FileNotFoundError:
            pass
        for link in plan.unit_dir.glob(f"*.wants/{change.name}"):
            if link.is_symlink():
                link.unlink()
    registry.forget_installed(plan.unit_dir, [c.name for c in plan.of("delete")])
