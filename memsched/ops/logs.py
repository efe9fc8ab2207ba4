"""A job's history (the registry) and its logs (the journal). Returns data or a command, never prints."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from memsched.config.load import Config
from memsched.errors import MemschedError, UsageError
from memsched.ops.status import resolve_jobs
from memsched.systemd.names import failure_instance_pattern, failure_unit_name, instance_pattern, service_name
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


def journal_command(
    config: Config, scope: str, name: str, *, lines: int | None = 50, follow: bool = False, invocation: str | None = None, as_json: bool = False
) -> list[str]:
    """Return the journalctl command that shows the job's output (every run, or one invocation).

    ``as_json`` asks journalctl for its JSON export, which :func:`journal_entries` reads.

    Entries are selected by fields journald sets itself, which no client can write: the unit
    a line came from (``_SYSTEMD_UNIT``, or ``_SYSTEMD_USER_UNIT`` with ``_UID``), and systemd's
    own messages about the unit (``UNIT=`` from PID 1, ``USER_UNIT=`` from the user's manager) —
    journalctl's ``--unit``/``--user-unit`` matches. Fields a process writes itself
    (``MEMSCHED_JOB=``, ``UNIT=``) select nothing alone: any local user could write them and
    put lines into another job's logs and failure alerts. The units: the job's service, its
    concurrent instances, and its failure unit. ``invocation`` then narrows to one run.
    Raises :class:`UsageError` for a malformed invocation id or line count.
    """
    (job,) = resolve_jobs(config, [name])
    exe = shutil.which("journalctl")
    if exe is None:
        raise MemschedError("journalctl is not installed")
    argv = [exe, "--no-pager", "--output=json" if as_json else "--output=short-iso-precise"]
    directory = journal_directory()
    if directory is not None:
        argv.append(f"--directory={directory}")
    if lines is not None:
        if lines < 1:
            raise UsageError(f"-n {lines}: expected a positive number of lines")
        argv.append(f"--lines={lines}")
    if follow:
        argv.append("--follow")
    unit_flag = "--user-unit" if scope == "user" else "--unit"
    # The plain names first: journalctl refuses a pattern that matches no unit in the journal
    # unless another name is given, and shows nothing (not everything) for a name never seen.
    for unit in (service_name(job.name), failure_unit_name(job.name), instance_pattern(job.name), failure_instance_pattern(job.name)):
        argv.append(f"{unit_flag}={unit}")
    if invocation:
        invocation = invocation.replace("-", "").lower()
        if not _INVOCATION.match(invocation):
            raise UsageError(f"--run {invocation!r}: expected a systemd invocation id (32 hex digits, see `memsched history`)")
        # ANDed with the units above: within lines that came from the job's own units, the run's.
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


def _text(value: object) -> str:
    # journalctl -o json gives a field that is not valid UTF-8 as a list of byte values.
    if isinstance(value, list):
        return bytes(v for v in value if isinstance(v, int) and 0 <= v < 256).decode("utf-8", "replace")
    return "" if value is None else str(value)


def journal_entry(raw: dict[str, object]) -> dict[str, object]:
    """Return one journal record in memsched's stable shape.

    Keys: ``time`` (ISO 8601, UTC, microseconds), ``job`` (MEMSCHED_JOB, or null for systemd's own
    lines about the unit), ``unit``, ``invocation`` (the run's invocation id, or null),
    ``priority`` (0–7, syslog's), ``message``.
    """
    try:
        micros = int(_text(raw.get("__REALTIME_TIMESTAMP")) or 0)
    except ValueError:
        micros = 0
    invocation = next((_text(raw[k]) for k in ("MEMSCHED_INVOCATION_ID", "_SYSTEMD_INVOCATION_ID", "USER_INVOCATION_ID", "INVOCATION_ID") if raw.get(k)), None)
    unit = next((_text(raw[k]) for k in ("USER_UNIT", "UNIT", "_SYSTEMD_USER_UNIT", "_SYSTEMD_UNIT") if raw.get(k)), None)
    try:
        priority = int(_text(raw.get("PRIORITY")) or 6)
    except ValueError:
        priority = 6
    return {
        "time": datetime.fromtimestamp(micros / 1e6, timezone.utc).isoformat(timespec="microseconds"),
        "job": _text(raw["MEMSCHED_JOB"]) if raw.get("MEMSCHED_JOB") else None,
        "unit": unit,
        "invocation": invocation,
        "priority": priority,
        "message": _text(raw.get("MESSAGE")),
    }


def journal_entries(argv: list[str]) -> Iterator[dict[str, object]]:
    """Run a :func:`journal_command` built with ``as_json=True``; yield each entry (:func:`journal_entry`).

    With --follow it yields until journalctl ends. Raises :class:`MemschedError` when journalctl
    fails (its own message, one line).
    """
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                raw = json.loads(line)
            except ValueError:
                continue  # not an entry (journalctl prints none such; a torn line at a kill)
            if isinstance(raw, dict):
                yield journal_entry(raw)
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait()
    if proc.returncode not in (0, -15):
        error = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
        raise MemschedError(f"journalctl exited {proc.returncode}: {error[-1] if error else 'no message'}")
