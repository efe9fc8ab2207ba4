"""What `doctor` and `status` say about the store's verification. Read-only: never creates or migrates the store."""

from __future__ import annotations

import time
from typing import Any

from memsched.config.load import Config
from memsched.jobs.verify import read_state_of
from memsched.store import StoreError, resolve_store_path
from memsched.store.periods import utc_datetime

STALE_AFTER_MS = 62 * 86_400_000  # two monthly passes missed: say so


def verification_report(config: Config, scope: str) -> dict[str, Any] | None:
    """Return the store's verification state as JSON-ready data, or None when the store does not exist yet.

    Keys: ``store`` (path), ``verify_jobs`` (enabled jobs of kind verify), the fields of
    :meth:`memsched.jobs.verify.VerificationState.as_dict`, or ``error`` when the file
    cannot be read. Raises nothing for a store it cannot read: that is reported.
    """
    path = resolve_store_path(config, scope)
    jobs = [job.name for job in config.enabled_jobs.values() if job.kind == "verify"]
    try:
        state = read_state_of(path)
    except StoreError as exc:
        return {"store": str(path), "verify_jobs": jobs, "error": str(exc)}
    if state is None:
        return None
    return {"store": str(path), "verify_jobs": jobs, **state.as_dict()}


def _when(ms: int) -> str:
    return utc_datetime(ms).strftime("%Y-%m-%d %H:%M:%SZ")


def describe(report: dict[str, Any] | None) -> str | None:
    """Return one line saying when the store was last fully verified and with what result (None: no store)."""
    if report is None:
        return None
    store = report["store"]
    if "error" in report:
        return f"store {store}: cannot read its verification state: {report['error']}"
    last = report.get("last_full_verification_ms")
    if last is None:
        line = f"store {store}: never fully verified"
    else:
        result = str(report.get("last_result") or "")
        shown = "ok" if result == "ok" else f"FAILED: {result.splitlines()[0]}"
        line = f"store {store}: last fully verified {_when(last)}: {shown} ({report.get('last_seconds') or 0:.0f} s checking, {report.get('last_runs') or 1} run(s))"
    running = report.get("pass_in_progress")
    if running:
        line += f"; a pass begun {_when(running['started_ms'])} resumes at table {running['next_table']}"
    if not report.get("verify_jobs"):
        line += "; no enabled verify job"
    return line


def _finding(job: str | None, problem: str, fix: str, severity: str = "error") -> tuple[str | None, str, str, str]:
    """Return one finding in the shape of ``memsched.ops.doctor.Finding``'s fields (doctor imports this module, not the reverse)."""
    return (job, problem, fix, severity)


def verification_findings(config: Config, scope: str, now_ms: int | None = None) -> list[tuple[str | None, str, str, str]]:
    """Return doctor findings about verification as (job, problem, fix, severity) tuples.

    A failed last pass is an error; with a verify job enabled, no complete pass for
    :data:`STALE_AFTER_MS` is a warning; an unreadable state is an error.
    """
    report = verification_report(config, scope)
    if report is None:
        return []
    now = int(time.time() * 1000) if now_ms is None else now_ms
    store = report["store"]
    findings = []
    if "error" in report:
        findings.append(_finding(None, f"cannot read the verification state of {store}: {report['error']}", "see docs/store.md, \"Verification\""))
        return findings
    result = report.get("last_result")
    if result not in (None, "ok"):
        findings.append(
            _finding(
                None,
                f"the last full verification of {store} ({_when(report['last_full_verification_ms'])}) found problems: {str(result).splitlines()[0]}",
                "restore the store from a backup, or rebuild it with sqlite3's .recover; see docs/store.md, \"Verification\"",
            )
        )
    if report["verify_jobs"]:  # without one, the status line says so; switching it off is the user's call
        last = report.get("last_full_verification_ms")
        if last is not None and now - last > STALE_AFTER_MS:
            job = report["verify_jobs"][0]
            findings.append(
                _finding(job, f"{store} was last fully verified {(now - last) // 86_400_000} days ago", f"see `memsched history {job}` (a run that times out every time needs a longer timeout)", "warning")
            )
    return findings
