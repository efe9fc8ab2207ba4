"""Core data to protobuf messages (and back, for the client): one mapping, used by server and client alike.

The core's result words map onto the original enum: success -> SUCCESS, failed and
interrupted -> FAILED (the original's Failed(msg); an interrupted run is a failed
one with a reason), skipped -> SKIPPED, no run or a run still going -> UNSPECIFIED.
"""

from __future__ import annotations

from typing import Any

from memsched.facade._generated import memory_scheduler_pb2 as pb
from memsched.ops.control import RunOutcome
from memsched.ops.status import JobStatus, SchedulerStatus, iso_ms
from memsched.registry import RunRecord

RESULT_ENUM = {
    "success": pb.JOB_RESULT_STATUS_SUCCESS,
    "failed": pb.JOB_RESULT_STATUS_FAILED,
    "interrupted": pb.JOB_RESULT_STATUS_FAILED,
    "skipped": pb.JOB_RESULT_STATUS_SKIPPED,
    "lost": pb.JOB_RESULT_STATUS_SKIPPED,  # the wire has no word for it; result_name says "lost"
}
ENUM_WORD = {
    pb.JOB_RESULT_STATUS_UNSPECIFIED: None,
    pb.JOB_RESULT_STATUS_SUCCESS: "success",
    pb.JOB_RESULT_STATUS_FAILED: "failed",
    pb.JOB_RESULT_STATUS_SKIPPED: "skipped",
}


def result_enum(result: str | None) -> int:
    """Return the JobResultStatus value of a core result word (UNSPECIFIED for None, "running" or unknown words)."""
    return RESULT_ENUM.get(result or "", pb.JOB_RESULT_STATUS_UNSPECIFIED)


def job_status_proto(status: JobStatus) -> pb.JobStatusProto:
    """Return the JobStatusProto of one job (the original fields 1-12, times in ms, 0 when unknown; 13 when a timed pause ends)."""
    message = pb.JobStatusProto(
        job_name=status.job_name,
        cron_expr=status.cron_expr,
        last_run_ms=status.last_run_ms,
        last_duration_ms=status.last_duration_ms,
        last_result=result_enum(status.last_result),
        next_run_ms=status.next_run_ms,
        run_count=status.run_count,
        error_count=status.error_count,
        is_running=status.is_running,
        is_paused=status.is_paused,
        last_run_metadata={str(k): str(v) for k, v in status.last_run_metadata.items()},
    )
    if status.last_error is not None:
        message.last_error = status.last_error
    if status.paused_until_ms and "paused_until_ms" in message.DESCRIPTOR.fields_by_name:
        message.paused_until_ms = status.paused_until_ms
    return message


def has_field(message: Any, name: str) -> bool:
    """Return whether an optional field is set; False when the generated code predates the field."""
    try:
        return bool(message.HasField(name))
    except ValueError:
        return False


def scheduler_status_proto(status: SchedulerStatus) -> pb.GetSchedulerStatusResponse:
    """Return the GetSchedulerStatus answer for a :class:`SchedulerStatus`."""
    return pb.GetSchedulerStatusResponse(
        scheduler_running=status.scheduler_running,
        jobs=[job_status_proto(job) for job in status.jobs],
    )


def run_record_proto(record: RunRecord) -> pb.JobRunRecord:
    """Return one registry record as a JobRunRecord."""
    message = pb.JobRunRecord(
        id=record.id,
        job_name=record.job,
        started_ms=record.started_ms,
        ended_ms=record.ended_ms or 0,
        duration_ms=record.duration_ms or 0,
        result=result_enum(record.result),
        result_name=record.result,
        invocation_id=record.invocation_id or "",
        trigger=record.trigger or "",
        instance=record.instance or "",
        metadata={str(k): str(v) for k, v in (record.metadata or {}).items()},
    )
    if record.reason is not None:
        message.reason = record.reason
    if record.exit_code is not None:
        message.exit_code = record.exit_code
    return message


def run_outcome_proto(outcome: RunOutcome) -> pb.RunJobResponse:
    """Return the RunJob answer for a started (and, when waited, finished) run."""
    message = pb.RunJobResponse(job_name=outcome.job, unit=outcome.unit, waited=outcome.waited)
    if not outcome.waited:
        return message
    run = outcome.run
    word = run.result if run else (outcome.result or "")
    message.result = result_enum(word)
    message.result_name = word
    message.invocation_id = outcome.invocation_id or ""
    if run is not None:
        message.duration_ms = run.duration_ms or 0
        if run.reason is not None:
            message.reason = run.reason
    if outcome.exit_code is not None:
        message.exit_code = outcome.exit_code
    return message


# ----------------------------------------------------------------- client side


def job_status_dict(message: pb.JobStatusProto) -> dict[str, Any]:
    """Return a JobStatusProto as the JSON fields `memsched status --json` uses (those the wire carries)."""
    last_result = ENUM_WORD.get(message.last_result)
    state = "running" if message.is_running else "paused" if message.is_paused else "idle"
    return {
        "job_name": message.job_name,
        "cron_expr": message.cron_expr,
        "state": state,
        "is_running": message.is_running,
        "is_paused": message.is_paused,
        "last_run": iso_ms(message.last_run_ms),
        "last_run_ms": message.last_run_ms,
        "last_duration_ms": message.last_duration_ms,
        "last_result": last_result,
        "last_error": message.last_error if message.HasField("last_error") else None,
        "last_run_metadata": dict(message.last_run_metadata),
        "next_run": iso_ms(message.next_run_ms),
        "next_run_ms": message.next_run_ms,
        "run_count": message.run_count,
        "error_count": message.error_count,
        "paused_until": iso_ms(message.paused_until_ms) if has_field(message, "paused_until_ms") else None,
        "paused_until_ms": message.paused_until_ms if has_field(message, "paused_until_ms") else None,
    }


def run_record_dict(message: pb.JobRunRecord) -> dict[str, Any]:
    """Return a JobRunRecord as the JSON fields `memsched history --json` uses."""
    return {
        "id": message.id,
        "job": message.job_name,
        "started": iso_ms(message.started_ms),
        "started_ms": message.started_ms,
        "ended_ms": message.ended_ms or None,
        "duration_ms": message.duration_ms if message.ended_ms else None,
        "result": message.result_name,
        "reason": message.reason if message.HasField("reason") else None,
        "exit_code": message.exit_code if message.HasField("exit_code") else None,
        "invocation_id": message.invocation_id or None,
        "trigger": message.trigger,
        "instance": message.instance or None,
        "metadata": dict(message.metadata),
    }


def run_response_dict(message: pb.RunJobResponse) -> dict[str, Any]:
    """Return a RunJobResponse as the JSON fields `memsched run --json` prints."""
    return {
        "job": message.job_name,
        "unit": message.unit,
        "waited": message.waited,
        "exit_code": message.exit_code if message.HasField("exit_code") else None,
        "result": message.result_name or None,
        "reason": message.reason if message.HasField("reason") else None,
        "invocation_id": message.invocation_id or None,
        "duration_ms": message.duration_ms if message.waited else None,
    }
