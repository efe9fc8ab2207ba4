"""`memsched exec`, the one-shot entry point: what it records, publishes and exits with."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from memsched_testing import command_job, write_config
from systemd_env import SystemdTestEnv, wait_for
from test_units_install import install

MEMSCHED = [sys.executable, "-m", "memsched"]


def records(registry: Path) -> list[dict]:
    if not registry.exists():
        return []
    db = sqlite3.connect(registry)
    db.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in db.execute("SELECT * FROM runs ORDER BY id")]
    except sqlite3.OperationalError:  # created a moment ago, its tables not yet committed
        rows = []
    finally:
        db.close()
    return rows


def last_run(registry: Path) -> dict:
    """The latest run record (skipped slots a run overlapped are recorded after it)."""
    return [r for r in records(registry) if r["result"] != "skipped"][-1]


def exec_here(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, MEMSCHED_SCOPE="user", XDG_RUNTIME_DIR="/nonexistent-runtime")
    full.pop("INVOCATION_ID", None)
    full.pop("JOURNAL_STREAM", None)
    full.update(env or {})
    return subprocess.run([*MEMSCHED, "--config", str(config), "exec", *args], capture_output=True, text=True, env=full, timeout=60)


def test_exec_outside_systemd_records_the_run_and_prints(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"hello": command_job(["/bin/sh", "-c", "echo hi-there; echo oops >&2"])})
    proc = exec_here(config, "hello")
    assert proc.returncode == 0, proc.stderr
    assert "hi-there" in proc.stdout and "oops" in proc.stderr
    run = last_run(tmp_path / "registry.db")
    assert run["result"] == "success" and run["exit_code"] == 0 and run["trigger"] in ("manual", "unknown")
    assert run["duration_ms"] == run["ended_ms"] - run["started_ms"] >= 0
    assert json.loads(run["metadata"])["exit_status"] == "0"


def test_exec_exit_codes(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"fails": command_job(["/bin/sh", "-c", "exit 7"]), "missing": command_job(["/nonexistent/prog"])})
    failed = exec_here(config, "fails")
    assert failed.returncode == 1
    assert last_run(tmp_path / "registry.db")["reason"] == "command exited with status 7"
    missing = exec_here(config, "missing")
    assert missing.returncode == 1 and "cannot start '/nonexistent/prog'" in last_run(tmp_path / "registry.db")["reason"]
    unknown = exec_here(config, "nosuch")
    assert unknown.returncode == 2 and "unknown job 'nosuch'" in unknown.stderr
    gate_unknown = exec_here(config, "--gate", "nosuch")
    assert gate_unknown.returncode == 255, "a gate that cannot decide must not skip silently"
    bad = tmp_path / "bad.toml"
    bad.write_text('[jobs.x]\nkind = "command"\n')
    broken = subprocess.run([*MEMSCHED, "--config", str(bad), "exec", "x"], capture_output=True, text=True)
    assert broken.returncode == 2 and "jobs.x.cron" in broken.stderr and "Traceback" not in broken.stderr


def test_sigterm_stops_the_command_and_ends_interrupted(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"long": command_job(["/bin/sleep", "30"])})
    env = dict(os.environ, MEMSCHED_SCOPE="user", XDG_RUNTIME_DIR="/nonexistent-runtime")
    proc = subprocess.Popen([*MEMSCHED, "--config", str(config), "exec", "long"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: records(tmp_path / "registry.db"), 10, "the run to start")
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 75
    run = next(r for r in records(tmp_path / "registry.db") if r["result"] != "skipped")
    assert run["result"] == "interrupted" and run["exit_code"] == 75 and run["duration_ms"] < 10_000


def test_a_killed_run_is_closed_by_the_next(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"long": command_job(["/bin/sleep", "30"])})
    env = dict(os.environ, MEMSCHED_SCOPE="user", XDG_RUNTIME_DIR="/nonexistent-runtime")
    proc = subprocess.Popen([*MEMSCHED, "--config", str(config), "exec", "long"], env=env, start_new_session=True)
    wait_for(lambda: records(tmp_path / "registry.db"), 10, "the run to start")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last_run(tmp_path / "registry.db")["result"] == "running"
    config2 = write_config(tmp_path, {"long": command_job(["/bin/true"])})
    assert exec_here(config2, "long").returncode == 0
    first, second = [r for r in records(tmp_path / "registry.db") if r["result"] != "skipped"]
    assert first["result"] == "failed" and "without recording a result" in first["reason"]
    assert second["result"] == "success"


def test_under_systemd_status_invocation_and_no_jitter_in_duration(systemd: SystemdTestEnv) -> None:
    job = command_job(["/bin/sleep", "2"], cron="0 0 1 1 *")
    config = write_config(systemd.tmp, {"slow": job, "jittery": command_job(["/bin/sleep", "0.3"], jitter="3s", overlap="queue")})
    install(systemd, config)
    systemd.systemctl("start", "--no-block", "memsched-slow.service")
    status = wait_for(
        lambda: (t := systemd.show("memsched-slow.service", "StatusText")["StatusText"]).startswith("running") and t,
        10,
        "STATUS= from the run",
    )
    assert status == "running command job slow"
    invocation = systemd.show("memsched-slow.service", "InvocationID")["InvocationID"]
    systemd.wait_unit_state("memsched-slow.service", "inactive", timeout=15)
    run = next(r for r in records(systemd.tmp / "registry.db") if r["job"] == "slow")
    assert run["invocation_id"] == invocation and run["result"] == "success"
    assert systemd.show("memsched-slow.service", "StatusText")["StatusText"] == "success"
    jittery = wait_for(lambda: [r for r in records(systemd.tmp / "registry.db") if r["job"] == "jittery" and r["ended_ms"]], 20, "a jittered run")
    systemd.systemctl("stop", "memsched-jittery.timer")
    assert all(r["duration_ms"] < 1500 for r in jittery), "the random delay is not part of a run's duration"
    tagged = systemd.wait_journal("MEMSCHED_JOB=slow", f"MEMSCHED_INVOCATION_ID={invocation}", text="success after")
    assert tagged[0]["_SYSTEMD_USER_UNIT"] == "memsched-slow.service"
