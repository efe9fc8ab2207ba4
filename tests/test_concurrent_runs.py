"""Concurrent jobs: every instance is its own run to the end — its own failure unit instance (two
failures, two notifications) and its own dead-run clean-up (issue 11.6)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from memsched_testing import command_job, write_config
from systemd_env import SystemdTestEnv, wait_for
from test_manual_runs import actual_runs
from test_runner import exec_here, records
from test_units_install import install


def _instances(systemd: SystemdTestEnv, job: str) -> list[str]:
    out = systemd.systemctl("list-units", "--all", "--plain", "--no-legend", f"memsched-{job}@*.service").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def test_two_instances_failing_at_once_make_two_notifications(systemd: SystemdTestEnv) -> None:
    alerts = systemd.tmp / "alerts.txt"
    alert = ["/bin/sh", "-c", f'echo "$MEMSCHED_INVOCATION_ID $MEMSCHED_REASON" >> {alerts}; sleep 2']
    config = write_config(
        systemd.tmp,
        {"par": command_job(["/bin/sh", "-c", "sleep 1; exit 3"], cron="0 0 1 1 *", overlap="concurrent")},
        extra={"alerts": {"on_failure": alert}},
    )
    install(systemd, config)
    for _ in range(2):
        assert systemd.memsched("run", "par", "--config", str(config)).returncode == 0
    wait_for(lambda: len([r for r in actual_runs(config, "par") if r["result"] == "failed"]) == 2, 30, "both runs to fail")
    lines = wait_for(lambda: (t := alerts.read_text().splitlines() if alerts.exists() else []) and len(t) >= 2 and t, 30,
                     "a notification for each failed instance")
    invocations = {line.split()[0] for line in lines}
    assert len(lines) == 2 and len(invocations) == 2, lines
    assert invocations == {r["invocation_id"] for r in actual_runs(config, "par")}
    assert all("status 3" in line for line in lines)
    failure_units = systemd.systemctl("list-units", "--all", "--plain", "--no-legend", "memsched-failure@par:*").stdout
    assert len([l for l in failure_units.splitlines() if l.strip()]) == 2, failure_units


def test_two_instances_killed_at_once_are_both_closed(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, {"par": command_job(["/bin/sleep", "60"], cron="0 0 1 1 *", overlap="concurrent")})
    install(systemd, config)
    for _ in range(2):
        assert systemd.memsched("run", "par", "--config", str(config)).returncode == 0
    wait_for(lambda: len(actual_runs(config, "par")) == 2, 20, "both instances to record their start")
    units = _instances(systemd, "par")
    assert len(units) == 2
    systemd.systemctl("kill", "--signal=KILL", *units)
    closed = wait_for(lambda: (rs := actual_runs(config, "par")) and all(r["result"] != "running" for r in rs) and rs, 30,
                      "both killed runs to be closed")
    assert [r["result"] for r in closed] == ["failed", "failed"], closed


def test_a_killed_concurrent_instance_is_closed_by_the_next_start(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"par": command_job(["/bin/sleep", "30"], overlap="concurrent")})
    env = dict(os.environ, MEMSCHED_SCOPE="user", XDG_RUNTIME_DIR="/nonexistent-runtime")
    env.pop("INVOCATION_ID", None)
    proc = subprocess.Popen([sys.executable, "-m", "memsched", "--config", str(config), "exec", "par", "--instance", "m-one"],
                            env=env, start_new_session=True)
    wait_for(lambda: records(tmp_path / "registry.db"), 15, "the instance to record its start")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    config2 = write_config(tmp_path, {"par": command_job(["/bin/true"], overlap="concurrent")})
    assert exec_here(config2, "par", "--instance", "m-two").returncode == 0
    first, second = [r for r in records(tmp_path / "registry.db") if r["result"] != "skipped"]
    assert first["instance"] == "m-one" and first["result"] == "failed" and "without recording a result" in first["reason"]
    assert second["instance"] == "m-two" and second["result"] == "success"


def test_run_wait_reports_the_instance_s_own_result(systemd: SystemdTestEnv) -> None:
    """The instance unit is unloaded when it ends: --wait must still report that instance's run, not a blank success."""
    config = write_config(systemd.tmp, {"par": command_job(["/bin/sh", "-c", "sleep 0.5; exit 4"], cron="0 0 1 1 *", overlap="concurrent")})
    install(systemd, config)
    proc = systemd.memsched("run", "par", "--wait", "--json", "--config", str(config))
    assert proc.returncode == 4, proc.stdout + proc.stderr
    answer = json.loads(proc.stdout)
    (run,) = actual_runs(config, "par")
    assert answer["result"] == "failed" and answer["run_id"] == run["id"] and answer["invocation_id"] == run["invocation_id"]
    assert answer["unit"] == f"memsched-par@{run['instance']}.service"
