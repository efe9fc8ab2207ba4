"""Shared set-up of the benchmarks that need installed jobs: a config with N command jobs,
installed into a private sandbox manager, with a little run history."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memsched.config import schema  # noqa: E402
from memsched.systemd.sandbox import Sandbox  # noqa: E402


def install_jobs(box: Sandbox, work: Path, count: int) -> tuple[dict[str, str], list[str]]:
    """Install ``count`` command jobs (the built-in ones off) into the sandbox; run three of them once.

    Returns the environment for clients and the memsched command line (with --config).
    """
    env = dict(os.environ, **box.env())
    # An installed package has its bytecode compiled; a session with PYTHONDONTWRITEBYTECODE would not.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    jobs: dict[str, dict] = {name: {"enabled": False} for name in schema.DEFAULT_JOBS}
    for i in range(count):
        jobs[f"job{i:02d}"] = {"kind": "command", "cron": f"{i % 60} 3 * * *", "command": ["/bin/true"]}
    config = work / "memsched.toml"
    config.write_text(tomli_w.dumps({"registry": {"path": str(work / "registry.db")}, "jobs": jobs}))
    memsched = [str(Path(sys.executable).parent / "memsched"), "--config", str(config)]
    subprocess.run([*memsched, "install-units"], env=env, check=True, stdout=subprocess.DEVNULL)
    for i in range(3):  # some history, so that the registry is read for real
        subprocess.run([*memsched, "run", f"job{i:02d}", "--wait"], env=env, check=True, stdout=subprocess.DEVNULL)
    return env, memsched
