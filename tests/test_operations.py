"""status, pause, resume, run, history, logs and doctor against a real systemd user manager."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from memsched_testing import command_job, write_config
from systemd_env import SystemdTestEnv, wait_for
from test_units_install import install, installed_timers


def status(systemd: SystemdTestEnv, config: Path, *jobs: str) -> dict[str, dict]:
    proc = systemd.memsched("status", *jobs, "--json", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    return {j["job_name"]: j for j in json.loads(proc.stdout)["jobs"]}


def run_starts(config: Path, job: str) -> list[int]:
    db = sqlite3.connect(config.parent / "registry.db")
    rows = db.execute("SELECT started_ms FROM runs WHERE job = ? AND result != 'skipped' ORDER BY started_ms", (job,)).fetchall()
    db.close()
    return [r[0] for r in rows]


def test_status_next_runs_and_counts_match_what_happened(systemd: SystemdTestEnv) -> None:
    jobs = {
        "tick": command_job(["/bin/true"], overlap="queue"),
        "broken": command_job(["/bin/sh", "-c", "echo broken >&2; exit 3"], overlap="queue"),
        "slow": command_job(["/bin/sleep", "1.5"], overlap="skip"),
    }
    config = write_config(systemd.tmp, jobs, defaults=True)
    install(systemd, config)
    wait_for(lambda: len(run_starts(config, "slow")) >= 3, 20, "three runs of the slow job")
    for name in jobs:
        systemd.systemctl("stop", f"memsched-{name}.timer")
    wait_for(lambda: all(s["state"] != "running" for s in status(systemd, config, *jobs).values()), 10, "runs to finish")
    view = status(systemd, config)

    # next runs: systemd's own next elapse, as list-timers shows it
    timers = installed_timers(systemd)
    for job in ("toc_rollup_day", "toc_rollup_week", "toc_rollup_month", "toc_rollup_year", "compaction"):
        listed = timers[f"memsched-{job}.timer"]
        assert listed is not None
        assert abs(view[job]["next_run_ms"] - listed.timestamp() * 1000) < 1000, job
        assert view[job]["next_run"] and view[job]["state"] == "idle"

    db = sqlite3.connect(systemd.tmp / "registry.db")
    counts = dict(db.execute("SELECT job || ':' || result, COUNT(*) FROM runs GROUP BY job, result").fetchall())
    tick, broken, slow = view["tick"], view["broken"], view["slow"]
    assert tick["run_count"] == counts["tick:success"] >= 2 and tick["error_count"] == 0 and tick["skip_count"] == 0
    assert broken["error_count"] == counts["broken:failed"] >= 2 and broken["run_count"] == 0
    assert broken["last_result"] == "failed" and "status 3" in broken["last_error"] and broken["state"] == "failed"
    assert slow["skip_count"] == counts["slow:skipped"] >= 2, "a skipped slot counts a skip"
    assert slow["run_count"] == counts["slow:success"] >= 3, "skips are not runs"
    assert 1400 <= slow["last_duration_ms"] < 2500, "the duration is the run's own"
    assert slow["last_run_ms"] > 0 and slow["last_run"].endswith("+00:00")
    for field in ("job_name", "cron_expr", "last_run_ms", "last_duration_ms", "last_result", "last_error", "next_run_ms",
                  "run_count", "error_count", "is_running", "is_paused", "last_run_metadata"):
        assert field in slow
    table = systemd.memsched("status", "--utc", "--config", str(config))
    assert table.returncode == 0
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["JOB", "STATE", "LAST", "RUN", "RESULT", "DURATION", "NEXT", "RUN", "RUNS", "ERRORS", "SKIPS", "LOST", "LATE"]
    assert any(r.startswith("broken") and " failed " in r for r in rows)


def test_pause_survives_reload_and_manager_restart_then_resume(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, {"tick": command_job(["/bin/true"])})
    install(systemd, config)
    wait_for(lambda: len(run_starts(config, "tick")) >= 1, 10, "a first run")
    paused = systemd.memsched("pause", "tick", "--config", str(config))
    assert paused.returncode == 0 and "tick: paused" in paused.stdout
    systemd.wait_unit_state("memsched-tick.service", ("inactive", "failed"))  # a run already under way may finish
    time.sleep(0.5)
    before = len(run_starts(config, "tick"))
    time.sleep(3.5)
    assert len(run_starts(config, "tick")) == before, "no run while paused"
    assert status(systemd, config)["tick"]["state"] == "paused"

    systemd.systemctl("daemon-reload")
    systemd.sandbox.restart_manager()
    time.sleep(2.5)
    assert len(run_starts(config, "tick")) == before, "still paused after daemon-reload and a manager restart"
    view = status(systemd, config)["tick"]
    assert view["is_paused"] and view["state"] == "paused" and view["paused_by"] and view["next_run_ms"] == 0

    resumed = systemd.memsched("resume", "tick", "--config", str(config))
    assert resumed.returncode == 0 and "tick: resumed" in resumed.stdout
    wait_for(lambda: len(run_starts(config, "tick")) >= before + 2, 10, "runs after resume")
    assert not status(systemd, config)["tick"]["is_paused"]


def _next_slot_gap(period: int) -> float:
    return period - (time.time() % period)


def test_resume_catches_up_a_missed_slot_unless_skip_missed(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, {"every10": command_job(["/bin/true"], cron="*/10 * * * * *")})
    install(systemd, config)
    wait_for(lambda: run_starts(config, "every10"), 15, "a first run")
    for skip_missed in (True, False):
        systemd.memsched("pause", "every10", "--config", str(config), check=True)
        count = len(run_starts(config, "every10"))
        time.sleep(_next_slot_gap(10) + 0.5)  # a slot passes while paused
        if _next_slot_gap(10) < 5:  # resume well before the next slot, so a run right after it is the catch-up
            time.sleep(_next_slot_gap(10) + 0.5)
        args = ["resume", "every10", "--config", str(config), "--json"] + (["--skip-missed"] if skip_missed else [])
        proc = systemd.memsched(*args)
        assert proc.returncode == 0, proc.stderr
        (result,) = json.loads(proc.stdout)
        assert result["missed_slot"] is not None and result["catch_up"] is (not skip_missed)
        time.sleep(2.0)
        caught_up = len(run_starts(config, "every10")) > count
        assert caught_up is (not skip_missed)


def test_run_wait_returns_the_exit_status_and_logs_show_the_output(systemd: SystemdTestEnv) -> None:
    config = write_config(
        systemd.tmp,
        {
            "fails": command_job(["/bin/sh", "-c", "echo output-of-the-failing-run; exit 3"], cron="0 0 1 1 *"),
            "works": command_job(["/bin/sh", "-c", "echo output-of-the-good-run"], cron="0 0 1 1 *"),
        },
    )
    install(systemd, config)
    ok = systemd.memsched("run", "works", "--wait", "--json", "--config", str(config))
    assert ok.returncode == 0, ok.stderr
    good = json.loads(ok.stdout)
    assert good["result"] == "success" and good["exit_code"] == 0 and good["invocation_id"]
    bad = systemd.memsched("run", "fails", "--wait", "--config", str(config))
    assert bad.returncode == 3 and "failed: command exited with status 3" in bad.stdout
    history = json.loads(systemd.memsched("history", "fails", "--json", "--config", str(config)).stdout)
    assert history[0]["result"] == "failed" and history[0]["exit_code"] == 1 and history[0]["trigger"] == "manual"
    invocation = history[0]["invocation_id"]
    logs = wait_for(
        lambda: (p := systemd.memsched("logs", "fails", "--run", invocation, "--config", str(config))).returncode == 0
        and "output-of-the-failing-run" in p.stdout
        and p,
        10,
        "the failing run's output in its logs",
    )
    assert "output-of-the-good-run" not in logs.stdout
    every = systemd.memsched("logs", "works", "-n", "20", "--config", str(config))
    assert "output-of-the-good-run" in every.stdout and "output-of-the-failing-run" not in every.stdout
    # --json: one object per line, the same entries, the run's invocation id on its lines
    as_json = systemd.memsched("logs", "fails", "--run", invocation, "--json", "--config", str(config))
    assert as_json.returncode == 0, as_json.stderr
    entries = [json.loads(line) for line in as_json.stdout.splitlines()]
    ours = [e for e in entries if e["message"] == "output-of-the-failing-run"]
    assert ours and ours[0]["job"] == "fails" and ours[0]["invocation"] == invocation, entries
    assert all(set(e) == {"time", "job", "unit", "invocation", "priority", "message"} for e in entries)
    assert all(e["time"].endswith("+00:00") and 0 <= e["priority"] <= 7 for e in entries)


def test_run_is_refused_while_a_skip_job_runs(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, {"long": command_job(["/bin/sleep", "30"], cron="0 0 1 1 *")})
    install(systemd, config)
    first = systemd.memsched("run", "long", "--config", str(config))
    assert first.returncode == 0
    systemd.wait_unit_state("memsched-long.service", "activating")
    wait_for(lambda: run_starts(config, "long"), 10, "the run to be under way")
    second = systemd.memsched("run", "long", "--config", str(config))
    assert second.returncode == 5 and "overlap policy is skip" in second.stderr
    stopped = systemd.memsched("pause", "long", "--stop-running", "--json", "--config", str(config))
    assert json.loads(stopped.stdout)[0]["stopped_running"] == ["memsched-long.service"]
    systemd.wait_unit_state("memsched-long.service", ("inactive", "failed"))
    record = json.loads(systemd.memsched("history", "long", "--json", "--config", str(config)).stdout)[0]
    assert record["result"] == "interrupted" and record["exit_code"] == 75


def test_doctor_finds_a_hand_edited_unit_and_a_disabled_timer(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, {"alpha": command_job(["/bin/true"], cron="0 * * * *")})
    install(systemd, config)
    clean = systemd.memsched("doctor", "--config", str(config))
    assert clean.returncode == 0 and "no problems found" in clean.stdout, clean.stdout
    service = systemd.unit_dir / "memsched-alpha.service"
    service.write_text(service.read_text().replace("TimeoutStartSec=1800s", "TimeoutStartSec=1s"))
    systemd.systemctl("disable", "memsched-alpha.timer")
    found = systemd.memsched("doctor", "--json", "--config", str(config))
    assert found.returncode == 1
    problems = [f["problem"] for f in json.loads(found.stdout)["findings"]]
    assert any("edited by hand" in p for p in problems), problems
    assert any("timer is disabled but the job is not paused" in p for p in problems), problems
    install(systemd, config)
    systemd.memsched("resume", "alpha", "--config", str(config), check=True)
    assert systemd.memsched("doctor", "--config", str(config)).returncode == 0


@pytest.mark.parametrize("command", [["status", "nosuch"], ["pause", "nosuch"], ["resume", "nosuch"], ["run", "nosuch"], ["history", "nosuch"], ["logs", "nosuch"]])
def test_unknown_job_exits_2_listing_the_known_ones(systemd: SystemdTestEnv, command: list[str]) -> None:
    config = write_config(systemd.tmp, {"alpha": command_job(["/bin/true"], cron="0 * * * *")})
    proc = systemd.memsched(*command, "--config", str(config))
    assert proc.returncode == 2 and "unknown job 'nosuch'" in proc.stderr and "alpha" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_pause_needs_a_job_or_all(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, {})
    for args in (["pause"], ["resume"], ["pause", "x", "--all"]):
        proc = systemd.memsched(*args, "--config", str(config))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
