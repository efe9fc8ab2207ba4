"""Shared helpers for tests that build configs."""

from __future__ import annotations

from pathlib import Path

import tomli_w

from memsched.config import schema

DEFAULT_JOBS_OFF = {name: {"enabled": False} for name in schema.DEFAULT_JOBS}


def write_config(
    directory: Path,
    jobs: dict[str, dict] | None = None,
    *,
    defaults: bool = False,
    extra: dict | None = None,
    name: str = "memsched.toml",
) -> Path:
    """Write a config file into ``directory`` with its own registry (and store) paths; return its path.

    The built-in jobs are switched off unless ``defaults``.
    """
    document: dict = {"registry": {"path": str(directory / "registry.db")}}
    document.update(extra or {})
    all_jobs = {} if defaults else {k: dict(v) for k, v in DEFAULT_JOBS_OFF.items()}
    for job, table in (jobs or {}).items():
        all_jobs.setdefault(job, {}).update(table)
    document["jobs"] = all_jobs
    path = directory / name
    path.write_text(tomli_w.dumps(document))
    return path


def command_job(command: list[str], cron: str = "* * * * * *", **keys: object) -> dict:
    """A command job on a (by default) 1-second calendar, fired precisely."""
    table: dict = {"kind": "command", "cron": cron, "command": command, "accuracy": "1ms"}
    table.update(keys)
    return table
