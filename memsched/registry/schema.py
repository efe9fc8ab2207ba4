"""The registry's schema (migrations, applied in order by :meth:`Registry.open`) and its vocabularies."""

from __future__ import annotations

RESULTS = ("running", "success", "failed", "skipped", "interrupted", "lost")
NOT_RUNS = ("skipped", "lost")  # records of slots that did not run

# Why a slot was skipped: memsched (its policy, or a person) decided not to run it.
SKIP_CODES = {
    "overlap": "the slot came while a run was still going (overlap = skip)",
    "coalesced": "the slot came while a run was going; one queued run served it and the slots before it (overlap = queue)",
    "paused": "the job was paused",
    "manual-skip": "someone asked to skip it",
}
# Why a slot was lost: it should have run and did not.
LOST_CODES = {
    "start-limit": "systemd refused to start the unit (its start rate limit was hit)",
    "start-failed": "the unit was started but failed before the run could record itself",
    "missed": "no run started for it (machine off or asleep, manager or timer stopped) and no catch-up run covered it",
}
REQUEST_STATES = ("pending", "claimed", "refused", "lost")

MIGRATIONS = [
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
    # 2: reason codes and slot ranges for slots not run, who asked, run requests, slot accounting.
    """
    ALTER TABLE runs ADD COLUMN reason_code TEXT;
    ALTER TABLE runs ADD COLUMN slot_end_ms INTEGER;
    ALTER TABLE runs ADD COLUMN slot_count INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE runs ADD COLUMN actor TEXT;
    UPDATE runs SET reason_code = 'overlap' WHERE result = 'skipped';
    CREATE INDEX runs_job_slot ON runs (job, slot_ms);
    CREATE TABLE run_requests (
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        requested_ms INTEGER NOT NULL,
        actor TEXT,
        state TEXT NOT NULL DEFAULT 'pending',
        run_id INTEGER,
        resolved_ms INTEGER,
        reason TEXT
    );
    CREATE INDEX run_requests_job_state ON run_requests (job, state);
    CREATE TABLE job_slots (
        job TEXT PRIMARY KEY,
        accounted_ms INTEGER,
        refire_after_ms INTEGER,
        refire_before_ms INTEGER
    );
    """,
    # 3: timed pauses (resume by themselves at until_ms) and skip windows (slots at or before through_ms do not run).
    """
    ALTER TABLE pauses ADD COLUMN until_ms INTEGER;
    CREATE TABLE skip_windows (
        job TEXT PRIMARY KEY,
        asked_ms INTEGER NOT NULL,
        through_ms INTEGER NOT NULL,
        next_n INTEGER,
        actor TEXT NOT NULL,
        reason TEXT
    );
    """,
]
