"""Registry methods for slots not run (skipped, lost), slot accounting and run requests (mixed into Registry)."""

from __future__ import annotations

import sqlite3

from memsched.registry.records import RunRequest, SlotState
from memsched.registry.schema import LOST_CODES, SKIP_CODES
from memsched.registry.times import now_ms


class SlotsMixin:
    """Slot records, accounting and run requests; needs ``self.db`` and ``self.transaction()``."""

    db: sqlite3.Connection

    # ------------------------------------------------------------ slots not run

    def record_skip(
        self,
        job: str,
        *,
        code: str,
        reason: str,
        slot_ms: int | None = None,
        slot_end_ms: int | None = None,
        count: int = 1,
        trigger: str = "timer",
        actor: str | None = None,
        invocation_id: str | None = None,
        at_ms: int | None = None,
    ) -> int:
        """Record ``count`` skipped slots (the first at ``slot_ms``, the last at ``slot_end_ms``); return the record's id.

        ``code`` is one of :data:`SKIP_CODES`; ``reason`` the sentence shown to people;
        ``actor`` who asked, when a person did. Raises ValueError for an unknown code or a count below 1.
        """
        if code not in SKIP_CODES:
            raise ValueError(f"unknown skip code {code!r}; known: {', '.join(SKIP_CODES)}")
        return self._slot_record(job, "skipped", code, reason, slot_ms, slot_end_ms, count, trigger, actor, invocation_id, at_ms)

    def record_lost(
        self,
        job: str,
        *,
        code: str,
        reason: str,
        slot_ms: int | None = None,
        slot_end_ms: int | None = None,
        count: int = 1,
        trigger: str = "timer",
        invocation_id: str | None = None,
        at_ms: int | None = None,
    ) -> int:
        """Record ``count`` lost slots (they should have run and did not); return the record's id.

        ``code`` is one of :data:`LOST_CODES`. Raises ValueError for an unknown code or a count below 1.
        """
        if code not in LOST_CODES:
            raise ValueError(f"unknown lost-slot code {code!r}; known: {', '.join(LOST_CODES)}")
        return self._slot_record(job, "lost", code, reason, slot_ms, slot_end_ms, count, trigger, None, invocation_id, at_ms)

    def _slot_record(
        self, job: str, result: str, code: str, reason: str, slot_ms: int | None, slot_end_ms: int | None,
        count: int, trigger: str, actor: str | None, invocation_id: str | None, at_ms: int | None,
    ) -> int:
        if count < 1:
            raise ValueError(f"a slot record stands for at least one slot, not {count}")
        at = at_ms or slot_ms or now_ms()
        cur = self.db.execute(
            "INSERT INTO runs (job, invocation_id, trigger, slot_ms, slot_end_ms, slot_count, started_ms, ended_ms, duration_ms, "
            "result, reason_code, reason, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)",
            (job, invocation_id, trigger, slot_ms, slot_end_ms if count > 1 else slot_ms, count, at, at, result, code, reason, actor),
        )
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def slot_counts(self) -> dict[str, dict[tuple[str, str], int]]:
        """Return, per job, how many slots were skipped or lost for each reason: ``{job: {(result, code): slots}}``."""
        out: dict[str, dict[tuple[str, str], int]] = {}
        for row in self.db.execute(
            "SELECT job, result, COALESCE(reason_code, '') AS code, SUM(slot_count) AS slots FROM runs "
            "WHERE result IN ('skipped', 'lost') GROUP BY job, result, code"
        ):
            out.setdefault(row["job"], {})[(row["result"], row["code"])] = row["slots"]
        return out

    def last_slot_ms(self, job: str) -> int | None:
        """Return the latest slot the job has a record for (a run's slot or start, a skipped or lost range's end), or None."""
        row = self.db.execute(
            "SELECT MAX(COALESCE(slot_end_ms, slot_ms, started_ms)) FROM runs WHERE job = ?", (job,)
        ).fetchone()
        return row[0] if row and row[0] is not None else None

    # ------------------------------------------------------------ slot accounting

    def slot_state(self, job: str) -> SlotState:
        """Return the job's slot accounting state (all None when nothing was accounted yet)."""
        row = self.db.execute("SELECT * FROM job_slots WHERE job = ?", (job,)).fetchone()
        return SlotState(**dict(row)) if row else SlotState(job)

    def mark_accounted(self, job: str, through_ms: int) -> None:
        """Record that every slot of the job up to ``through_ms`` has its record (never moves back)."""
        self.db.execute(
            "INSERT INTO job_slots (job, accounted_ms) VALUES (?, ?) ON CONFLICT(job) DO UPDATE SET "
            "accounted_ms = MAX(COALESCE(accounted_ms, excluded.accounted_ms), excluded.accounted_ms)",
            (job, through_ms),
        )

    def expect_refire(self, job: str, after_ms: int, before_ms: int | None) -> None:
        """Record that systemd will start the job once more at or after ``after_ms`` for slots a run overlapped,
        before its next slot ``before_ms`` (None: expect none). The start that comes in that window is the re-fire."""
        self.db.execute(
            "INSERT INTO job_slots (job, refire_after_ms, refire_before_ms) VALUES (?, ?, ?) ON CONFLICT(job) DO UPDATE SET "
            "refire_after_ms = excluded.refire_after_ms, refire_before_ms = excluded.refire_before_ms",
            (job, after_ms if before_ms is not None else None, before_ms),
        )

    def take_refire(self, job: str, at_ms: int) -> bool:
        """Consume an expected re-fire: True (and the expectation is cleared) when one is expected at ``at_ms``.

        Atomic: of two starts racing for the same re-fire, one gets True.
        """
        cur = self.db.execute(
            "UPDATE job_slots SET refire_after_ms = NULL, refire_before_ms = NULL "
            "WHERE job = ? AND refire_before_ms IS NOT NULL AND refire_after_ms <= ? AND ? < refire_before_ms",
            (job, at_ms, at_ms),
        )
        return cur.rowcount > 0

    # ------------------------------------------------------------ run requests

    def add_request(self, job: str, actor: str | None, at_ms: int | None = None) -> int:
        """Record a manual run asked for the job; return the request's id."""
        cur = self.db.execute("INSERT INTO run_requests (job, requested_ms, actor) VALUES (?, ?, ?)", (job, at_ms or now_ms(), actor))
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def get_request(self, request_id: int) -> RunRequest | None:
        row = self.db.execute("SELECT * FROM run_requests WHERE id = ?", (request_id,)).fetchone()
        return RunRequest(**dict(row)) if row else None

    def pending_requests(self, job: str, before_ms: int | None = None) -> list[RunRequest]:
        """Return the job's pending requests (made at or before ``before_ms`` when given), oldest first."""
        rows = self.db.execute(
            "SELECT * FROM run_requests WHERE job = ? AND state = 'pending' AND requested_ms <= ? ORDER BY id",
            (job, before_ms if before_ms is not None else 2**62),
        )
        return [RunRequest(**dict(r)) for r in rows]

    def claim_requests(self, job: str, run_id: int, before_ms: int) -> list[int]:
        """Mark the job's pending requests made at or before ``before_ms`` as served by run ``run_id``; return their ids."""
        with self.transaction():
            ids = [r.id for r in self.pending_requests(job, before_ms)]
            for request_id in ids:
                self.db.execute(
                    "UPDATE run_requests SET state = 'claimed', run_id = ?, resolved_ms = ? WHERE id = ?", (run_id, now_ms(), request_id)
                )
        return ids

    def resolve_requests(self, ids: list[int], state: str, reason: str) -> int:
        """End pending requests without a run (``state`` refused or lost, with the reason); return how many changed."""
        if state not in ("refused", "lost"):
            raise ValueError(f"a request without a run is refused or lost, not {state!r}")
        changed = 0
        for request_id in ids:
            changed += self.db.execute(
                "UPDATE run_requests SET state = ?, reason = ?, resolved_ms = ? WHERE id = ? AND state = 'pending'",
                (state, reason, now_ms(), request_id),
            ).rowcount
        return changed
