"""Prometheus text-format metrics for node_exporter's textfile collector.

Written after every run from the run registry (so the counters survive
restarts), to a temporary file in the same directory and renamed into place:
the collector never reads a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from memsched.registry import Registry

_HELP = {
    "memsched_job_last_run_start_timestamp_seconds": ("gauge", "Start of the job's last run (Unix time)."),
    "memsched_job_last_run_end_timestamp_seconds": ("gauge", "End of the job's last run (Unix time)."),
    "memsched_job_last_success_timestamp_seconds": ("gauge", "Start of the job's last successful run (Unix time)."),
    "memsched_job_last_run_duration_seconds": ("gauge", "Duration of the job's last run, random delay excluded."),
    "memsched_job_last_run_success": ("gauge", "1 when the job's last run succeeded, else 0."),
    "memsched_job_last_run_result": ("gauge", "The result of the job's last run, as a label (value 1)."),
    "memsched_job_runs_total": ("counter", "Successful runs of the job."),
    "memsched_job_errors_total": ("counter", "Failed runs of the job."),
    "memsched_job_skips_total": ("counter", "Slots of the job memsched decided not to run (overlap, pause, a manual skip)."),
    "memsched_job_lost_slots_total": ("counter", "Slots of the job that should have run and did not, by reason code."),
}


def render(registry: Registry, jobs: list[str]) -> str:
    """Return the metrics of ``jobs`` in the Prometheus text exposition format."""
    counts = registry.counts()
    by_reason = registry.slot_counts()
    last = registry.last_runs()
    successes = registry.last_successes()
    samples: dict[str, list[str]] = {name: [] for name in _HELP}
    for job in sorted(jobs):
        label = f'job="{job}"'
        c = counts.get(job)
        samples["memsched_job_runs_total"].append(f"memsched_job_runs_total{{{label}}} {c.runs if c else 0}")
        samples["memsched_job_errors_total"].append(f"memsched_job_errors_total{{{label}}} {c.errors if c else 0}")
        samples["memsched_job_skips_total"].append(f"memsched_job_skips_total{{{label}}} {c.skips if c else 0}")
        for (result, code), slots in sorted(by_reason.get(job, {}).items()):
            if result == "lost":
                samples["memsched_job_lost_slots_total"].append(f'memsched_job_lost_slots_total{{{label},reason="{code}"}} {slots}')
        run = last.get(job)
        if run is not None:
            samples["memsched_job_last_run_start_timestamp_seconds"].append(
                f"memsched_job_last_run_start_timestamp_seconds{{{label}}} {run.started_ms / 1000:.3f}"
            )
            if run.ended_ms:
                samples["memsched_job_last_run_end_timestamp_seconds"].append(
                    f"memsched_job_last_run_end_timestamp_seconds{{{label}}} {run.ended_ms / 1000:.3f}"
                )
                samples["memsched_job_last_run_duration_seconds"].append(
                    f"memsched_job_last_run_duration_seconds{{{label}}} {(run.duration_ms or 0) / 1000:.3f}"
                )
            samples["memsched_job_last_run_success"].append(
                f"memsched_job_last_run_success{{{label}}} {1 if run.result == 'success' else 0}"
            )
            samples["memsched_job_last_run_result"].append(f'memsched_job_last_run_result{{{label},result="{run.result}"}} 1')
        if job in successes:
            samples["memsched_job_last_success_timestamp_seconds"].append(
                f"memsched_job_last_success_timestamp_seconds{{{label}}} {successes[job] / 1000:.3f}"
            )
    lines = []
    for name, (kind, help_text) in _HELP.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples[name]]
    return "\n".join(lines) + "\n"


def write_textfile(path: Path | str, registry: Registry, jobs: list[str]) -> None:
    """Write the metrics to ``path`` atomically (temporary file in the same directory, then rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(render(registry, jobs))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
