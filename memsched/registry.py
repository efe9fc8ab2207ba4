"""The run registry: memsched's durable record of runs, skips, pauses and installed units.

Its own SQLite file under the state directory (never inside the memory store,
which may belong to another program). Jobs are separate processes, so it runs
in WAL mode with a busy timeout and every write is one short transaction.

Counting follows the original registry's fields but fixes its defects: a
skipped slot is a skip, never a run; runs are counted from records that
survive restarts; pauses survive restarts too.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from memsched.errors import MemschedError
from memsched.proc import pid_alive

RESULTS = ("running", "success", "failed", "skipped", "interrupted")

_MIGRATIONS = [
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        instance TEXT,
        invocation_id TEXT,
        trigger TEXT NOT NULL,
        slot_ms INTEGER,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER,
        duration_ms INTEGER,
        result TEXT NOT NULL,
        reason TEXT,
        exit_code INTEGER,
        pid INTEGER,
        metadata TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX runs_job_started ON runs (job, started_ms);
    CREATE INDEX runs_job_result ON runs (job, result);
    CREATE TABLE pauses (
        job TEXT PRIMARY KEY,
        paused_ms INTEGER NOT NULL,
        paused_by TEXT NOT NULL,
        reason TEXT
    );
    CREATE TABLE installed_units (
        unit_dir TEXT NOT NULL,
        name TEXT NOT NULL,
        job TEXT,
        sha256 TEXT NOT NULL,
        scope TEXT NOT NULL,
        config TEXT,
        installed_ms INTEGER NOT NULL,
        PRIMARY KEY (unit_dir, name)
    );
    """,
]


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class RunRecord:
    """One run (or skipped slot) of a job."""

    id: int
    job: str
    instance: str | None
    invocation_id: str | None
    trigger: str
    slot_ms: int | None
    started_ms: int
    ended_ms: int | None
    duration_ms: int | None
    result: str
    reason: str | None
    exit_code: int | None
    pid: int | None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class JobCounts:
    """Per-job counters: successful runs, failed runs, skipped slots."""

    runs: int = 0
    errors: int = 0
    skips: int = 0
    interrupted: int = 0


@dataclass
class PauseRecord:
    job: str
    paused_ms: int
    paused_by: str
    reason: str | None


@dataclass
class InstalledUnit:
    unit_dir: str
    name: str
    job: str | None
    sha256: str
    scope: str
    config: str | None
    installed_ms: int


class Registry:
    """Handle on the registry database. Construction does no I/O; call :meth:`open`."""

    def __init__(self, path: Path | str, busy_timeout_ms: int = 15_000):
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._db: sqlite3.Connection | None = None

    # ------------------------------------------------------------ lifecycle

    def open(self, create: bool = True) -> Registry:
        """Open (creating and migrating the file when ``create``; else an empty registry if none exists) and return self.

        Raises :class:`MemschedError` when the file cannot be opened.
        """
        target = str(self.path)
        if not create and not self.path.exists():
            target = ":memory:"  # nothing recorded yet: read an empty registry, create no file
        try:
            if target != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(target, timeout=self.busy_timeout_ms / 1000, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise MemschedError(f"cannot open the run registry {self.path}: {exc}") from None
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        if target != ":memory:" and db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        self._db = db
        self._migrate()
        return self

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Registry:
        return self if self._db is not None else self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("Registry.open() was not called")
        return self._db

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                if self.db.execute("PRAGMA user_version").fetchone()[0] < number:
                    for statement in script.split(";"):
                        if statement.strip():
                            self.db.execute(statement)
                    self.db.execute(f"PRAGMA user_version = {number}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------ runs

    def start_run(
        self,
        job: str,
        *,
        trigger: str,
        invocation_id: str | None = None,
        instance: str | None = None,
        slot_ms: int | None = None,
        started_ms: int | None = None,
        pid: int | None = None,
    ) -> int:
        """Record that a run started; return its id."""
        cur = self.db.execute(
            "INSERT INTO runs (job, instance, invocation_id, trigger, slot_ms, started_ms, result, pid) "
            "VALUES (?, ?, ?, ?, ?, ?, 'running', ?)",
            (job, instance, invocation_id, trigger, slot_ms, started_ms or now_ms(), pid if pid is not None else os.getpid()),
        )
        return int(cur.lastrowid)

    def finish_run(
        self,
        run_id: int,
        *,
        result: str,
        exit_code: int,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
        ended_ms: int | None = None,
    ) -> None:
        """Record how a run ended. Its duration runs from its recorded start, jitter excluded."""
        if result not in RESULTS:
            raise ValueError(f"unknown result {result!r}")
        ended = ended_ms or now_ms()
        self.db.execute(
            "UPDATE runs SET ended_ms = ?, duration_ms = ? - started_ms, result = ?, reason = ?, exit_code = ?, metadata = ? WHERE id = ?",
            (ended, ended, result, reason, exit_code, json.dumps(metadata or {}, sort_keys=True), run_id),
        )

    def record_skip(
        self,
        job: str,
        *,
        reason: str,
        trigger: str = "timer",
        slot_ms: int | None = None,
        invocation_id: str | None = None,
        at_ms: int | None = None,
    ) -> int:
        """Record a slot that was skipped (not a run); return its id."""
        at = at_ms or now_ms()
        cur = self.db.execute(
            "INSERT INTO runs (job, invocation_id, trigger, slot_ms, started_ms, ended_ms, duration_ms, result, reason) "
            "VALUES (?, ?, ?, ?, ?, ?, 0, 'skipped', ?)",
            (job, invocation_id, trigger, slot_ms, at, at, reason),
        )
        return int(cur.lastrowid)

    def close_dead_runs(self, job: str, alive: callable = None) -> int:  # type: ignore[valid-type]
        """Mark 'running' records whose process is gone as failed (killed without recording an end).

        Returns how many were closed.
        """
        alive = alive or pid_alive
        closed = 0
        for row in self.db.execute("SELECT id, pid FROM runs WHERE job = ? AND result = 'running'", (job,)).fetchall():
            if row["pid"] and alive(row["pid"]):
                continue
            self.db.execute(
                "UPDATE runs SET result = 'failed', reason = 'the run ended without recording a result (killed?)', "
                "ended_ms = COALESCE(ended_ms, ?) WHERE id = ? AND result = 'running'",
                (now_ms(), row["id"]),
            )
            closed += 1
        return closed

    def get_run(self, run_id: int) -> RunRecord | None:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _run(row) if row else None

    def history(self, job: str, limit: int = 20, include_skips: bool = True) -> list[RunRecord]:
        """Return the job's latest records, newest first."""
        where = "" if include_skips else "AND result != 'skipped'"
        rows = self.db.execute(
            f"SELECT * FROM runs WHERE job = ? {where} ORDER BY started_ms DESC, id DESC LIMIT ?", (job, limit)
        ).fetchall()
        return [_run(r) for r in rows]

    def last_runs(self) -> dict[str, RunRecord]:
        """Return each job's latest actual run (skips excluded), in one query."""
        rows = self.db.execute(
            "SELECT r.* FROM runs r JOIN (SELECT job, MAX(id) AS id FROM runs WHERE result != 'skipped' GROUP BY job) m "
            "ON r.id = m.id"
        ).fetchall()
        return {r["job"]: _run(r) for r in rows}

    def last_successes(self) -> dict[str, int]:
        """Return each job's latest successful run start (ms), in one query."""
        return {r[0]: r[1] for r in self.db.execute("SELECT job, MAX(started_ms) FROM runs WHERE result = 'success' GROUP BY job")}

    def last_skips(self) -> dict[str, RunRecord]:
        """Return each job's latest skipped slot, in one query."""
        rows = self.db.execute(
            "SELECT r.* FROM runs r JOIN (SELECT job, MAX(id) AS id FROM runs WHERE result = 'skipped' GROUP BY job) m "
            "ON r.id = m.id"
        ).fetchall()
        return {r["job"]: _run(r) for r in rows}

    def find_run(self, job: str, invocation_id: str) -> RunRecord | None:
        """Return the run a unit invocation recorded, if any."""
        row = self.db.execute(
            "SELECT * FROM runs WHERE job = ? AND invocation_id = ? AND result != 'skipped' ORDER BY id DESC LIMIT 1",
            (job, invocation_id),
        ).fetchone()
        return _run(row) if row else None

    def last_finished(self, job: str) -> RunRecord | None:
        """Return the job's latest run that recorded an end (any result but skipped)."""
        row = self.db.execute(
            "SELECT * FROM runs WHERE job = ? AND result NOT IN ('skipped', 'running') ORDER BY id DESC LIMIT 1", (job,)
        ).fetchone()
        return _run(row) if row else None

    def counts(self) -> dict[str, JobCounts]:
        """Return per-job counters in one query."""
        out: dict[str, JobCounts] = {}
        for row in self.db.execute("SELECT job, result, COUNT(*) AS n FROM runs GROUP BY job, result"):
            c = out.setdefault(row["job"], JobCounts())
            if row["result"] == "success":
                c.runs = row["n"]
            elif row["result"] == "failed":
                c.errors = row["n"]
            elif row["result"] == "skipped":
                c.skips = row["n"]
            elif row["result"] == "interrupted":
                c.interrupted = row["n"]
        return out

    # ------------------------------------------------------------ pauses

    def pause(self, job: str, paused_by: str, reason: str | None = None) -> PauseRecord:
        at = now_ms()
        self.db.execute(
            "INSERT INTO pauses (job, paused_ms, paused_by, reason) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(job) DO UPDATE SET paused_ms = excluded.paused_ms, paused_by = excluded.paused_by, reason = excluded.reason",
            (job, at, paused_by, reason),
        )
        return PauseRecord(job, at, paused_by, reason)

    def resume(self, job: str) -> bool:
        """Forget the job's pause; return whether it was paused."""
        return self.db.execute("DELETE FROM pauses WHERE job = ?", (job,)).rowcount > 0

    def pauses(self) -> dict[str, PauseRecord]:
        return {r["job"]: PauseRecord(r["job"], r["paused_ms"], r["paused_by"], r["reason"]) for r in self.db.execute("SELECT * FROM pauses")}

    # ------------------------------------------------------------ installed units

    def installed_units(self, unit_dir: Path | str | None = None) -> list[InstalledUnit]:
        if unit_dir is None:
            rows = self.db.execute("SELECT * FROM installed_units ORDER BY unit_dir, name")
        else:
            rows = self.db.execute("SELECT * FROM installed_units WHERE unit_dir = ? ORDER BY name", (str(unit_dir),))
        return [InstalledUnit(**dict(r)) for r in rows]

    def record_installed(self, units: list[InstalledUnit]) -> None:
        with self.transaction():
            for u in units:
                self.db.execute(
                    "INSERT INTO installed_units (unit_dir, name, job, sha256, scope, config, installed_ms) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(unit_dir, name) DO UPDATE SET job = excluded.job, sha256 = excluded.sha256, scope = excluded.scope, "
                    "config = excluded.config, installed_ms = excluded.installed_ms",
                    (u.unit_dir, u.name, u.job, u.sha256, u.scope, u.config, u.installed_ms),
                )

    def forget_installed(self, unit_dir: Path | str, names: list[str]) -> None:
        with self.transaction():
            for name in names:
                self.db.execute("DELETE FROM installed_units WHERE unit_dir = ? AND name = ?", (str(unit_dir), name))

    def transaction(self) -> _Transaction:
        return _Transaction(self.db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _run(row: sqlite3.Row) -> RunRecord:
    data = dict(row)
    data["metadata"] = json.loads(data.get("metadata") or "{}")
    return RunRecord(**data)


def open_registry(config: object, scope: str, env: dict[str, str] | None = None, create: bool = True) -> Registry:
    """Open the registry the config names (``[registry] path``), or the scope's default.

    With ``create`` False a missing registry reads as empty and no file is created.
    """
    from memsched.paths import registry_path

    configured = ""
    settings = getattr(config, "settings", {}) or {}
    if "registry" in settings:
        configured = str(settings["registry"].get("path") or "")
    return Registry(Path(configured) if configured else registry_path(scope, env)).open(create=create)
