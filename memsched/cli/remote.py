"""status, pause, resume and run against a gRPC facade (`memsched --endpoint ADDR ...`): call it, print the answer.

The output has the local commands' shape; it holds what the wire carries (the
original JobStatusProto has no skip count, time zone or unit states).
"""

from __future__ import annotations

import sys

import click

from memsched.cli.common import echo_json, echo_table, format_duration, format_time, usage_fail
from memsched.errors import EXIT_FAILURE

ENDPOINT_COMMANDS = ("status", "pause", "resume", "run")


def _client(endpoint: str):  # -> FacadeClient
    from memsched.facade.client import FacadeClient, token_from_environment

    return FacadeClient(endpoint, token_from_environment())


def remote_status(endpoint: str, jobs: list[str], utc: bool, as_json: bool) -> None:
    """Print GetSchedulerStatus like `memsched status` (only the JOBS named, when given)."""
    from memsched.errors import UnknownJobError
    from memsched.facade.convert import job_status_dict

    with _client(endpoint) as client:
        answer = client.status()
    views = [job_status_dict(j) for j in answer.jobs]
    if jobs:
        known = {v["job_name"]: v for v in views}
        for name in jobs:
            if name not in known:
                raise UnknownJobError(name, sorted(known))
        views = [known[name] for name in jobs]
    if as_json:
        echo_json({"scheduler_running": answer.scheduler_running, "endpoint": endpoint, "jobs": views})
        return
    rows = [
        [
            v["job_name"],
            v["state"],
            format_time(v["last_run_ms"], utc),
            v["last_result"] or "-",
            format_duration(v["last_duration_ms"]) if v["last_run_ms"] else "-",
            format_time(v["next_run_ms"], utc),
            str(v["run_count"]),
            str(v["error_count"]),
        ]
        for v in views
    ]
    echo_table(["JOB", "STATE", "LAST RUN", "RESULT", "DURATION", "NEXT RUN", "RUNS", "ERRORS"], rows)


def _names(endpoint: str, jobs: list[str] | None) -> list[str]:
    if jobs is not None:
        return jobs
    with _client(endpoint) as client:
        return [j.job_name for j in client.status().jobs]


def remote_pause_resume(endpoint: str, verb: str, jobs: list[str] | None, as_json: bool, resume_at_ms: int | None = None) -> None:
    """PauseJob (until ``resume_at_ms`` when given) or ResumeJob for each job (every job the facade lists for --all);
    exit 1 when one failed."""
    names = _names(endpoint, jobs)
    results = []
    with _client(endpoint) as client:
        for name in names:
            answer = client.pause(name, resume_at_ms) if verb == "pause" else client.resume(name)
            results.append({"job": name, "success": answer.success, "error": answer.error if answer.HasField("error") else None})
            if verb == "pause" and resume_at_ms is not None:
                results[-1]["paused_until_ms"] = resume_at_ms
    if as_json:
        echo_json(results)
    else:
        for r in results:
            if r["success"]:
                click.echo(f"{r['job']}: {'paused' if verb == 'pause' else 'resumed'}")
            else:
                click.echo(f"memsched: {r['job']}: {r['error']}", err=True)
    if not all(r["success"] for r in results):
        sys.exit(EXIT_FAILURE)


def remote_run(endpoint: str, job: str, wait: bool, as_json: bool) -> None:
    """RunJob; with --wait exit with the run's exit code, as `memsched run --wait` does."""
    from memsched.facade.convert import run_response_dict

    with _client(endpoint) as client:
        answer = run_response_dict(client.run(job, wait))
    if as_json:
        echo_json(answer)
    elif not wait:
        click.echo(f"started {answer['unit']} through {endpoint}")
    else:
        reason = f": {answer['reason']}" if answer["reason"] else ""
        click.echo(f"{answer['unit']}: {answer['result']}{reason} (exit {answer['exit_code']})")
    if wait and answer["exit_code"]:
        sys.exit(answer["exit_code"])


def refuse(option: str) -> None:
    """Exit 2: ``option`` has no counterpart in the facade's calls."""
    usage_fail(f"{option} cannot be used with --endpoint (the gRPC call has no such field)")

