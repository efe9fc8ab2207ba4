"""Log lines of a run, tagged so that `journalctl MEMSCHED_JOB=<job>` finds every run in every scope.

systemd applies ``LogExtraFields=`` only to system units (not user units, see
systemd issue #29956), so the runner sends its own lines, and forwards the
output of command jobs, through the journal's native protocol with the fields
itself. Outside systemd (a shell) it prints instead.
"""

from __future__ import annotations

import os
import sys

PRIORITY_ERR = 3
PRIORITY_WARNING = 4
PRIORITY_INFO = 6


class JobLog:
    """Writes a run's log lines with MEMSCHED_JOB, MEMSCHED_RUN_ID and the unit's invocation id."""

    def __init__(self, job: str, run_id: int | None = None, invocation_id: str | None = None):
        self.job = job
        self.run_id = run_id
        self.invocation_id = invocation_id or os.environ.get("INVOCATION_ID")
        self.to_journal = bool(os.environ.get("JOURNAL_STREAM")) and os.path.exists("/run/systemd/journal/socket")

    def fields(self) -> list[str]:
        fields = [f"MEMSCHED_JOB={self.job}", f"SYSLOG_IDENTIFIER=memsched-{self.job}"]
        if self.run_id is not None:
            fields.append(f"MEMSCHED_RUN_ID={self.run_id}")
        if self.invocation_id:
            fields.append(f"MEMSCHED_INVOCATION_ID={self.invocation_id}")
        return fields

    def line(self, message: str, priority: int = PRIORITY_INFO) -> None:
        """Log one line."""
        if self.to_journal:
            try:
                from pystemd.journal import sendv

                sendv(f"MESSAGE={message}", f"PRIORITY={priority}", *self.fields())
                return
            except Exception:
                self.to_journal = False
        stream = sys.stderr if priority <= PRIORITY_WARNING else sys.stdout
        print(message, file=stream, flush=True)

    def info(self, message: str) -> None:
        self.line(message, PRIORITY_INFO)

    def warning(self, message: str) -> None:
        self.line(message, PRIORITY_WARNING)

    def error(self, message: str) -> None:
        self.line(message, PRIORITY_ERR)
