"""install-units converges after a kill at any point: killed at each of its steps (the
MEMSCHED_TEST_KILL_AT hook SIGKILLs it there) and at random instants, the next run finishes the
work: the manager has loaded every file, timers carry the new calendar, removed units are gone,
no temporary file is left, the registry records exactly what is installed, and a third run
changes nothing. In between, doctor reports what is not loaded. Against the real private manager."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memsched_testing import command_job, write_config
from systemd_env import SystemdTestEnv, wait_for

STEPS = ("temp-written", "file-written", "stopped", "files-written", "reloaded", "started", "recorded")
BEFORE = {"alpha": command_job(["/bin/true"], cron="0 * * * *"), "beta": command_job(["/bin/true"], cron="30 4 * * *")}
AFTER = {"alpha": command_job(["/bin/true"], cron="15 * * * *"), "gamma": command_job(["/bin/true"], cron="45 * * * *")}


def install(systemd: SystemdTestEnv, config: Path, *, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(systemd.env)
    if kill_at:
        env["MEMSCHED_TEST_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "memsched", "install-units", "--config", str(config), "--json"], env=env, capture_output=True, text=True, timeout=120)


def recorded(registry: Path, unit_dir: Path) -> set[str]:
    db = sqlite3.connect(registry)
    try:
        return {row[0] for row in db.execute("SELECT name FROM installed_units WHERE unit_dir = ?", (str(unit_dir),))}
    finally:
        db.close()


def assert_converged(systemd: SystemdTestEnv, config: Path) -> None:
    unit_dir = systemd.unit_dir
    files = {p.name for p in unit_dir.glob("memsched-*") if p.is_file()}
    wanted = {"memsched-alpha.timer", "memsched-alpha.service", "memsched-gamma.timer", "memsched-gamma.service", "memsched-failure@.service"}
    assert files == wanted
    assert not list(unit_dir.glob(".memsched-*.tmp")), "temporary files of the killed run are removed"
    assert recorded(systemd.tmp / "registry.db", unit_dir) == wanted
    for unit in sorted(wanted - {"memsched-failure@.service"}):
        assert systemd.show(unit, "NeedDaemonReload")["NeedDaemonReload"] == "no", unit
    alpha = systemd.show("memsched-alpha.timer", "TimersCalendar", "ActiveState")
    assert alpha["TimersCalendar"].startswith("{ OnCalendar=*-*-* *:15:00 UTC") and alpha["ActiveState"] == "active"
    assert systemd.show("memsched-gamma.timer", "ActiveState")["ActiveState"] == "active"
    assert systemd.show("memsched-beta.timer", "LoadState")["LoadState"] == "not-found"
    again = install(systemd, config)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["changes"] == 0 and not report["restarted"] and not report["started"], report
    doctor = systemd.memsched("doctor", "--config", str(config))
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr


@pytest.mark.parametrize("step", STEPS)
def test_killed_at_each_step_the_next_install_converges(systemd: SystemdTestEnv, step: str) -> None:
    first = install(systemd, write_config(systemd.tmp, BEFORE))
    assert first.returncode == 0, first.stderr
    config = write_config(systemd.tmp, AFTER)
    killed = install(systemd, config, kill_at=step)
    assert killed.returncode == -signal.SIGKILL, (step, killed.returncode, killed.stderr)
    if step in ("file-written", "files-written"):
        # files on disk the manager has not loaded: doctor says so (it said "no problems found" before)
        doctor = systemd.memsched("doctor", "--config", str(config))
        assert doctor.returncode == 1 and "memsched-alpha.timer" in doctor.stdout, doctor.stdout
    if step == "temp-written":
        assert list(systemd.unit_dir.glob(".memsched-*.tmp")), "the hook fired between writing and renaming"
    finished = install(systemd, config)
    assert finished.returncode == 0, finished.stderr
    if step not in ("recorded",):
        report = json.loads(finished.stdout)
        assert report["changes"] > 0 and "memsched-alpha.timer" in report["restarted"] + report["started"], report
    assert_converged(systemd, config)


def test_files_written_but_not_loaded_are_loaded(systemd: SystemdTestEnv, tmp_path: Path) -> None:
    """What a kill between writing and daemon-reload leaves, made by hand: the files of the new config
    in place, the manager still on the old ones. The next install loads them and restarts the timer."""
    assert install(systemd, write_config(systemd.tmp, {"alpha": BEFORE["alpha"]})).returncode == 0
    config = write_config(systemd.tmp, {"alpha": AFTER["alpha"]})
    out = tmp_path / "rendered"
    assert systemd.memsched("render", "--config", str(config), "--out", str(out)).returncode == 0
    for name in ("memsched-alpha.timer", "memsched-alpha.service"):
        (systemd.unit_dir / name).write_text((out / name).read_text())
    assert systemd.show("memsched-alpha.timer", "NeedDaemonReload")["NeedDaemonReload"] == "yes"
    doctor = systemd.memsched("doctor", "--config", str(config))
    assert doctor.returncode == 1 and "memsched-alpha.timer" in doctor.stdout and "not loaded" in doctor.stdout, doctor.stdout
    report = json.loads(install(systemd, config).stdout)
    assert "memsched-alpha.timer" in report["restarted"], report
    assert systemd.show("memsched-alpha.timer", "TimersCalendar")["TimersCalendar"].startswith("{ OnCalendar=*-*-* *:15:00 UTC")
    assert systemd.show("memsched-alpha.timer", "NeedDaemonReload")["NeedDaemonReload"] == "no"
    assert json.loads(install(systemd, config).stdout)["changes"] == 0


def test_killed_at_random_instants_the_next_install_converges(systemd: SystemdTestEnv) -> None:
    rng = random.Random(13)  # fixed: the same instants in every run
    before, after = write_config(systemd.tmp, BEFORE, name="before.toml"), write_config(systemd.tmp, AFTER, name="after.toml")
    started = time.monotonic()
    assert install(systemd, before).returncode == 0
    full = time.monotonic() - started
    for _ in range(8):
        assert install(systemd, before).returncode == 0  # back to the old config, fully installed
        proc = subprocess.Popen(
            [sys.executable, "-m", "memsched", "install-units", "--config", str(after), "--json"], env=systemd.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.0, full * 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        finished = install(systemd, after)
        assert finished.returncode == 0, finished.stderr
        assert_converged(systemd, after)


def test_two_installs_at_once_do_not_interleave(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, AFTER)
    procs = [
        subprocess.Popen([sys.executable, "-m", "memsched", "install-units", "--config", str(config)], env=systemd.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    wait_for(lambda: systemd.show("memsched-alpha.timer", "ActiveState")["ActiveState"] == "active", 10, "the timer")
    assert_converged(systemd, config)
