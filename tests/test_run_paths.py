"""Every way a run starts or fails to: the gate's and the runner's error paths, their exit codes,
and the bounds on what a run holds in memory (issue 11.2, issue 12.8)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from memsched_testing import command_job, write_config
from systemd_env import SystemdTestEnv, wait_for
from test_runner import exec_here, records
from test_units_install import install


def _schema_without_runs(path: Path) -> None:
    """A file that claims to be a current registry but lacks its tables (a half-restored backup)."""
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 2")
    db.execute("CREATE TABLE unrelated (a)")
    db.commit()
    db.close()


def _malformed_pages(path: Path, config: Path) -> None:
    """A registry whose header and schema read fine but whose run pages are garbage."""
    assert exec_here(config, "j").returncode == 0  # creates and migrates the registry
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = DELETE")
    db.executemany(
        "INSERT INTO runs (job, trigger, started_ms, result, reason) VALUES ('j', 'manual', ?, 'success', ?)",
        [(i, "x" * 300) for i in range(3000)],
    )
    db.commit()
    db.close()
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(page, len(data), page):  # page 1 (header, schema) stays; every table's pages are garbage
        data[offset : offset + page] = b"\xa5" * page
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_schema_without_runs, _malformed_pages], ids=["no-tables", "malformed-pages"])
def test_gate_and_runner_end_in_their_codes_on_a_broken_registry(tmp_path: Path, damage) -> None:
    config = write_config(tmp_path, {"j": command_job(["/bin/true"])})
    registry = tmp_path / "registry.db"
    if damage is _schema_without_runs:
        damage(registry)
    else:
        damage(registry, config)
    gate = exec_here(config, "--gate", "j")
    assert gate.returncode == 255, f"the gate cannot decide: 255, never a skip (1): {gate.returncode} {gate.stderr}"
    assert "Traceback" not in gate.stderr and len(gate.stderr.strip().splitlines()) == 1, gate.stderr
    assert gate.stderr.startswith("memsched exec: ") and "registry" in gate.stderr
    run = exec_here(config, "j")
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert run.stderr.startswith("memsched exec: ") and "registry" in run.stderr


def test_a_gate_that_cannot_decide_fails_the_start_under_systemd(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, {"guarded": command_job(["/bin/true"], cron="0 0 1 1 *")})
    install(systemd, config)
    _schema_without_runs(systemd.tmp / "registry.db")
    systemd.systemctl("start", "memsched-guarded.service", check=False)
    systemd.wait_unit_state("memsched-guarded.service", "failed")
    shown = systemd.show("memsched-guarded.service", "Result", "ExecMainStartTimestampMonotonic")
    assert shown["Result"] == "exit-code", "systemd must see a start that failed, not a clean skip"
    assert shown["ExecMainStartTimestampMonotonic"] == "0", "the job itself never started"
    logged = systemd.wait_journal("_SYSTEMD_USER_UNIT=memsched-guarded.service", text="memsched exec: ")
    assert not [e for e in systemd.journal("_SYSTEMD_USER_UNIT=memsched-guarded.service") if "Traceback" in str(e.get("MESSAGE"))]
    assert "registry" in logged[0]["MESSAGE"]


_PEAK_RSS = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _peak_rss_kib(config: Path, job: str) -> int:
    env = dict(os.environ, MEMSCHED_SCOPE="user", XDG_RUNTIME_DIR="/nonexistent-runtime")
    env.pop("INVOCATION_ID", None)
    env.pop("JOURNAL_STREAM", None)
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, sys.executable, "-m", "memsched", "--config", str(config), "exec", job],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )
    return int(out.stdout.strip())


def test_one_huge_output_line_is_not_held_whole(tmp_path: Path) -> None:
    size = 96 * 1024 * 1024
    config = write_config(
        tmp_path,
        {
            "small": command_job(["/bin/sh", "-c", "echo one short line"]),
            "huge": command_job(["/bin/sh", "-c", f"head -c {size} /dev/zero | tr '\\0' x; echo; echo tail-line"]),
        },
    )
    baseline = _peak_rss_kib(config, "small")
    peak = _peak_rss_kib(config, "huge")
    assert peak - baseline < 32 * 1024, f"a {size >> 20} MiB line raised the runner's peak RSS by {(peak - baseline) >> 10} MiB"
    run = [r for r in records(tmp_path / "registry.db") if r["job"] == "huge" and r["result"] != "skipped"][-1]
    assert run["result"] == "success"


def test_a_long_line_is_forwarded_in_pieces_and_keeps_its_text(tmp_path: Path) -> None:
    text = "é" * 70_000  # 140 000 bytes of two-byte characters: pieces must not cut one in half
    script = tmp_path / "emit.py"
    script.write_text(f"import sys\nsys.stdout.write({text!r} + '\\nafter\\n')\n")
    config = write_config(tmp_path, {"long": command_job([sys.executable, str(script)])})
    proc = exec_here(config, "long")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    pieces = [line for line in lines if line.startswith("é")]
    assert len(pieces) >= 2 and all(len(p.encode()) <= 64 * 1024 for p in pieces), [len(p) for p in pieces]
    assert "".join(pieces) == text and "\ufffd" not in "".join(pieces)
    assert "after" in lines
