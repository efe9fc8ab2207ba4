"""The compaction job for the SQLite store: what it costs is what there is to do.

Steps, each a safe point for ``should_stop()``:

1. ``wal_checkpoint(TRUNCATE)``: copy the WAL into the database and empty it. Readers
   that still need old frames can keep it from finishing; it is retried with backoff
   until ``busy_timeout`` and, if readers remain, the run notes a partial checkpoint
   rather than failing (their work is not ours to break).
2. Reclaim free pages: with ``auto_vacuum = INCREMENTAL`` (how memsched creates
   stores), ``incremental_vacuum`` in chunks; otherwise ``VACUUM`` once the free pages
   pass ``free_page_threshold`` of the file.
3. ``ANALYZE`` (sampled: ``analysis_limit``), then ``PRAGMA optimize``.
4. ``check_recent``: the events added since the last check, read whole and looked up
   in every index (:func:`memsched.jobs.verify.check_recent`). No whole-store check:
   ``integrity_check`` and even ``quick_check`` read every page in b-tree order, which
   on the one-year store takes minutes cold for a check that, with nothing changed,
   can find nothing new. The whole store is verified by the ``verify`` job, on its own
   cadence and timeout (:func:`memsched.jobs.verify.run_verification`).
5. A final ``wal_checkpoint(TRUNCATE)``, then sizes (database + WAL) before and after.

Each step is one SQLite statement (or, for the check, read-only statements and one
cursor update) and so atomic: a kill at any instant leaves the store as it was before
that statement or after it. Locks are waited for (bounded by the store's
busy_timeout), never surfaced as "database is locked".
"""

from __future__ import annotations

from collections.abc import Callable
import time
from dataclasses import dataclass, field
from pathlib import Path

from memsched.jobs.verify import IntegrityError, check_recent
from memsched.store.sqlite import SqliteStore

__all__ = ["ANALYSIS_LIMIT", "STEPS", "CompactionResult", "IntegrityError", "run_compaction"]

DEFAULT_FREE_PAGE_THRESHOLD = 0.10
VACUUM_CHUNK_PAGES = 2048
ANALYSIS_LIMIT = 1000
STEPS = ("checkpoint", "reclaim", "analyze", "check_recent", "final_checkpoint")


@dataclass
class CompactionResult:
    """What a compaction did; sizes are database + WAL bytes."""

    bytes_before: int = 0
    bytes_after: int = 0
    free_pages_before: int = 0
    pages_reclaimed: int = 0
    reclaim: str = "none"  # incremental_vacuum | vacuum | none
    wal_checkpoint: str = "not run"  # complete | partial (readers active) | not run
    integrity: str = "not checked"  # of the events added since the last check: ok | not checked | interrupted
    rows_checked: int = 0
    step_seconds: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def bytes_reclaimed(self) -> int:
        return max(0, self.bytes_before - self.bytes_after)

    def as_metadata(self) -> dict[str, str]:
        """Return the figures as the string map the run registry stores."""
        return {
            "bytes_before": str(self.bytes_before),
            "bytes_after": str(self.bytes_after),
            "bytes_reclaimed": str(self.bytes_reclaimed),
            "free_pages_before": str(self.free_pages_before),
            "pages_reclaimed": str(self.pages_reclaimed),
            "reclaim": self.reclaim,
            "wal_checkpoint": self.wal_checkpoint,
            "integrity": self.integrity,
            "rows_checked": str(self.rows_checked),
            "step_seconds": " ".join(f"{k}={v:.2f}" for k, v in self.step_seconds.items()),
            "interrupted": "true" if self.interrupted else "false",
        }


def _checkpoint(store: SqliteStore) -> str:
    """Checkpoint and truncate the WAL; return "complete" or "partial"."""
    busy, _log, _done = store.pragma("PRAGMA wal_checkpoint(TRUNCATE)", "wal checkpoint")[0]
    return "partial (readers active)" if busy else "complete"


def _count(store: SqliteStore, pragma: str) -> int:
    return int(store.pragma(f"PRAGMA {pragma}", pragma)[0][0])


def run_compaction(
    store: SqliteStore | Path | str,
    *,
    progress: Callable[[int, int, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    free_page_threshold: float = DEFAULT_FREE_PAGE_THRESHOLD,
) -> CompactionResult:
    """Compact the store (an open :class:`SqliteStore`, or a path to open and close).

    Returns a :class:`CompactionResult` (``interrupted`` when ``should_stop()``
    turned true between steps or during the check). Raises :class:`IntegrityError`
    when the check of the events added since the last check finds a problem, :class:`memsched.store.StoreBusyError` when locks outlast the
    busy timeout, and other :class:`StoreError`.
    """
    if not isinstance(store, SqliteStore):
        with SqliteStore(store).open() as opened:
            return run_compaction(opened, progress=progress, should_stop=should_stop, free_page_threshold=free_page_threshold)
    stop = should_stop or (lambda: False)
    result = CompactionResult()
    result.bytes_before = sum(store.file_bytes())
    began = [time.monotonic()]

    def step(index: int) -> bool:
        now = time.monotonic()
        if index:
            result.step_seconds[STEPS[index - 1]] = now - began[0]
        began[0] = now
        if stop():
            result.interrupted = True
            result.bytes_after = sum(store.file_bytes())
            return False
        if progress is not None:
            progress(index, len(STEPS), STEPS[index])
        return True

    if not step(0):
        return result
    result.wal_checkpoint = _checkpoint(store)

    if not step(1):
        return result
    result.free_pages_before = free = _count(store, "freelist_count")
    pages = _count(store, "page_count")
    if _count(store, "auto_vacuum") == 2:
        result.reclaim = "incremental_vacuum" if free else "none"
        while free and not stop():
            store.pragma(f"PRAGMA incremental_vacuum({VACUUM_CHUNK_PAGES})", "incremental vacuum")
            remaining = _count(store, "freelist_count")
            result.pages_reclaimed += free - remaining
            if remaining >= free:
                break
            free = remaining
    elif pages and free / pages >= free_page_threshold:
        store.pragma("VACUUM", "vacuum")
        result.reclaim = "vacuum"
        result.pages_reclaimed = free - _count(store, "freelist_count")

    if not step(2):
        return result
    store.pragma(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT}", "analyze")
    store.pragma("ANALYZE", "analyze")
    store.pragma("PRAGMA optimize", "optimize")

    if not step(3):
        return result
    try:
        checked = check_recent(store, should_stop=stop)
    except IntegrityError as exc:
        result.integrity = exc.result
        raise
    result.integrity, result.rows_checked = checked.result, checked.rows_checked
    if checked.result == "interrupted":
        result.interrupted = True
        result.bytes_after = sum(store.file_bytes())
        return result

    if not step(4):
        return result
    result.wal_checkpoint = _checkpoint(store)
    result.step_seconds[STEPS[4]] = time.monotonic() - began[0]
    result.bytes_after = sum(store.file_bytes())
    if progress is not None:
        progress(len(STEPS), len(STEPS), "done")
    return result
