"""Registry methods for slots a person asked not to run: skip windows and timed pauses (mixed into Registry).

A **skip window** (table ``skip_windows``, one per job) covers every slot after
the moment it was asked (``asked_ms``) and at or before ``through_ms``:
``memsched skip JOB --next N`` stores the Nth upcoming slot as ``through_ms``,
``--until T`` stores T - 1 ms. A **timed pause** is a pause with ``until_ms``:
a slot before that instant does not run.

Every timer start asks :meth:`WindowsMixin.decide_slot` about its slot; the
answer and the record of the skipped slot are one transaction, so two starts
racing for the same slot record it once.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

from memsched.registry.records import SkipWindow
from memsched.registry.times import now_ms


def _hms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") + "Z"


class WindowsMixin:
    """Skip windows and the slot decision; needs ``self.db`` and ``self.transaction()``."""

    db: sqlite3.Connection

    def set_skip(
        self, job: str, through_ms: int, actor: str, next_n: int | None = None, reason: str | None = None, asked_ms: int | None = None
    ) -> SkipWindow:
        """Record (replacing any earlier one) that the job's slots after now and at or before ``through_ms`` do not run.

        Returns the window. Raises ValueError when ``through_ms`` is not after the asking time or ``next_n`` < 1.
        """
        asked = asked_ms or now_ms()
        if through_ms <= asked:
            raise ValueError(f"a skip window must end after it is asked ({through_ms} <= {asked})")
        if next_n is not None and next_n < 1:
            raise ValueError(f"next_n must be at least 1, not {next_n}")
        self.db.execute(
            "INSERT INTO skip_windows (job, asked_ms, through_ms, next_n, actor, reason) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(job) DO UPDATE SET asked_ms = excluded.asked_ms, through_ms = excluded.through_ms, "
            "next_n = excluded.next_n, actor = excluded.actor, reason = excluded.reason",
            (job, asked, through_ms, next_n, actor, reason),
        )
        return SkipWindow(job, asked, through_ms, next_n, actor, reason)

    def cancel_skip(self, job: str) -> SkipWindow | None:
        """Forget the job's skip window; return it (None when there was none)."""
        with self.transaction():
            window = self.skip_windows().get(job)
            self.db.execute("DELETE FROM skip_windows WHERE job = ?", (job,))
        return window

    def skip_windows(self) -> dict[str, SkipWindow]:
        """Return every job's skip window (ended ones included until a start or a cancel removes them)."""
        return {r["job"]: SkipWindow(**dict(r)) for r in self.db.execute("SELECT * FROM skip_windows")}

    def skipped_in_window(self, window: SkipWindow) -> int:
        """Return how many slots the window has skipped so far (records of manual skips since it was asked)."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(slot_count), 0) FROM runs WHERE job = ? AND result = 'skipped' AND reason_code = 'manual-skip' "
            "AND slot_ms > ? AND slot_ms <= ?",
            (window.job, window.asked_ms, window.through_ms),
        ).fetchone()
        return int(row[0])

    def has_slot_requests(self, job: str) -> bool:
        """Return whether the job has a skip window or a timed pause (a timer start then asks :meth:`decide_slot`)."""
        row = self.db.execute(
            "SELECT EXISTS (SELECT 1 FROM skip_windows WHERE job = ?) OR EXISTS (SELECT 1 FROM pauses WHERE job = ? AND until_ms IS NOT NULL)",
            (job, job),
        ).fetchone()
        return bool(row[0])

    def decide_slot(self, job: str, slot_ms: int, invocation_id: str | None = None) -> tuple[str, str] | None:
        """Decide whether the timer start for ``slot_ms`` may run; when not, record the slot as skipped.

        Returns None (run it), or ``(code, reason)`` with code ``paused`` (a timed pause that
        has not ended at the slot) or ``manual-skip`` (a skip window covers it). A slot already
        recorded as skipped for that reason is not recorded twice. A skip window that ended
        before the slot is removed.
        """
        with self.transaction():
            pause = self.db.execute("SELECT * FROM pauses WHERE job = ? AND until_ms IS NOT NULL", (job,)).fetchone()
            if pause is not None and slot_ms < pause["until_ms"]:
                reason = f"slot {_hms(slot_ms)} not run: paused until {_hms(pause['until_ms'])} by {pause['paused_by']}"
                return self._skip_once(job, slot_ms, "paused", reason, pause["paused_by"], invocation_id)
            row = self.db.execute("SELECT * FROM skip_windows WHERE job = ?", (job,)).fetchone()
            if row is None:
                return None
            window = SkipWindow(**dict(row))
            if slot_ms > window.through_ms:
                self.db.execute("DELETE FROM skip_windows WHERE job = ?", (job,))
                return None
            if slot_ms <= window.asked_ms:
                return None
            asked = f"`memsched skip --next {window.next_n}`" if window.next_n else f"`memsched skip --until {_hms(window.through_ms + 1)}`"
            ordinal = self.skipped_in_window(window) + 1
            of = f" (slot {ordinal} of {window.next_n})" if window.next_n else ""
            reason = f"slot {_hms(slot_ms)} skipped: {asked} asked by {window.actor} at {_hms(window.asked_ms)}{of}"
            if window.reason:
                reason += f": {window.reason}"
            return self._skip_once(job, slot_ms, "manual-skip", reason, window.actor, invocation_id)

    def _skip_once(self, job: str, slot_ms: int, code: str, reason: str, actor: str, invocation_id: str | None) -> tuple[str, str]:
        seen = self.db.execute(
            "SELECT reason FROM runs WHERE job = ? AND result = 'skipped' AND reason_code = ? AND slot_ms = ?", (job, code, slot_ms)
        ).fetchone()
        if seen is not None:
            return code, str(seen[0])
        self.record_skip(job, code=code, reason=reason, slot_ms=slot_ms, actor=actor, invocation_id=invocation_id, at_ms=now_ms())  # type: ignore[attr-defined]
        return code, reason
