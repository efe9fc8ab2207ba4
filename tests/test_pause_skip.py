"""Timed pauses and `memsched skip` against the real private systemd manager (1-second calendars)."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from memsched_testing import command_job, write_config
from systemd_env import SystemdTestEnv, wait_for
from test_units_install import install


# Every 2 s: the "1-2 s calendars", with room for a loaded 2-core machine to start each slot in time.
EVERY_2S = "*/2 * * * * *"
PERIOD_MS = 2000


def rows(config: Path, sql: str, *args: object) -> list[sqlite3.Row]:
    """Query the test's registry read-only (never creating it: memsched does that); [] before memsched made it."""
    path = config.parent / "registry.db"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        db.close()


def runs(config: Path, job: str) -> list[sqlite3.Row]:
    """The job's actual runs (not skipped or lost slots), oldest first."""
    return rows(config, "SELECT * FROM runs WHERE job = ? AND result NOT IN ('skipped', 'lost') ORDER BY id", job)


def skips(config: Path, job: str, code: str) -> list[sqlite3.Row]:
    return rows(config, "SELECT * FROM runs WHERE job = ? AND result = 'skipped' AND reason_code = ? ORDER BY slot_ms", job, code)


def status(systemd: SystemdTestEnv, config: Path, job: str) -> dict:
    proc = systemd.memsched("status", job, "--json", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["jobs"][0]


def timer_on(systemd: SystemdTestEnv, job: str) -> bool:
    props = systemd.show(f"memsched-{job}.timer", "ActiveState", "UnitFileState")
    return props["ActiveState"] == "active" and props["UnitFileState"] == "enabled"


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def install_257_units(systemd: SystemdTestEnv, config: Path, job: str) -> None:
    """Install the job's units as rendered for systemd ≥ 257 (DeferReactivation=, no ExecCondition= gate).

    systemd 252 ignores DeferReactivation=, so what is proven is that the skip works without the gate.
    """
    out = systemd.tmp / "units257"
    systemd.memsched("render", "--config", str(config), "--systemd-version", "257", "--out", str(out), check=True)
    for name in (f"memsched-{job}.timer", f"memsched-{job}.service", "memsched-failure@.service"):
        text = (out / name).read_text()
        assert "ExecCondition" not in text
        systemd.write_unit(name, text)
    systemd.systemctl("daemon-reload")
    systemd.systemctl("enable", "--now", f"memsched-{job}.timer")


@pytest.mark.parametrize("overlap", ["skip", "skip-257", "queue", "concurrent"])
def test_skip_next_n_skips_exactly_those_slots_and_the_timer_stays_on(systemd: SystemdTestEnv, overlap: str) -> None:
    policy = overlap.split("-")[0]
    config = write_config(systemd.tmp, {"tick": command_job(["/bin/true"], cron=EVERY_2S, overlap=policy)})
    if overlap == "skip-257":
        install_257_units(systemd, config, "tick")
    else:
        install(systemd, config)
    wait_for(lambda: runs(config, "tick"), 15, "a first run")

    proc = systemd.memsched("skip", "tick", "--next", "3", "--reason", "maintenance", "--json", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    (answer,) = json.loads(proc.stdout)
    slots = answer["slots_ms"]
    assert len(slots) == 3 and slots == sorted(slots) and answer["through_ms"] == slots[-1] and answer["asked_by"]
    assert slots[1] - slots[0] == PERIOD_MS and slots[2] - slots[1] == PERIOD_MS

    marked = json.loads(systemd.memsched("next", "tick", "-n", "5", "--json", "--config", str(config), check=True).stdout)["times"]
    assert [t["at_ms"] for t in marked if t["not_run"]] == [s for s in slots if s in {t["at_ms"] for t in marked}]
    assert any(t["not_run"] is None for t in marked) and all("skip --next 3" in t["not_run"] for t in marked if t["not_run"])
    view = status(systemd, config, "tick")
    assert view["skip"]["next_n"] == 3 and view["skip"]["through_ms"] == slots[-1] and view["skip"]["asked_by"] == answer["asked_by"]

    wait_for(lambda: [r for r in runs(config, "tick") if (r["slot_ms"] or r["started_ms"]) >= slots[-1] + PERIOD_MS], 30, "a run after the skipped slots")
    assert timer_on(systemd, "tick"), "the timer stays enabled and running"

    skipped = skips(config, "tick", "manual-skip")
    assert [r["slot_ms"] for r in skipped] == slots, "each of the three slots recorded once, and no other"
    assert all(r["actor"] == answer["asked_by"] and "maintenance" in r["reason"] for r in skipped)
    assert [f"slot {i} of 3" in r["reason"] for i, r in enumerate(skipped, 1)] == [True] * 3
    ran_in_window = [r for r in runs(config, "tick") if r["trigger"] == "timer" and slots[0] <= (r["slot_ms"] or r["started_ms"]) < slots[-1] + PERIOD_MS]
    assert ran_in_window == [], "no run for a skipped slot"
    view = status(systemd, config, "tick")
    assert view["skip"] is None and view["skip_count"] >= 3 and view["state"] in ("idle", "running")


def test_skip_until_then_a_new_request_and_cancel(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, {"tick": command_job(["/bin/true"], cron=EVERY_2S)})
    install(systemd, config)
    wait_for(lambda: runs(config, "tick"), 15, "a first run")
    end = (int(time.time()) + 7) * 1000
    proc = systemd.memsched("skip", "tick", "--until", iso(end), "--json", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    (answer,) = json.loads(proc.stdout)
    assert answer["through_ms"] == end - 1 and answer["next_n"] is None and all(s < end for s in answer["slots_ms"])
    wait_for(lambda: [r for r in runs(config, "tick") if (r["slot_ms"] or 0) >= end], 20, "a run at or after the --until instant")
    skipped = [r["slot_ms"] for r in skips(config, "tick", "manual-skip")]
    assert skipped and max(skipped) < end and answer["slots_ms"][-1] in skipped and "--until" in skips(config, "tick", "manual-skip")[0]["reason"]

    systemd.memsched("skip", "tick", "--next", "1000", "--config", str(config), check=True)
    count = len(skips(config, "tick", "manual-skip"))
    wait_for(lambda: len(skips(config, "tick", "manual-skip")) >= count + 2, 20, "slots skipped by the long request")
    cancelled = json.loads(systemd.memsched("skip", "tick", "--cancel", "--json", "--config", str(config), check=True).stdout)
    assert cancelled == [{"job": "tick", "cancelled": True}]
    after_cancel = int(time.time() * 1000) + 1000
    wait_for(lambda: [r for r in runs(config, "tick") if (r["slot_ms"] or 0) >= after_cancel], 20, "runs again after --cancel")
    assert timer_on(systemd, "tick")


def test_bad_input_exits_2_naming_the_option_and_changes_nothing(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, {"tick": command_job(["/bin/true"], cron="0 0 * * *")})
    install(systemd, config)
    past = iso(int(time.time() * 1000) - 60_000)
    future = iso(int(time.time() * 1000) + 3_600_000)
    cases = [
        (["skip", "tick"], "--next N or --until"),
        (["skip", "tick", "--next", "2", "--until", future], "not both"),
        (["skip", "tick", "--next", "0"], "--next 0"),
        (["skip", "tick", "--next", "-3"], "--next -3"),
        (["skip", "tick", "--next", "many"], "--next"),
        (["skip", "tick", "--until", past], "--until"),
        (["skip", "tick", "--until", "next tuesday"], "--until"),
        (["skip", "tick", "--until", "2030-01-01T00:00 Mars/Olympus"], "--until"),
        (["skip", "nosuch", "--next", "1"], "unknown job 'nosuch'"),
        (["skip", "tick", "nosuch", "--next", "1"], "unknown job 'nosuch'"),
        (["skip", "tick", "--cancel", "--next", "1"], "--cancel"),
        (["skip"], "name the job(s)"),
        (["pause", "tick", "--for", "0"], "--for '0'"),
        (["pause", "tick", "--for", "soon"], "--for 'soon'"),
        (["pause", "tick", "--until", past], "--until"),
        (["pause", "tick", "--for", "1h", "--until", future], "not both"),
        (["pause", "tick", "nosuch", "--for", "1h"], "unknown job 'nosuch'"),
    ]
    for args, expected in cases:
        proc = systemd.memsched(*args, "--config", str(config))
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
        # One line, or click's own usage error (usage, hint, then one "Error:" line naming the option).
        last = proc.stderr.strip().splitlines()[-1]
        assert expected in last and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) <= 2 or last.startswith("Error: Invalid value for '--next'"), (args, proc.stderr)
        assert rows(config, "SELECT * FROM skip_windows") == [] and rows(config, "SELECT * FROM pauses") == [], args
        assert timer_on(systemd, "tick"), args
    assert systemd.show("memsched-resume.tick.timer", "LoadState")["LoadState"] == "not-found"


def test_timed_pause_resumes_by_itself_at_its_instant(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, {"tick": command_job(["/bin/true"], cron=EVERY_2S)})
    install(systemd, config)
    wait_for(lambda: runs(config, "tick"), 15, "a first run")
    proc = systemd.memsched("pause", "tick", "--for", "7s", "--json", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    (answer,) = json.loads(proc.stdout)
    until = answer["paused_until_ms"]
    assert until and answer["resume_unit"] == "memsched-resume.tick.timer"
    systemd.wait_unit_state("memsched-tick.service", ("inactive", "failed"))  # a run already under way may finish
    view = status(systemd, config, "tick")
    assert view["state"] == "paused" and view["is_paused"] and view["paused_until_ms"] == until and view["paused_until"]
    text = systemd.memsched("status", "tick", "--config", str(config), check=True).stdout
    assert "tick: paused until" in text and "resumes by itself" in text
    props = systemd.show("memsched-tick.timer", "ActiveState", "UnitFileState")
    assert props == {"ActiveState": "inactive", "UnitFileState": "enabled"}
    assert systemd.show("memsched-resume.tick.timer", "ActiveState")["ActiveState"] == "active"
    doctor = json.loads(systemd.memsched("doctor", "--json", "--config", str(config)).stdout)
    assert [f for f in doctor["findings"] if f["job"] == "tick"] == [], "a timed pause's enabled timer is no drift"
    paused_at = int(time.time() * 1000)

    wait_for(lambda: [r for r in runs(config, "tick") if r["started_ms"] >= until], 20, "a run after the pause ended")
    assert [r for r in runs(config, "tick") if paused_at <= r["started_ms"] < until] == [], "no run while paused"
    assert timer_on(systemd, "tick")
    view = status(systemd, config, "tick")
    assert not view["is_paused"] and view["paused_until"] is None and view["state"] in ("idle", "running")
    assert rows(config, "SELECT * FROM pauses") == []
    resumed = systemd.journal("_SYSTEMD_USER_UNIT=memsched-resume.tick.service") or systemd.journal("UNIT=memsched-resume.tick.service")
    assert any("tick: resumed" in str(e.get("MESSAGE", "")) for e in resumed), [e.get("MESSAGE") for e in resumed]
    wait_for(lambda: systemd.show("memsched-resume.tick.timer", "LoadState")["LoadState"] == "not-found", 10, "the resume timer gone")


def _timer_state(systemd: SystemdTestEnv, unit: str) -> str | None:
    """The unit's ActiveState, or None while the manager is not answering yet (just restarted)."""
    proc = systemd.systemctl("show", unit, "--property=ActiveState", check=False)
    return proc.stdout.strip().partition("=")[2] if proc.returncode == 0 else None


def test_timed_pause_survives_a_manager_restart_and_still_ends_on_time(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, {"tick": command_job(["/bin/true"], cron=EVERY_2S)})
    install(systemd, config)
    wait_for(lambda: runs(config, "tick"), 15, "a first run")
    (answer,) = json.loads(systemd.memsched("pause", "tick", "--for", "10s", "--json", "--config", str(config), check=True).stdout)
    until = answer["paused_until_ms"]
    systemd.wait_unit_state("memsched-tick.service", ("inactive", "failed"))
    paused_at = int(time.time() * 1000)
    systemd.sandbox.restart_manager()
    assert int(time.time() * 1000) < until - 4000, "the restart took too long for the test to mean anything"
    # The transient resume timer died with the manager; the job's timer came back with it (enabled).
    wait_for(lambda: _timer_state(systemd, "memsched-tick.timer") == "active", 20, "the job's timer back")
    view = status(systemd, config, "tick")
    assert view["is_paused"] and view["paused_until_ms"] == until
    wait_for(lambda: [r for r in runs(config, "tick") if r["started_ms"] >= until], 25, "a run after the pause ended")
    assert [r for r in runs(config, "tick") if paused_at <= r["started_ms"] < until] == [], "no run while paused, restart or not"
    paused_slots = skips(config, "tick", "paused")
    assert paused_slots and all(r["slot_ms"] < until and "paused until" in r["reason"] and r["actor"] for r in paused_slots)
    assert timer_on(systemd, "tick") and not status(systemd, config, "tick")["is_paused"]
    assert rows(config, "SELECT * FROM pauses") == []


def test_resume_cancels_the_timed_resume(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, {"tick": command_job(["/bin/true"], cron=EVERY_2S)})
    install(systemd, config)
    wait_for(lambda: runs(config, "tick"), 15, "a first run")
    systemd.memsched("pause", "tick", "--for", "4s", "--config", str(config), check=True)
    proc = systemd.memsched("resume", "tick", "--json", "--config", str(config), check=True)
    (answer,) = json.loads(proc.stdout)
    assert answer["cancelled_timed_resume"] and answer["paused_until"]
    assert systemd.show("memsched-resume.tick.timer", "LoadState")["LoadState"] == "not-found"
    systemd.memsched("pause", "tick", "--config", str(config), check=True)  # an open-ended pause
    systemd.wait_unit_state("memsched-tick.service", ("inactive", "failed"))
    count = len(runs(config, "tick"))
    time.sleep(6.5)  # past the cancelled resume's instant, and two slots
    assert len(runs(config, "tick")) == count and status(systemd, config, "tick")["state"] == "paused"
    assert systemd.show("memsched-tick.timer", "UnitFileState")["UnitFileState"] == "disabled"


def test_pause_job_over_grpc_takes_an_optional_end_and_old_callers_are_unchanged(systemd: SystemdTestEnv) -> None:
    from memsched.facade._generated import memory_scheduler_pb2 as pb
    from memsched.facade.client import FacadeClient
    from test_facade import Server, short_dir

    config = write_config(systemd.tmp, {"tick": command_job(["/bin/true"], cron=EVERY_2S)})
    install(systemd, config)
    path = short_dir() / "grpc.sock"
    server = Server(systemd, config, "--listen", f"unix:{path}", socket_path=path)
    client = FacadeClient(f"unix:{path}")
    try:
        server.wait_ready(f"unix:{path}")
        stub = client.stub

        def wire() -> pb.JobStatusProto:
            return {j.job_name: j for j in stub.GetSchedulerStatus(pb.GetSchedulerStatusRequest(), timeout=10).jobs}["tick"]

        past = stub.PauseJob(pb.PauseJobRequest(job_name="tick", resume_at_ms=int(time.time() * 1000) - 1000), timeout=30)
        assert not past.success and "resume_at_ms" in past.error and "not in the future" in past.error
        assert rows(config, "SELECT * FROM pauses") == [] and timer_on(systemd, "tick"), "nothing changed"

        until = int(time.time() * 1000) + 6000
        assert stub.PauseJob(pb.PauseJobRequest(job_name="tick", resume_at_ms=until), timeout=30).success
        job = wire()
        assert job.is_paused and job.HasField("paused_until_ms") and job.paused_until_ms == until
        assert status(systemd, config, "tick")["paused_until_ms"] == until
        (record,) = rows(config, "SELECT * FROM pauses")
        assert record["until_ms"] == until and record["paused_by"].endswith("via gRPC")
        wait_for(lambda: not wire().is_paused and timer_on(systemd, "tick"), 20, "the timed pause to end by itself")
        assert not wire().HasField("paused_until_ms")

        # A caller that knows nothing of the new field: the original, open-ended pause.
        assert stub.PauseJob(pb.PauseJobRequest(job_name="tick"), timeout=30).success
        (record,) = rows(config, "SELECT * FROM pauses")
        assert record["until_ms"] is None and not wire().HasField("paused_until_ms") and wire().is_paused
        assert systemd.show("memsched-tick.timer", "UnitFileState")["UnitFileState"] == "disabled"
        assert stub.ResumeJob(pb.ResumeJobRequest(job_name="tick"), timeout=30).success

        # The CLI through the facade: --for becomes resume_at_ms; a time with no zone is refused (the job's is the server's).
        endpoint = ["--endpoint", f"unix:{path}"]
        remote = systemd.memsched(*endpoint, "pause", "tick", "--for", "1h", "--json")
        assert remote.returncode == 0, remote.stderr
        (answer,) = json.loads(remote.stdout)
        assert answer["success"] and abs(answer["paused_until_ms"] - (time.time() * 1000 + 3_600_000)) < 60_000
        assert rows(config, "SELECT until_ms FROM pauses")[0]["until_ms"] == answer["paused_until_ms"]
        naive = systemd.memsched(*endpoint, "pause", "tick", "--until", "2030-01-01T08:00")
        assert naive.returncode == 2 and "--until" in naive.stderr and "zone" in naive.stderr
        assert systemd.memsched(*endpoint, "resume", "tick").returncode == 0
    finally:
        client.close()
        server.stop()


def test_completion_knows_the_options(tmp_path: Path) -> None:
    from test_cli_docs import complete

    env = {"MEMSCHED_SCOPE": "user", "XDG_CONFIG_HOME": str(tmp_path / "none")}
    assert "skip" in complete("memsched sk", env)
    assert {"--next", "--until", "--cancel", "--reason", "--json", "--all"} <= set(complete("memsched skip toc_rollup_day --", env))
    assert {"--for", "--until", "--stop-running"} <= set(complete("memsched pause toc_rollup_day --", env))
    assert complete("memsched skip toc_rollup_w", env) == ["toc_rollup_week"]


def test_manual_runs_still_run_during_a_skip_and_an_unreadable_request_lets_the_run_start(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, {"tick": command_job(["/bin/true"], cron=EVERY_2S)})
    install(systemd, config)
    wait_for(lambda: runs(config, "tick"), 15, "a first run")
    systemd.memsched("skip", "tick", "--next", "1000", "--config", str(config), check=True)
    manual = systemd.memsched("run", "tick", "--wait", "--json", "--config", str(config))
    assert manual.returncode == 0 and json.loads(manual.stdout)["result"] == "success", manual.stdout + manual.stderr
    wait_for(lambda: skips(config, "tick", "manual-skip"), 15, "a slot skipped")

    # The registry cannot answer the question (here: its table is gone): the timer's start runs, with a warning.
    db = sqlite3.connect(config.parent / "registry.db")
    db.execute("DROP TABLE skip_windows")
    db.commit()
    db.close()
    broke_at = int(time.time() * 1000)
    wait_for(lambda: [r for r in runs(config, "tick") if r["trigger"] == "timer" and r["started_ms"] > broke_at], 15, "a timer run")
    systemd.wait_journal("SYSLOG_IDENTIFIER=memsched-tick", text="cannot read the skip and pause requests")


def test_doctor_finds_a_timed_pause_that_ended_without_a_resume(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, {"tick": command_job(["/bin/true"], cron=EVERY_2S)})
    install(systemd, config)
    systemd.memsched("pause", "tick", "--for", "2s", "--config", str(config), check=True)
    systemd.systemctl("stop", "memsched-resume.tick.timer")  # as if the resume had failed
    time.sleep(2.5)
    doctor = systemd.memsched("doctor", "--json", "--config", str(config))
    assert doctor.returncode == 1
    problems = [f["problem"] for f in json.loads(doctor.stdout)["findings"] if f["job"] == "tick"]
    assert any("timed pause has ended but the job was not resumed" in p for p in problems), problems
    systemd.memsched("resume", "tick", "--config", str(config), check=True)
    doctor = json.loads(systemd.memsched("doctor", "--json", "--config", str(config)).stdout)
    assert [f for f in doctor["findings"] if f["job"] == "tick"] == []
