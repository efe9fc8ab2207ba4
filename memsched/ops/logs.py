"""A job's history (the registry) and its logs (the journal). Returns data or a command, never prints."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from memsched.config.load import Config
from memsched.errors import MemschedError, UsageError
from memsched.ops.status import resolve_jobs
from memsched.systemd.names import service_name
from memsched.registry import RunRecord, open_registry

_INVOCATION = re.compile(r"^[0-9a-f]{32}$")


def history(config: Config, scope: str, name: str, limit: int = 20) -> list[RunRecord]:
    """Return the job's latest runs and skipped slots, newest first."""
    if not 1 <= limit <= 10_000:
        raise UsageError(f"-n {limit}: expected 1 to 10000")
    (job,) = resolve_jobs(config, [name])
    with open_registry(config, scope) as registry:
        return registry.history(job.name, limit)


def journal_directory() -> Path | None:
    """Return the journal directory to read ($MEMSCHED_JOURNAL_DIR, set by `memsched sandbox env`), or None."""
    value = os.environ.get("MEMSCHED_JOURNAL_DIR")
    return Path(value) if value else None


def journal_command(config: Config, scope: str, name: str, *, lines: int | None = 50, follow: bool = False, invocation: str | None = None) -> list[str]:
    """Return the journalctl command that shows the job's output (every run, or one invocation).

    Entries are matched by the MEMSCHED_JOB= field memsched attaches to every
    line of a run, or by the unit (systemd's own messages about it).
    Raises :class:`UsageError` for a malformed invocation id or line count.
    """
    (job,) = resolve_jobs(config, [name])
    exe = shutil.which("journalctl")
    if exe is None:
        raise MemschedError("journalctl is not installed")
    argv = [exe, "--no-pager", "--output=short-iso-precise"]
    directory = journal_directory()
    if directory is not None:
        argv.append(f"--directory={directory}")
    if lines is not None:
        if lines < 1:
            raise UsageError(f"-n {lines}: expected a positive number of lines")
        argv.append(f"--lines={lines}")
    if follow:
        argv.append("--follow")
    if invocation:
        invocation = invocation.replace("-", "").lower()
        if not _INVOCATION.match(invocation):
            raise UsageError(f"--run {invocation!r}: expected a systemd invocation id (32 hex digits, see `memsched history`)")
        argv += [
            f"MEMSCHED_INVOCATION_ID={invocation}",
            "+",
            f"_SYSTEMD_INVOCATION_ID={invocation}",
            "+",
            f"USER_INVOCATION_ID={invocation}",
            "+",
            f"INVOCATION_ID={invocation}",
        ]
        return argv
    unit_field = "USER_UNIT" if scope == "user" else "UNIT"
    argv += [f"MEMSCHED_JOB={job.name}", "+", f"{unit_field}={service_name(job.name)}"]
    return argv
