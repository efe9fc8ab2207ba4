"""Verifying the SQLite store: the whole of it on its own cadence, and what changed every week.

Two checks, two costs (measured figures: docs/store.md, "Verification"):

* :func:`run_verification` (job kind ``verify``; the default job ``store_verify`` runs it
  monthly): ``PRAGMA integrity_check(TABLE)`` of every table with its indexes, one table
  at a time. The whole store is read, in b-tree order (random I/O), so it costs what
  the store weighs; it is resumable: after each table the cursor (the next table) is
  committed, and a run stopped or killed part-way resumes at the table it was in.
  A pass that finds a problem records it and raises :class:`IntegrityError` (the run
  fails, the unit is marked failed, ``OnFailure=`` fires), and the next run starts a
  new pass.
* :func:`check_recent` (a step of the weekly compaction): the events added since the
  last check (``seq`` past a cursor) are read whole, through the table and through
  every index of it, and each must be found in each index. It reads only the pages
  holding those rows, so it costs what was added, not what the store weighs.

State lives in the store's ``store_meta`` table (:data:`KEYS`), so ``doctor`` and
``status`` read the same answer whichever process wrote it, and every cursor update
is its own small transaction: a SIGKILL leaves the old cursor or the new one.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from memsched.store.models import StoreError
from memsched.store.sqlite import SqliteStore  # light since the store package loads its engine lazily

# store_meta keys
PASS_STARTED = "verify.pass_started_ms"  # when the pass in progress began (absent: none in progress)
PASS_SEQ = "verify.pass_seq"  # largest events.seq when it began: the pass covers the events up to it
PASS_NEXT = "verify.pass_next"  # the next table to check
PASS_SECONDS = "verify.pass_seconds"  # check time spent on the pass so far, over all its runs
PASS_RUNS = "verify.pass_runs"  # runs the pass has taken so far
LAST_FULL = "verify.last_full_ms"  # when the last complete pass ended
LAST_FULL_STARTED = "verify.last_full_started_ms"
LAST_RESULT = "verify.last_result"  # "ok", or what the last pass found
LAST_SECONDS = "verify.last_seconds"
LAST_RUNS = "verify.last_runs"
RECENT_SEQ = "recent.checked_seq"  # events with seq <= this were checked (by a weekly run or a full pass)
KEYS = (PASS_STARTED, PASS_SEQ, PASS_NEXT, PASS_SECONDS, PASS_RUNS, LAST_FULL, LAST_FULL_STARTED, LAST_RESULT, LAST_SECONDS, LAST_RUNS, RECENT_SEQ)

STOP_POLL_S = 0.1  # how often a running check looks at should_stop()
PROGRESS_REPORT_S = 5.0  # at most one progress report (sd_notify STATUS=, timeout extension) this often


class IntegrityError(StoreError):
    """A verification found problems; ``result`` holds them (SQLite's words)."""

    def __init__(self, path: Path, result: str, what: str = "integrity_check"):
        self.result = result
        super().__init__(f"{path}: {what} failed (restore from a backup, or run sqlite3's .recover):\n  {result}")


@dataclass
class VerificationState:
    """What ``store_meta`` says about verification (times in ms since the epoch; None: never)."""

    last_full_ms: int | None = None
    last_full_started_ms: int | None = None
    last_result: str | None = None
    last_seconds: float | None = None
    last_runs: int | None = None
    pass_started_ms: int | None = None
    pass_next: str | None = None
    pass_seconds: float = 0.0
    recent_checked_seq: int = 0

    def as_dict(self) -> dict[str, object]:
        """Return the state as JSON-ready data (the shape `status --json` and `doctor --json` print)."""
        return {
            "last_full_verification_ms": self.last_full_ms,
            "last_full_verification_started_ms": self.last_full_started_ms,
            "last_result": self.last_result,
            "last_seconds": self.last_seconds,
            "last_runs": self.last_runs,
            "pass_in_progress": None if self.pass_started_ms is None else {"started_ms": self.pass_started_ms, "next_table": self.pass_next, "seconds": self.pass_seconds},
        }


@dataclass
class VerifyResult:
    """What one verification run did."""

    tables_checked: list[str] = field(default_factory=list)
    tables_total: int = 0
    pass_complete: bool = False
    resumed: bool = False
    result: str = "not checked"
    seconds: float = 0.0
    interrupted: bool = False

    def as_metadata(self) -> dict[str, str]:
        """Return the figures as the string map the run registry stores."""
        return {
            "tables_checked": str(len(self.tables_checked)),
            "tables_total": str(self.tables_total),
            "pass_complete": "true" if self.pass_complete else "false",
            "resumed": "true" if self.resumed else "false",
            "integrity": self.result,
            "check_seconds": f"{self.seconds:.1f}",
            "interrupted": "true" if self.interrupted else "false",
        }


@dataclass
class RecentCheck:
    """What the weekly check of the events added since the last check found."""

    rows_checked: int = 0
    indexes: int = 0
    result: str = "not checked"


# --------------------------------------------------------------------- state


def _meta(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM store_meta"))


def _state(meta: dict[str, str]) -> VerificationState:
    def num(key: str, kind: type = int) -> object:
        return kind(meta[key]) if key in meta else None

    return VerificationState(
        last_full_ms=num(LAST_FULL),  # type: ignore[arg-type]
        last_full_started_ms=num(LAST_FULL_STARTED),  # type: ignore[arg-type]
        last_result=meta.get(LAST_RESULT),
        last_seconds=num(LAST_SECONDS, float),  # type: ignore[arg-type]
        last_runs=num(LAST_RUNS),  # type: ignore[arg-type]
        pass_started_ms=num(PASS_STARTED),  # type: ignore[arg-type]
        pass_next=meta.get(PASS_NEXT),
        pass_seconds=float(meta.get(PASS_SECONDS, 0.0)),
        recent_checked_seq=int(meta.get(RECENT_SEQ, 0)),
    )


def read_state(store: SqliteStore) -> VerificationState:
    """Return the store's verification state. Raises :class:`StoreError`."""
    with store.read("read verification state") as conn:
        return _state(_meta(conn))


def read_state_of(path: Path) -> VerificationState | None:
    """Return the verification state of the store at ``path``, read-only; None when there is no store there yet.

    Never creates or migrates anything (doctor and status call it). Raises
    :class:`StoreError` when the file cannot be read as a store.
    """
    try:
        if not path.exists():
            return None
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except PermissionError:
        raise StoreError(f"{path}: cannot read the store (permission denied)") from None
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"{path}: cannot open the store to read its verification state: {exc}") from None
    try:
        if not conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'store_meta'").fetchone():
            return VerificationState()  # written before verification existed: never verified
        return _state(_meta(conn))
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot read the store's verification state: {exc}") from None
    finally:
        conn.close()


def _put(store: SqliteStore, what: str, values: dict[str, object], drop: tuple[str, ...] = ()) -> None:
    with store.write(what) as conn:
        conn.executemany("INSERT OR REPLACE INTO store_meta (key, value) VALUES (?, ?)", [(k, str(v)) for k, v in values.items()])
        conn.executemany("DELETE FROM store_meta WHERE key = ?", [(k,) for k in drop])


def tables(store: SqliteStore) -> list[str]:
    """Return the units a full pass checks, in order: ``sqlite_schema``, then every table by name."""
    rows = store.pragma("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name", "list tables")
    return ["sqlite_schema", *(row[0] for row in rows)]


def _max_seq(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])


# ------------------------------------------------------------ the full pass


def _damaged(exc: StoreError) -> bool:
    """Whether a store error says the file is damaged (SQLITE_CORRUPT, SQLITE_NOTADB): a finding, not a failure to check."""
    text = str(exc)
    return "corrupt" in text or "malformed" in text or "not an SQLite database" in text


@contextmanager
def _interruptible(store: SqliteStore, stop: Callable[[], bool], report: Callable[[], None] | None = None) -> Iterator[None]:
    """Run the block's statements so that ``stop()`` turning true abandons them within :data:`STOP_POLL_S`.

    A watcher thread polls ``stop()`` and calls ``sqlite3_interrupt`` (the statement
    then fails with SQLITE_INTERRUPT); SQLite's progress handler cannot do this, as
    integrity_check walks a b-tree inside one VM instruction (over 20 s without a
    call for the one-year events table, cold). The watcher also calls ``report()``
    every :data:`PROGRESS_REPORT_S`, so a long check still counts as progress.
    """
    done = threading.Event()
    conn = store.connection

    def watch() -> None:
        last = time.monotonic()
        while not done.is_set():
            if stop():
                conn.interrupt()  # again every poll: one sent before the statement began would be lost
            elif report is not None and time.monotonic() - last >= PROGRESS_REPORT_S:
                last = time.monotonic()
                report()
            done.wait(STOP_POLL_S)

    watcher = threading.Thread(target=watch, name="memsched-verify-stop", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def _checked(store: SqliteStore, statement: str, what: str, stop: Callable[[], bool], report: Callable[[], None]) -> tuple[list[str], bool]:
    """Run one check statement, abandoned when ``stop()`` turns true; return (its rows, whether it was stopped part-way).

    A store too damaged to be read at all is a finding, not a crash: SQLite's
    "corrupt" or "not a database" error is returned as the row.
    """
    try:
        with _interruptible(store, stop, report):
            return [str(row[0]) for row in store.pragma(statement, what)], False
    except StoreError as exc:
        if stop() and "interrupt" in str(exc).lower():
            return [], True
        if _damaged(exc):
            return [str(exc).split(": ", 2)[-1]], False
        raise


def run_verification(
    store: SqliteStore | Path | str,
    *,
    progress: Callable[[int, int, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
) -> VerifyResult:
    """Verify the whole store, table by table, resuming a pass a previous run left unfinished.

    Returns a :class:`VerifyResult` (``interrupted`` when ``should_stop()`` turned
    true: the table being checked is checked again by the next run). Raises
    :class:`IntegrityError` when a table fails its check (recorded as the last
    result first), :class:`memsched.store.StoreBusyError` and other :class:`StoreError`.
    """
    if not isinstance(store, SqliteStore):
        with SqliteStore(store).open() as opened:
            return run_verification(opened, progress=progress, should_stop=should_stop, now_ms=now_ms)
    stop = should_stop or (lambda: False)
    result = VerifyResult()
    units = tables(store)
    result.tables_total = len(units)
    with store.read("read verification state") as conn:
        meta = _meta(conn)
        seq = _max_seq(conn)
    if PASS_STARTED in meta and meta.get(PASS_NEXT) in units:
        result.resumed = True
        start = units.index(meta[PASS_NEXT])
        spent = float(meta.get(PASS_SECONDS, 0.0))
        runs = int(meta.get(PASS_RUNS, 0)) + 1
        _put(store, "verification cursor", {PASS_RUNS: runs})
    else:  # a new pass (a table renamed since the cursor was written also starts over)
        start, spent, runs = 0, 0.0, 1
        meta = {PASS_STARTED: str(now_ms()), PASS_SEQ: str(seq), PASS_NEXT: units[0], PASS_SECONDS: "0", PASS_RUNS: "1"}
        _put(store, "verification cursor", meta)
    for index in range(start, len(units)):
        unit = units[index]
        label = f"integrity_check({unit})"
        if progress is not None:
            progress(index, len(units), label)
        if stop():
            result.interrupted = True
            return result
        began = time.monotonic()

        def report(index: int = index, label: str = label) -> None:
            if progress is not None:
                progress(index, len(units), label)

        quoted = unit.replace("'", "''")
        rows, stopped = _checked(store, f"PRAGMA integrity_check('{quoted}')", label, stop, report)
        took = time.monotonic() - began
        result.seconds += took
        spent += took
        if stopped:
            _put(store, "verification cursor", {PASS_SECONDS: f"{spent:.3f}"})
            result.interrupted = True
            return result
        if rows != ["ok"]:
            result.result = f"{unit}: " + "\n  ".join(rows)
            try:
                _put(
                    store,
                    "verification result",
                    {LAST_FULL: now_ms(), LAST_FULL_STARTED: meta[PASS_STARTED], LAST_RESULT: result.result, LAST_SECONDS: f"{spent:.3f}", LAST_RUNS: runs},
                    drop=(PASS_STARTED, PASS_SEQ, PASS_NEXT, PASS_SECONDS, PASS_RUNS),
                )
            except StoreError:
                pass  # a store that damaged may refuse the write too; the failed run is still recorded by the runner
            raise IntegrityError(store.path, result.result)
        result.tables_checked.append(unit)
        following = units[index + 1] if index + 1 < len(units) else None
        if following is not None:
            _put(store, "verification cursor", {PASS_NEXT: following, PASS_SECONDS: f"{spent:.3f}"})
    with store.write("verification result") as conn:
        recent = int(_meta(conn).get(RECENT_SEQ, 0))
        values = {
            LAST_FULL: now_ms(),
            LAST_FULL_STARTED: meta[PASS_STARTED],
            LAST_RESULT: "ok",
            LAST_SECONDS: f"{spent:.3f}",
            LAST_RUNS: runs,
            RECENT_SEQ: max(recent, int(meta[PASS_SEQ])),  # the pass checked every event stored when it began
        }
        conn.executemany("INSERT OR REPLACE INTO store_meta (key, value) VALUES (?, ?)", [(k, str(v)) for k, v in values.items()])
        conn.executemany("DELETE FROM store_meta WHERE key = ?", [(k,) for k in (PASS_STARTED, PASS_SEQ, PASS_NEXT, PASS_SECONDS, PASS_RUNS)])
    result.pass_complete = True
    result.result = "ok"
    if progress is not None:
        progress(len(units), len(units), "done")
    return result


# -------------------------------------------------------- the weekly check


def _event_indexes(conn: sqlite3.Connection) -> list[tuple[str, list[str]]]:
    """Return (name, columns) of every index of ``events`` (all are plain column indexes)."""
    found = []
    for row in conn.execute("PRAGMA index_list('events')").fetchall():
        name = row[1]
        columns = [info[2] for info in conn.execute(f"PRAGMA index_info('{name}')").fetchall()]
        if columns and None not in columns:  # an expression index cannot be looked up this way
            found.append((name, columns))
    return found


def check_recent(store: SqliteStore, *, should_stop: Callable[[], bool] | None = None) -> RecentCheck:
    """Check the events added since the last check, and advance the cursor when they pass.

    Every such row is read whole (its text and metadata, overflow pages included)
    and looked up through each index of ``events`` by all the indexed columns and
    its ``seq``; a row missing from an index, or a page SQLite cannot read on the
    way, is a finding. Returns a :class:`RecentCheck` (``result`` "ok", or
    "interrupted" when ``should_stop()`` turned true: the cursor stays). Raises
    :class:`IntegrityError` with the findings, and :class:`StoreError`.
    """
    stop = should_stop or (lambda: False)
    check = RecentCheck()
    with store.read("read the check cursor") as conn:
        since = int(_meta(conn).get(RECENT_SEQ, 0))
    problems: list[str] = []

    def run(statement: str, what: str, *args: object) -> list[tuple] | None:
        try:
            with _interruptible(store, stop), store.read(what) as reading:
                return reading.execute(statement, args).fetchall()
        except StoreError as exc:
            if stop() and "interrupt" in str(exc).lower():
                return None
            if _damaged(exc):
                problems.append(f"{what}: {str(exc).split(': ', 2)[-1]}")
                return []
            raise

    table = run(
        "SELECT count(*), coalesce(max(seq), ?), sum(length(event_id) + length(session_id) + length(text) + length(metadata) + coalesce(length(agent), 0)) "
        "FROM events WHERE seq > ?",
        "read the events added since the last check",
        since,
        since,
    )
    if table is None:
        check.result = "interrupted"
        return check
    rows, upto = (int(table[0][0]), int(table[0][1])) if table else (0, since)
    check.rows_checked = rows
    with store.read("list the indexes of events") as conn:
        indexes = _event_indexes(conn)
    for name, columns in indexes:
        if not rows:
            break
        match = " AND ".join(f'i."{c}" IS r."{c}"' for c in columns)
        found = run(
            f'SELECT count(*) FROM events AS r WHERE r.seq > ? AND r.seq <= ? AND EXISTS (SELECT 1 FROM events AS i INDEXED BY "{name}" WHERE {match} AND i.seq = r.seq)',
            f"look the new events up in index {name}",
            since,
            upto,
        )
        if found is None:
            check.result = "interrupted"
            return check
        check.indexes += 1
        if found and int(found[0][0]) != rows:
            problems.append(f"index {name}: {rows - int(found[0][0])} of the {rows} events added since the last check are missing from it")
    if problems:
        check.result = "\n  ".join(problems)
        raise IntegrityError(store.path, check.result, "the check of the events added since the last check")
    if upto != since:
        _put(store, "advance the check cursor", {RECENT_SEQ: upto})
    check.result = "ok"
    return check
