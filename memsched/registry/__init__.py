"""The run registry: memsched's durable record of runs, slots not run, run requests, pauses and installed units.

Its own SQLite file under the state directory (never inside the memory store,
which may belong to another program). Jobs are separate processes, so it runs
in WAL mode with a busy timeout and every write is one short transaction.
The start of `memsched exec` opens it before the job's command starts, so this
module imports only what that path needs (sqlite3, os, time; json lazily).

Records (table ``runs``) — every calendar slot of a job ends up in one of them:

* a **run**: ``result`` is ``running``, then ``success``, ``failed`` or
  ``interrupted``; ``trigger`` says what started it (``timer`` with the
  ``slot_ms`` it ran for, ``manual``, ``queued``, ``unknown``) and ``actor`` who
  asked for a manual run.
* a **skipped** slot (``result = "skipped"``): memsched decided not to run it,
  as the job's policy or a person asked. ``reason_code`` is one of
  :data:`SKIP_CODES`.
* a **lost** slot (``result = "lost"``): it should have run and did not (systemd
  refused the start, the machine was off). ``reason_code`` is one of
  :data:`LOST_CODES`.

A skipped or lost record may stand for several consecutive slots: ``slot_ms``
is the first, ``slot_end_ms`` the last and ``slot_count`` how many (an
hour-long outage of a per-second job is one row). ``reason`` is the sentence a
person reads. Counters (:meth:`Registry.counts`) add up ``slot_count``.

The API for slot records, which alerting and timed skips build on:

* :meth:`Registry.record_skip` / :meth:`Registry.record_lost` — one record,
  with a reason code, for one slot or a run of slots; ``actor`` says who asked
  (e.g. a manual skip).
* :meth:`Registry.counts`, :meth:`Registry.slot_counts` (per reason code),
  :meth:`Registry.last_skips`, :meth:`Registry.history`.
* Slot accounting (table ``job_slots``): :meth:`Registry.slot_state`,
  :meth:`Registry.mark_accounted` (every slot up to a time is accounted for),
  :meth:`Registry.expect_refire` / :meth:`Registry.take_refire` (the start
  systemd < 257 makes right after a long run, which ``overlap = "skip"`` refuses).

Timed pauses (``pauses.until_ms``) and skip windows (table ``skip_windows``,
:mod:`memsched.registry.windows`): slots a person asked not to run, checked
by every timer start (:meth:`Registry.decide_slot`).

Run requests (table ``run_requests``): a manual run asked through memsched
(`memsched run`, gRPC RunJob) is a request first; the run that serves it claims
it (:meth:`Registry.claim_requests`), or it is refused with a reason
(:meth:`Registry.resolve_requests`), so a caller waiting for it learns exactly
what happened to *its* request.

Counting follows the original registry's fields but fixes its defects: a
skipped slot is a skip, never a run; runs are counted from records that
survive restarts; pauses survive restarts too.
"""

from __future__ import annotations

import os
import sqlite3

from memsched.errors import MemschedError, PermissionDenied
from memsched.statefile import ensure_directory, prepare_database
from memsched.proc import pid_alive
from memsched.registry.records import InstalledUnit, JobCounts, PauseRecord, RunRecord, RunRequest, SkipWindow, SlotState
from memsched.registry.schema import MIGRATIONS, LOST_CODES, NOT_RUNS, REQUEST_STATES, RESULTS, SKIP_CODES
from memsched.registry.slots import SlotsMixin
from memsched.registry.windows import WindowsMixin
from memsched.registry.times import now_ms

__all__ = [
    "InstalledUnit", "JobCounts", "LOST_CODES", "NOT_RUNS", "PauseRecord", "REQUEST_STATES", "RESULTS", "Registry",
    "RunRecord", "RunRequest", "SKIP_CODES", "SkipWindow", "SlotState", "now_ms", "open_registry", "registry_location",
]


class Registry(SlotsMixin, WindowsMixin):
    """Handle on the registry database. Construction does no I/O; call :meth:`open`."""

    def __init__(self, path: object, busy_timeout_ms: int = 15_000):
        self.path = os.fspath(path)  # type: ignore[call-overload]
        self.busy_timeout_ms = busy_timeout_ms
        self._db: sqlite3.Connection | None = None

    # ------------------------------------------------------------ lifecycle

    def open(self, create: bool = True) -> Registry:
        """Open (creating and migrating the file when ``create``; else an empty registry if none exists) and return self.

        Raises :class:`MemschedError` when the file cannot be opened or is not a registry
        (corrupt, not SQLite, unreadable).
        """
        target = self.path
        if not create and not self._exists():
            target = ":memory:"  # nothing recorded yet: read an empty registry, create no file
        try:
            if target != ":memory:":
                ensure_directory(os.path.dirname(self.path) or ".")
                prepare_database(self.path)  # root in the service user's directory: the file stays the user's
            db = sqlite3.connect(target, timeout=self.busy_timeout_ms / 1000, isolation_level=None)
        except (PermissionError, PermissionDenied):
            raise PermissionDenied(_denied("open", self.path)) from None
        except (OSError, sqlite3.Error) as exc:
            if target != ":memory:" and not _may_use(self.path):
                raise PermissionDenied(_denied("open", self.path)) from None
            raise MemschedError(f"cannot open the run registry {self.path}: {exc}") from None
        try:
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            if target != ":memory:" and db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            self._db = db
            self._migrate()
        except sqlite3.Error as exc:
            db.close()
            self._db = None
            raise MemschedError(f"cannot use the run registry {self.path}: {exc}") from None
        return self

    def _exists(self) -> bool:
        """True when the file exists; raises :class:`PermissionDenied` when its directory may not be searched.

        (os.path.exists says False then, and a registry we may not read must not read as empty.)
        """
        try:
            os.stat(self.path)
            return True
        except (FileNotFoundError, NotADirectoryError):
            return False
        except PermissionError:
            raise PermissionDenied(_denied("read", self.path)) from None

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
        if version > len(MIGRATIONS):
            raise MemschedError(
                f"the run registry {self.path} is from a newer memsched (schema {version}, this one knows {len(MIGRATIONS)})"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
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

    def transaction(self) -> _Transaction:
        """Return a context manager running its block in one write transaction (BEGIN IMMEDIATE)."""
        return _Transaction(self.db)

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
        actor: str | None = None,
    ) -> int:
        """Record that a run started; return its id."""
        cur = self.db.execute(
            "INSERT INTO runs (job, instance, invocation_id, trigger, slot_ms, started_ms, result, pid, actor) "
            "VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?)",
            (job, instance, invocation_id, trigger, slot_ms, started_ms or now_ms(), pid if pid is not None else os.getpid(), actor),
        )
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def set_trigger(self, run_id: int, trigger: str, slot_ms: int | None, actor: str | None = None) -> None:
        """Record what started a run once it is known (it is asked after the work has started)."""
        self.db.execute(
            "UPDATE runs SET trigger = ?, slot_ms = ?, actor = COALESCE(?, actor) WHERE id = ?", (trigger, slot_ms, actor, run_id)
        )

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
        import json

        if result not in RESULTS or result in NOT_RUNS:
            raise ValueError(f"unknown run result {result!r}")
        ended = ended_ms or now_ms()
        self.db.execute(
            "UPDATE runs SET ended_ms = ?, duration_ms = ? - started_ms, result = ?, reason = ?, exit_code = ?, metadata = ? WHERE id = ?",
            (ended, ended, result, reason, exit_code, json.dumps(metadata or {}, sort_keys=True), run_id),
        )

    def close_dead_runs(self, job: str, alive: object = None) -> int:
        """Mark 'running' records whose process is gone as failed (killed without recording an end).

        ``alive(pid) -> bool`` decides (default: the pid exists and is not a zombie).
        Returns how many were closed.
        """
        alive = alive or pid_alive
        closed = 0
        for row in self.db.execute("SELECT id, pid FROM runs WHERE job = ? AND result = 'running'", (job,)).fetchall():
            if row["pid"] and alive(row["pid"]):  # type: ignore[operator]
                continue
            self.db.execute(
                "UPDATE runs SET result = 'failed', reason = 'the run ended without recording a result (killed?)', "
                "ended_ms = COALESCE(ended_ms, ?), duration_ms = COALESCE(ended_ms, ?) - started_ms "
                "WHERE id = ? AND result = 'running'",
                (now_ms(), now_ms(), row["id"]),
            )
            closed += 1
        return closed

    def get_run(self, run_id: int) -> RunRecord | None:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _run(row) if row else None

    def history(self, job: str, limit: int = 20, include_skips: bool = True) -> list[RunRecord]:
        """Return the job's latest records (runs, and unless ``include_skips`` is False skipped and lost slots), newest first."""
        where = "" if include_skips else "AND result NOT IN ('skipped', 'lost')"
        rows = self.db.execute(
            f"SELECT * FROM runs WHERE job = ? {where} ORDER BY started_ms DESC, id DESC LIMIT ?", (job, limit)
        ).fetchall()
        return [_run(r) for r in rows]

    def last_runs(self) -> dict[str, RunRecord]:
        """Return each job's latest actual run (skipped and lost slots excluded), in one query."""
        rows = self.db.execute(
            "SELECT r.* FROM runs r JOIN (SELECT job, MAX(id) AS id FROM runs WHERE result NOT IN ('skipped', 'lost') GROUP BY job) m "
            "ON r.id = m.id"
        ).fetchall()
        return {r["job"]: _run(r) for r in rows}

    def last_successes(self) -> dict[str, int]:
        """Return each job's latest successful run start (ms), in one query."""
        return {r[0]: r[1] for r in self.db.execute("SELECT job, MAX(started_ms) FROM runs WHERE result = 'success' GROUP BY job")}

    def first_known(self) -> dict[str, int]:
        """Return when memsched first knew each job (ms): its earliest record or the install of its units, in one query."""
        rows = self.db.execute(
            "SELECT job, MIN(at) FROM (SELECT job, MIN(started_ms) AS at FROM runs GROUP BY job "
            "UNION ALL SELECT job, MIN(installed_ms) AS at FROM installed_units WHERE job IS NOT NULL GROUP BY job) GROUP BY job"
        )
        return {r[0]: r[1] for r in rows}

    def last_skips(self) -> dict[str, RunRecord]:
        """Return each job's latest record of a slot not run (skipped or lost), in one query."""
        rows = self.db.execute(
            "SELECT r.* FROM runs r JOIN (SELECT job, MAX(id) AS id FROM runs WHERE result IN ('skipped', 'lost') GROUP BY job) m "
            "ON r.id = m.id"
        ).fetchall()
        return {r["job"]: _run(r) for r in rows}

    def find_run(self, job: str, invocation_id: str) -> RunRecord | None:
        """Return the latest run a unit invocation recorded, if any."""
        row = self.db.execute(
            "SELECT * FROM runs WHERE job = ? AND invocation_id = ? AND result NOT IN ('skipped', 'lost') ORDER BY id DESC LIMIT 1",
            (job, invocation_id),
        ).fetchone()
        return _run(row) if row else None

    def last_finished(self, job: str) -> RunRecord | None:
        """Return the job's latest run that recorded an end (any result but running, skipped or lost)."""
        row = self.db.execute(
            "SELECT * FROM runs WHERE job = ? AND result NOT IN ('skipped', 'lost', 'running') ORDER BY id DESC LIMIT 1", (job,)
        ).fetchone()
        return _run(row) if row else None

    def running(self, job: str) -> list[RunRecord]:
        """Return the job's records still marked running, oldest first."""
        return [_run(r) for r in self.db.execute("SELECT * FROM runs WHERE job = ? AND result = 'running' ORDER BY id", (job,))]

    def counts(self) -> dict[str, JobCounts]:
        """Return per-job counters in one query (skips and lost count slots: a record may stand for several)."""
        out: dict[str, JobCounts] = {}
        for row in self.db.execute("SELECT job, result, COUNT(*) AS n, SUM(slot_count) AS slots FROM runs GROUP BY job, result"):
            c = out.setdefault(row["job"], JobCounts())
            if row["result"] == "success":
                c.runs = row["n"]
            elif row["result"] == "failed":
                c.errors = row["n"]
            elif row["result"] == "skipped":
                c.skips = row["slots"]
            elif row["result"] == "lost":
                c.lost = row["slots"]
            elif row["result"] == "interrupted":
                c.interrupted = row["n"]
        return out

    # ------------------------------------------------------------ pauses

    def pause(self, job: str, paused_by: str, reason: str | None = None, until_ms: int | None = None) -> PauseRecord:
        """Record the job's pause (replacing an earlier one); ``until_ms`` makes it a timed pause. Returns the record."""
        at = now_ms()
        self.db.execute(
            "INSERT INTO pauses (job, paused_ms, paused_by, reason, until_ms) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(job) DO UPDATE SET paused_ms = excluded.paused_ms, paused_by = excluded.paused_by, "
            "reason = excluded.reason, until_ms = excluded.until_ms",
            (job, at, paused_by, reason, until_ms),
        )
        return PauseRecord(job, at, paused_by, reason, until_ms)

    def resume(self, job: str) -> bool:
        """Forget the job's pause; return whether it was paused."""
        return self.db.execute("DELETE FROM pauses WHERE job = ?", (job,)).rowcount > 0

    def pauses(self) -> dict[str, PauseRecord]:
        """Return every recorded pause by job (a timed pause whose end has passed included: see :meth:`PauseRecord.active`)."""
        return {
            r["job"]: PauseRecord(r["job"], r["paused_ms"], r["paused_by"], r["reason"], r["until_ms"])
            for r in self.db.execute("SELECT * FROM pauses")
        }

    def end_timed_pause(self, job: str, at_ms: int) -> PauseRecord | None:
        """Forget the job's timed pause if it has ended by ``at_ms``; return the record forgotten (None: none ended).

        Atomic: of two processes ending the same pause, one gets the record.
        """
        with self.transaction():
            row = self.db.execute("SELECT * FROM pauses WHERE job = ? AND until_ms IS NOT NULL AND until_ms <= ?", (job, at_ms)).fetchone()
            if row is None:
                return None
            self.db.execute("DELETE FROM pauses WHERE job = ?", (job,))
        return PauseRecord(row["job"], row["paused_ms"], row["paused_by"], row["reason"], row["until_ms"])

    # ------------------------------------------------------------ installed units

    def installed_units(self, unit_dir: object = None) -> list[InstalledUnit]:
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

    def forget_installed(self, unit_dir: object, names: list[str]) -> None:
        with self.transaction():
            for name in names:
                self.db.execute("DELETE FROM installed_units WHERE unit_dir = ? AND name = ?", (str(unit_dir), name))


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _run(row: sqlite3.Row) -> RunRecord:
    import json

    data = dict(row)
    data["metadata"] = json.loads(data.get("metadata") or "{}")
    return RunRecord(**{k: v for k, v in data.items() if k in RunRecord.__slots__})


def _denied(verb: str, path: str) -> str:
    """Return the message for a registry we may not use: the path, whose it is, what to do."""
    owner = ""
    try:
        import pwd

        uid = os.stat(os.path.dirname(path) or ".").st_uid
        owner = f" (its directory belongs to {pwd.getpwuid(uid).pw_name})"
    except (OSError, KeyError):
        pass
    return f"cannot {verb} the run registry {path}: permission denied{owner}; run the command as root (sudo) or as that user"


def _may_use(path: str) -> bool:
    """Whether we may read and write ``path`` (or create it in its directory)."""
    if os.path.exists(path):
        return os.access(path, os.R_OK | os.W_OK)
    directory = os.path.dirname(path) or "."
    return os.access(directory, os.W_OK | os.X_OK)


def registry_location(config: object, scope: str, env: dict[str, str] | None = None) -> str:
    """Return the registry path the config names (``[registry] path``), or the scope's default."""
    settings = getattr(config, "settings", None) or {}
    configured = str(settings["registry"].get("path") or "") if "registry" in settings else ""
    if configured:
        return configured
    from memsched.locate import state_dir

    return os.path.join(state_dir(scope, env), "registry.db")


def open_registry(config: object, scope: str, env: dict[str, str] | None = None, create: bool = True) -> Registry:
    """Open the registry the config names (``[registry] path``), or the scope's default.

    With ``create`` False a missing registry reads as empty and no file is created.
    Raises :class:`MemschedError` when it cannot be opened.
    """
    return Registry(registry_location(config, scope, env)).open(create=create)
