"""`memsched quickstart`: a first look on this machine, end to end, through systemd.

Uses the user's systemd manager when one runs; where none does (containers, CI,
a fresh VM) and we are root, a private one (`memsched sandbox`). Then: a demo
config, three weeks of sample agent events ingested into a demo store, the units
installed, every job run once through systemd, and the resulting status.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import tomli_w

from memsched.config import schema
from memsched.config.load import Config, load_config
from memsched.errors import ManagerUnavailable
from memsched.paths import state_dir
from memsched.systemd.connect import manager_address

SANDBOX_NAME = "quickstart"
SANDBOX_ROOT = Path("/run/memsched/sandbox") / SANDBOX_NAME


def sandbox_root(env: dict[str, str] | None = None) -> Path:
    """Return where quickstart keeps its private manager: $MEMSCHED_QUICKSTART_ROOT, else SANDBOX_ROOT.

    The override lets a test (or a second checkout) use its own manager instead of stopping
    the one a user's earlier quickstart left running.
    """
    value = (os.environ if env is None else env).get("MEMSCHED_QUICKSTART_ROOT", "")
    return Path(value) if value.startswith("/") else SANDBOX_ROOT
SAMPLE_DAYS = 21


@dataclass
class QuickstartReport:
    """What quickstart did, for the CLI to print."""

    sandbox: bool
    config_path: Path
    events: int = 0
    install_changes: int = 0
    runs: list[tuple[str, str, int | None]] = field(default_factory=list)  # job, result, exit code
    toc_counts: dict[str, int] = field(default_factory=dict)
    pending: int = 0
    env: dict[str, str] = field(default_factory=dict)


def _ensure_manager(step: Callable[[str], None]) -> tuple[bool, dict[str, str]]:
    """Return (using a sandbox, the environment to add), starting the sandbox when no manager runs."""
    try:
        manager_address("user")
        step("using your systemd user manager")
        return False, {}
    except ManagerUnavailable:
        if os.geteuid() != 0:
            raise
    from memsched.systemd.sandbox import Sandbox

    box = Sandbox(sandbox_root(), SANDBOX_NAME)
    if box.is_running():
        step(f"using the private systemd manager already running in {box.root}")
    else:
        step("no systemd manager runs here: starting a private one (memsched sandbox)")
        box.start()
    return True, box.env()


def _write_config(directory: Path, config_path: Path) -> None:
    document = {
        "store": {"path": str(directory / "memory.db")},
        "registry": {"path": str(directory / "registry.db")},
        "jobs": {name: {} for name in schema.DEFAULT_JOBS},
    }
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text("# Written by `memsched quickstart`: the built-in jobs on a demo store.\n" + tomli_w.dumps(document))


def quickstart(step: Callable[[str], None]) -> QuickstartReport:
    """Run the whole first look; ``step`` is told what happens. Returns the report.

    Raises :class:`ManagerUnavailable` when no manager runs and we cannot start one.
    """
    sandbox, extra_env = _ensure_manager(step)
    os.environ.update(extra_env)
    os.environ["MEMSCHED_SCOPE"] = "user"
    demo = state_dir("user") / "quickstart"
    # In a private manager the config directory is private too: use the standard path there, so
    # that plain `memsched status` finds it after `eval "$(memsched sandbox env --name quickstart)"`.
    config_path = Path(os.environ["XDG_CONFIG_HOME"]) / "memsched" / "memsched.toml" if sandbox else demo / "memsched.toml"
    _write_config(demo, config_path)
    config: Config = load_config(config_path)
    report = QuickstartReport(sandbox=sandbox, config_path=config_path, env=extra_env)
    step(f"config: {config_path}")

    from memsched.ops.memory import ingest
    from memsched.store import open_configured_store
    from memsched.store.sample import generate_events, to_jsonl

    start_ms = (int(time.time() * 1000) // 86_400_000 - SAMPLE_DAYS) * 86_400_000
    with open_configured_store(config, "user") as store:
        result = ingest(store, to_jsonl(generate_events(start_ms, SAMPLE_DAYS, seed=7)), name="sample events")
    report.events = result.inserted
    step(f"ingested {result.inserted} sample events ({SAMPLE_DAYS} days of agent sessions) into {demo / 'memory.db'}")

    from memsched.ops.units import install

    installed = install(config, "user")
    report.install_changes = installed.changes
    step(f"installed the units ({installed.changes} changes) in {installed.plan.unit_dir}")

    from memsched.ops.control import run_now

    for job in config.enabled_jobs:
        outcome = run_now(config, "user", job, wait=True)
        result_text = outcome.run.result if outcome.run else str(outcome.result)
        report.runs.append((job, result_text, outcome.exit_code))
        step(f"ran {job} through systemd: {result_text}")

    with open_configured_store(config, "user") as store:
        for level in ("year", "month", "week", "day", "segment"):
            nodes = store.list_nodes(level)
            report.toc_counts[level] = len(nodes)
            report.pending += sum(1 for n in nodes if n.status == "pending")
    return report
