"""Install rendered units as a plan of add / update / reload / delete, applied safely.

Ownership: a unit file is memsched's when it starts with memsched's header
(``# Managed by memsched``). A file without the header is never overwritten or
deleted, whatever the registry remembers about that name: the plan marks it as a
conflict and nothing is applied (``force`` overrides that). The registry records
each installed file with the hash of what was written, so a file edited by hand is
noticed.

Applying converges after a kill at any instant: files are written to a temporary
name, synced and renamed into place; the registry records what was installed only
after the manager has loaded it and the timers were (re)started, so a run killed
before that finds files that are right on disk but not recorded, and plans them as
``reload`` (load and restart them); a unit the manager reports as changed on disk
(``NeedDaemonReload``) is planned the same way; temporary files a killed run left
are removed. Two installs into one directory never interleave (a lock on it).
"""

from __future__ import annotations

import difflib
import fcntl
import hashlib
import os
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from memsched.errors import UsageError
from memsched.registry import InstalledUnit, Registry, now_ms
from memsched.systemd.names import UNIT_PREFIX, job_of_unit
from memsched.systemd.render import HEADER_MARK, RenderedUnit

ACTIONS = ("add", "update", "reload", "delete", "unchanged", "conflict")
NOT_OURS = "exists and is not memsched's (no memsched header)"
TEMP_GLOB = f".{UNIT_PREFIX}*.tmp"  # what write_atomic() leaves behind when killed between write and rename

# Test hook: the install step at which to SIGKILL ourselves (tests/test_install_convergence.py).
KILL_AT_ENV = "MEMSCHED_TEST_KILL_AT"


def kill_point(step: str) -> None:
    """Die at once (SIGKILL, no cleanup) when ``$MEMSCHED_TEST_KILL_AT`` names ``step``: crash tests."""
    if os.environ.get(KILL_AT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


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
        """Return the unified diff of this change ('' when the content does not change)."""
        if self.action in ("unchanged", "conflict", "reload"):
            return ""
        old = (self.old or "").splitlines(keepends=True)
        new = (self.new or "").splitlines(keepends=True)
        label_old = str(self.path) if self.old is not None else "/dev/null"
        label_new = str(self.path) if self.new is not None else "/dev/null"
        return "".join(difflib.unified_diff(old, new, label_old, label_new))


@dataclass
class InstallPlan:
    """What installing (or uninstalling) would do to one unit directory.

    ``stale_temps`` are temporary files a killed install left in the directory.
    """

    scope: str
    unit_dir: Path
    changes: list[Change] = field(default_factory=list)
    stale_temps: list[Path] = field(default_factory=list)

    def of(self, *actions: str) -> list[Change]:
        return [c for c in self.changes if c.action in actions]

    @property
    def pending(self) -> list[Change]:
        return self.of("add", "update", "reload", "delete")

    @property
    def conflicts(self) -> list[Change]:
        return self.of("conflict")

    def diff_text(self) -> str:
        return "".join(c.diff() for c in self.pending)

    def summary(self) -> dict[str, int]:
        return {a: len(self.of(a)) for a in ACTIONS}


def is_owned_text(text: str) -> bool:
    return text.startswith(HEADER_MARK)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        return path.read_bytes().decode("utf-8", errors="replace")


def shipped_elsewhere(names: list[str], unit_dir: Path, search_path: list[str]) -> dict[str, Path]:
    """Return, of ``names``, the memsched unit files found (with memsched's header) in the directories
    the manager reads after ``unit_dir`` — the package's units in /usr/lib/systemd/system, which a
    file in ``unit_dir`` (/etc/systemd/system) would override. Empty when the manager does not read
    ``unit_dir``. The first directory holding a name wins, as for the manager."""
    resolved = [os.path.realpath(p) for p in search_path]
    here = os.path.realpath(unit_dir)
    if here not in resolved:
        return {}
    later = [Path(p) for p in dict.fromkeys(resolved[resolved.index(here) + 1 :])]
    found: dict[str, Path] = {}
    for name in names:
        for directory in later:
            text = _read(directory / name)
            if text is not None:
                if is_owned_text(text):
                    found[name] = directory / name
                break
    return found


def plan_install(
    rendered: list[RenderedUnit],
    unit_dir: Path,
    scope: str,
    recorded: list[InstalledUnit],
    unloaded: set[str] | frozenset[str] = frozenset(),
    force: bool = False,
    shipped: dict[str, Path] | None = None,
) -> InstallPlan:
    """Compare what should be installed with what is on disk, the registry's record and the manager.

    ``unloaded`` names units the manager reports as changed on disk since it loaded them
    (NeedDaemonReload). ``force`` plans files without memsched's header as updates and
    deletions instead of conflicts. ``shipped`` maps unit names to memsched's files in a directory
    the manager reads after ``unit_dir`` (see :func:`shipped_elsewhere`): a unit missing from
    ``unit_dir`` whose shipped file is what the config renders is ``unchanged`` (installed by the
    package, at that path), one whose shipped file differs is an ``add`` that overrides it.
    Returns the plan; touches nothing.
    """
    plan = InstallPlan(scope, unit_dir)
    record = {u.name: u for u in recorded}
    desired = {u.name: u for u in rendered}
    shipped = shipped or {}
    for unit in rendered:
        path = unit_dir / unit.name
        current = _read(path)
        known = record.get(unit.name)
        elsewhere = shipped.get(unit.name)
        if current is None and elsewhere is not None and _read(elsewhere) == unit.content:
            if unit.name in unloaded:
                note = "changed on disk since the manager loaded it (NeedDaemonReload)"
                plan.changes.append(Change("reload", unit.name, elsewhere, unit.job, unit.content, unit.content, note))
            else:
                plan.changes.append(Change("unchanged", unit.name, elsewhere, unit.job, unit.content, unit.content, f"installed by the package at {elsewhere}"))
        elif current is None:
            note = f"overrides {elsewhere}, which the config no longer matches" if elsewhere is not None else ""
            plan.changes.append(Change("add", unit.name, path, unit.job, None, unit.content, note))
        elif not is_owned_text(current):
            if force:
                plan.changes.append(Change("update", unit.name, path, unit.job, current, unit.content, f"{NOT_OURS}; overwritten (--force)"))
            else:
                plan.changes.append(Change("conflict", unit.name, path, unit.job, current, unit.content, NOT_OURS))
        elif current == unit.content:
            if unit.name in unloaded:
                note = "changed on disk since the manager loaded it (NeedDaemonReload)"
                plan.changes.append(Change("reload", unit.name, path, unit.job, current, unit.content, note))
            elif known is None or known.sha256 != unit.sha256:
                note = "written by an install that did not finish: to be loaded and started"
                plan.changes.append(Change("reload", unit.name, path, unit.job, current, unit.content, note))
            else:
                plan.changes.append(Change("unchanged", unit.name, path, unit.job, current, unit.content))
        else:
            note = ""
            if known is not None and sha256(current) != known.sha256:
                note = "edited by hand since memsched installed it"
            plan.changes.append(Change("update", unit.name, path, unit.job, current, unit.content, note))
    # Owned files that are no longer wanted: from the record, and header-marked files an interrupted run left.
    candidates = set(record)
    if unit_dir.is_dir():
        candidates |= {p.name for p in unit_dir.glob(f"{UNIT_PREFIX}*") if p.is_file()}
        plan.stale_temps = sorted(p for p in unit_dir.glob(TEMP_GLOB) if p.is_file())
    for name in sorted(candidates - set(desired)):
        path = unit_dir / name
        current = _read(path)
        if current is not None and not is_owned_text(current):
            if name not in record:
                continue  # somebody else's file that happens to share our prefix: not ours, not wanted
            if not force:
                plan.changes.append(Change("conflict", name, path, job_of_unit(name), current, None, f"{NOT_OURS}; memsched would delete it"))
                continue
        plan.changes.append(Change("delete", name, path, job_of_unit(name), current, None))
    plan.changes.sort(key=lambda c: c.name)
    return plan


def refuse_conflicts(plan: InstallPlan) -> None:
    """Raise :class:`UsageError` (exit 2) naming every file the plan may not touch, if any."""
    if plan.conflicts:
        names = ", ".join(str(c.path) for c in plan.conflicts)
        raise UsageError(
            f"refusing to overwrite or delete unit files memsched does not own (no memsched header): {names} "
            "(move them away or rename the job; --force replaces them)"
        )


class DirectoryLock:
    """An exclusive flock on the unit directory itself, so two installs never interleave (no lock file left behind)."""

    def __init__(self, unit_dir: Path):
        self.unit_dir = unit_dir
        self._fd: int | None = None

    def __enter__(self) -> DirectoryLock:
        self.unit_dir.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.unit_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock; so does the process dying
            self._fd = None


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
        kill_point("temp-written")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temps(plan: InstallPlan) -> list[Path]:
    """Delete the temporary files a killed install left (call with the directory lock held); return them."""
    removed = []
    for path in plan.stale_temps:
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


def write_files(plan: InstallPlan) -> None:
    """Write added and updated files (atomically, each)."""
    for change in plan.of("add", "update"):
        assert change.new is not None
        write_atomic(change.path, change.new)
        kill_point("file-written")


def remove_files(plan: InstallPlan) -> None:
    """Delete the files the plan deletes, and any enablement links memsched left."""
    for change in plan.of("delete"):
        try:
            change.path.unlink()
        except FileNotFoundError:
            pass
        for link in plan.unit_dir.glob(f"*.wants/{change.name}"):
            if link.is_symlink():
                link.unlink()
    if plan.of("delete") and plan.unit_dir.is_dir():
        _sync_dir(plan.unit_dir)


def record_plan(plan: InstallPlan, registry: Registry, config_label: str | None) -> None:
    """Record every unit the plan leaves installed as memsched's, and forget the deleted ones.

    Called last, once the manager has loaded the files: a unit on disk but not recorded is
    what an interrupted install leaves, and the next plan loads it (``reload``).
    """
    installed = [
        InstalledUnit(str(plan.unit_dir), c.name, c.job, sha256(c.new), plan.scope, config_label, now_ms())
        for c in plan.of("add", "update", "reload", "unchanged")
        if c.new is not None and c.path.parent == plan.unit_dir  # the package's own files are not ours to record
    ]
    registry.record_installed(installed)
    registry.forget_installed(plan.unit_dir, [c.name for c in plan.of("delete")])
