"""Manual runs against a real systemd manager, for each overlap policy: a manual run runs when it
may, is refused (exit 5, gRPC FAILED_PRECONDITION) when it may not, never reports a run that did
not happen, and is never merged into another run (issue 11.1, 11.3)."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc
import pytest

from memsched_testing import command_job, write_config
from systemd_env import SystemdTestEnv, wait_for
from test_units_install import install

EXIT_REFUSED = 5


def runs(config: Path, job: str) -> list[dict]:
    """The job's records, oldest first (runs, skipped and lost slots)."""
    path = config.parent / "registry.db"
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM runs WHERE job = ? ORDER BY id", (job,))]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def actual_runs(config: Path, job: str) -> list[dict]:
    return [r for r in runs(config, job) if r["result"] not in ("skipped", "lost")]


def _variable_sleep(tmp: Path) -> tuple[list[str], Path]:
    """A command that sleeps as many seconds as a file says (so a test can make later runs short)."""
    seconds = tmp / "seconds"
    return ["/bin/sh", "-c", f'sleep "$(cat {seconds})"'], seconds


@pytest.mark.parametrize("via", ["cli", "grpc"])
def test_a_skip_job_runs_a_manual_request_after_refusing_a_refire(systemd: SystemdTestEnv, via: str) -> None:
    """After the gate refused systemd's re-fire of a long run, a manual run must run (issue 11.1)."""
    from memsched.facade._generated import memory_scheduler_pb2 as pb
    from memsched.facade.client import FacadeClient
    from test_facade import Server, short_dir

    command, seconds = _variable_sleep(systemd.tmp)
    seconds.write_text("7")
    config = write_config(systemd.tmp, {"long": command_job(command, cron="*/6 * * * * *", overlap="skip")})
    server = None
    if via == "grpc":  # started first: under load its start-up must not eat the time before the next slot
        path = short_dir() / "grpc.sock"
        server = Server(systemd, config, "--listen", f"unix:{path}", socket_path=path)
        server.wait_ready(f"unix:{path}")
    try:
        install(systemd, config)
        first = wait_for(lambda: [r for r in actual_runs(config, "long") if r["ended_ms"]], 30, "a long timer run to end")[0]
        wait_for(lambda: [r for r in runs(config, "long") if r["result"] == "skipped"], 10, "the overlapped slot's skip")
        seconds.write_text("0.2")
        wait_for(
            lambda: [e for e in systemd.journal("_SYSTEMD_USER_UNIT=memsched-long.service")
                     if "not starting" in str(e.get("MESSAGE")) and int(e["__REALTIME_TIMESTAMP"]) > first["ended_ms"] * 1000],
            15, "the gate to refuse the re-fire",
        )  # the journal is the session's: an earlier test's unit of the same name logged there too
        assert len(actual_runs(config, "long")) == 1, "the gate refused the re-fire: no second run yet"
        if server is None:
            proc = systemd.memsched("run", "long", "--wait", "--json", "--config", str(config))
            assert proc.returncode == 0, proc.stdout + proc.stderr
            answer = json.loads(proc.stdout)
            result, run_id = answer["result"], answer["run_id"]
        else:
            with FacadeClient(f"unix:{path}") as client:
                reply = client.stub.RunJob(pb.RunJobRequest(job_name="long", wait=True), timeout=60)
            assert reply.exit_code == 0 and reply.result == pb.JOB_RESULT_STATUS_SUCCESS, reply
            result, run_id = reply.result_name, None
    finally:
        if server is not None:
            server.stop()
    assert result == "success"
    manual = [r for r in actual_runs(config, "long") if r["trigger"] == "manual"]
    assert len(manual) == 1 and manual[0]["result"] == "success" and manual[0]["started_ms"] > first["ended_ms"]
    if run_id is not None:
        assert run_id == manual[0]["id"]


def test_a_skip_job_refuses_a_manual_run_while_one_runs(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, {"busy": command_job(["/bin/sleep", "30"], cron="0 0 1 1 *", overlap="skip")})
    install(systemd, config)
    assert systemd.memsched("run", "busy", "--config", str(config)).returncode == 0
    wait_for(lambda: actual_runs(config, "busy"), 15, "the first run to be under way")
    for args in (["run", "busy"], ["run", "busy", "--wait"], ["run", "busy", "--wait", "--json"]):
        proc = systemd.memsched(*args, "--config", str(config))
        assert proc.returncode == EXIT_REFUSED, (args, proc.returncode, proc.stdout, proc.stderr)
        assert "running now" in proc.stderr and "overlap" in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert len(actual_runs(config, "busy")) == 1, "a refused run starts nothing"

    from memsched.facade._generated import memory_scheduler_pb2 as pb
    from memsched.facade.client import FacadeClient
    from test_facade import Server, short_dir

    path = short_dir() / "grpc.sock"
    server = Server(systemd, config, "--listen", f"unix:{path}", socket_path=path)
    try:
        server.wait_ready(f"unix:{path}")
        with FacadeClient(f"unix:{path}") as client:
            with pytest.raises(grpc.RpcError) as info:
                client.stub.RunJob(pb.RunJobRequest(job_name="busy", wait=True), timeout=30)
    finally:
        server.stop()
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "running now" in info.value.details()
    assert len(actual_runs(config, "busy")) == 1


def test_queue_runs_a_second_manual_request_after_the_first(systemd: SystemdTestEnv) -> None:
    """`run q` then `run q --wait` 1 s later: two runs, the second after the first, each reported as its own (11.3)."""
    config = write_config(systemd.tmp, {"q": command_job(["/bin/sh", "-c", "sleep 3; echo done-$$"], cron="0 0 1 1 *", overlap="queue")})
    install(systemd, config)
    assert systemd.memsched("run", "q", "--config", str(config)).returncode == 0
    first = wait_for(lambda: actual_runs(config, "q"), 15, "the first run to start")[0]
    time.sleep(1)
    proc = systemd.memsched("run", "q", "--wait", "--json", "--config", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    answer = json.loads(proc.stdout)
    done = actual_runs(config, "q")
    assert len(done) == 2, done
    one, two = done
    assert one["id"] == first["id"] and one["result"] == "success" and two["result"] == "success"
    assert two["started_ms"] >= one["ended_ms"], "the queued run starts after the first ends"
    assert answer["run_id"] == two["id"], "the waiting caller gets its own run's result, not the first's"
    assert answer["duration_ms"] == two["duration_ms"] >= 2500


def _cron_at(moment: datetime) -> str:
    return f"{moment.second} {moment.minute} {moment.hour} * * *"


def test_queue_runs_a_slot_that_elapsed_during_a_manual_run(systemd: SystemdTestEnv) -> None:
    """A slot that elapses while a manual run goes gets one run right after it (docs/concepts.md)."""
    command, seconds = _variable_sleep(systemd.tmp)
    seconds.write_text("9")  # the manual run spans the slot however slowly a loaded machine starts it
    for _attempt in range(3):
        slot = (datetime.now(timezone.utc) + timedelta(seconds=6)).replace(microsecond=0)
        config = write_config(systemd.tmp, {"qs": command_job(command, cron=_cron_at(slot), overlap="queue")})
        install(systemd, config)
        if datetime.now(timezone.utc) < slot - timedelta(seconds=4):
            break
    else:
        raise AssertionError("could not install the job 4 s ahead of its slot three times")
    assert systemd.memsched("run", "qs", "--config", str(config)).returncode == 0
    slot_ms = int(slot.timestamp() * 1000)
    manual = wait_for(lambda: actual_runs(config, "qs"), 15, "the manual run to start")[0]
    assert manual["started_ms"] < slot_ms, "the manual run is under way when the slot elapses"
    seconds.write_text("0.5")  # the run for the slot may be short
    after = wait_for(lambda: [r for r in actual_runs(config, "qs")[1:] if r["ended_ms"]], 30, "a run for the slot")
    one = actual_runs(config, "qs")[0]
    assert one["trigger"] == "manual" and one["ended_ms"] > slot_ms
    assert after[0]["started_ms"] >= one["ended_ms"] and 0 <= after[0]["slot_ms"] - slot_ms < 1000, after[0]
    assert after[0]["trigger"] == "timer"
    assert after[0]["result"] == "success"
    time.sleep(1)
    assert len(actual_runs(config, "qs")) == 2, "one run for the slot, not more"


def test_run_wait_does_not_take_a_dbus_error_for_the_end_of_the_run(systemd: SystemdTestEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """A D-Bus error while waiting (a dropped connection, a reply timeout) is not "the job is done" (issue 11.5)."""
    from memsched.config.load import load_config
    from memsched.errors import MemschedError
    from memsched.ops.control import run_now
    from memsched.systemd.manager import ManagerClient

    config_path = write_config(systemd.tmp, {"steady": command_job(["/bin/sleep", "2"], cron="0 0 1 1 *", overlap="queue")})
    install(systemd, config_path)
    for key, value in systemd.env.items():
        monkeypatch.setenv(key, value)
    real_call = ManagerClient._call
    failures = {"left": 5, "injected": 0}

    def flaky(self, path, interface, method, signature="", args=None):  # type: ignore[no-untyped-def]
        if path.startswith(b"/org/freedesktop/systemd1/job/") and failures["left"] > 0:
            failures["left"] -= 1
            failures["injected"] += 1
            raise MemschedError("systemd Get failed: [err -110]: Connection timed out")
        return real_call(self, path, interface, method, signature, args)

    monkeypatch.setattr(ManagerClient, "_call", flaky)
    outcome = run_now(load_config(config_path), "user", "steady", wait=True, timeout=60)
    assert failures["injected"] == 5, "the faults were injected while waiting"
    assert outcome.run is not None and outcome.run.result == "success" and outcome.run.ended_ms, outcome
    assert outcome.exit_code == 0 and outcome.run.duration_ms >= 1500
    assert systemd.show("memsched-steady.service", "ActiveState")["ActiveState"] == "inactive"


def test_run_wait_gives_up_with_a_clear_error_when_the_manager_stays_away(systemd: SystemdTestEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    from memsched.config.load import load_config
    from memsched.errors import MemschedError
    from memsched.ops.control import run_now
    from memsched.systemd.manager import ManagerClient

    config_path = write_config(systemd.tmp, {"steady": command_job(["/bin/sleep", "3"], cron="0 0 1 1 *", overlap="queue")})
    install(systemd, config_path)
    for key, value in systemd.env.items():
        monkeypatch.setenv(key, value)
    real_call = ManagerClient._call

    def broken(self, path, interface, method, signature="", args=None):  # type: ignore[no-untyped-def]
        if path.startswith(b"/org/freedesktop/systemd1/job/"):
            raise MemschedError("systemd Get failed: [err -104]: Connection reset by peer")
        return real_call(self, path, interface, method, signature, args)

    monkeypatch.setattr(ManagerClient, "_call", broken)
    with pytest.raises(MemschedError, match="while waiting for memsched-steady.service.*Connection reset by peer"):
        run_now(load_config(config_path), "user", "steady", wait=True, timeout=1.5)
    systemd.wait_unit_state("memsched-steady.service", "inactive", timeout=20)


def test_queue_a_request_waiting_behind_a_stopped_run_is_reported_lost(systemd: SystemdTestEnv) -> None:
    """Stopping the unit ends the run in progress and the runs queued behind it: a waiting caller hears so (exit 1)."""
    import subprocess
    import sys

    config = write_config(systemd.tmp, {"q": command_job(["/bin/sleep", "20"], cron="0 0 1 1 *", overlap="queue")})
    install(systemd, config)
    assert systemd.memsched("run", "q", "--config", str(config)).returncode == 0
    wait_for(lambda: actual_runs(config, "q"), 15, "the first run to start")
    waiter = subprocess.Popen([sys.executable, "-m", "memsched", "run", "q", "--wait", "--json", "--config", str(config)],
                              env=systemd.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = config.parent / "registry.db"
    wait_for(lambda: sqlite3.connect(db).execute("SELECT COUNT(*) FROM run_requests WHERE state = 'pending'").fetchone()[0], 15,
             "the second request to be recorded")
    systemd.systemctl("stop", "memsched-q.service")
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 1, (waiter.returncode, out, err)
    assert "did not happen" in err and "stopped before the run queued" in err and "Traceback" not in err
    (only,) = actual_runs(config, "q")
    assert only["result"] == "interrupted", "the run in progress was stopped; no queued run started"
    state = sqlite3.connect(db).execute("SELECT state FROM run_requests ORDER BY id").fetchall()
    assert [s for (s,) in state] == ["claimed", "lost"]


def test_queue_two_requests_during_a_run_are_served_by_one_run_after_it(systemd: SystemdTestEnv) -> None:
    import subprocess
    import sys

    command, seconds = _variable_sleep(systemd.tmp)
    seconds.write_text("8")  # long enough for both callers to be recorded while it runs, however loaded the machine
    config = write_config(systemd.tmp, {"q": command_job(command, cron="0 0 1 1 *", overlap="queue")})
    install(systemd, config)
    assert systemd.memsched("run", "q", "--config", str(config)).returncode == 0
    first = wait_for(lambda: actual_runs(config, "q"), 15, "the first run to start")[0]
    waiters = [
        subprocess.Popen([sys.executable, "-m", "memsched", "run", "q", "--wait", "--json", "--config", str(config)],
                         env=systemd.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    db = config.parent / "registry.db"
    wait_for(lambda: sqlite3.connect(db).execute("SELECT COUNT(*) FROM run_requests WHERE state = 'pending'").fetchone()[0] == 2,
             30, "both requests to be recorded")
    assert not actual_runs(config, "q")[0]["ended_ms"], "both requests came while the first run was going"
    seconds.write_text("0.5")
    answers = []
    for waiter in waiters:
        out, err = waiter.communicate(timeout=90)
        assert waiter.returncode == 0, (out, err)
        answers.append(json.loads(out))
    done = actual_runs(config, "q")
    assert len(done) == 2 and done[0]["id"] == first["id"], done
    assert {a["run_id"] for a in answers} == {done[1]["id"]}, "both requests came during the first run: one run after it serves both"
    assert done[1]["started_ms"] >= done[0]["ended_ms"]


def test_skip_a_slot_merged_into_a_manual_run_is_skipped_and_expects_no_refire(systemd: SystemdTestEnv) -> None:
    """The one slot that elapses during a manual run merges into it: recorded as skipped, and no re-fire follows,
    so the next start (here `systemctl start`) runs instead of being refused as one."""
    command, seconds = _variable_sleep(systemd.tmp)
    seconds.write_text("8")
    for _attempt in range(3):
        slot = (datetime.now(timezone.utc) + timedelta(seconds=6)).replace(microsecond=0)
        config = write_config(systemd.tmp, {"sk": command_job(command, cron=_cron_at(slot), overlap="skip")})
        install(systemd, config)
        if datetime.now(timezone.utc) < slot - timedelta(seconds=4):
            break
    else:
        raise AssertionError("could not install the job 4 s ahead of its slot three times")
    slot_ms = int(slot.timestamp() * 1000)
    proc = systemd.memsched("run", "sk", "--wait", "--config", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (manual,) = actual_runs(config, "sk")
    assert manual["trigger"] == "manual" and manual["started_ms"] < slot_ms < manual["ended_ms"]
    skips = [r for r in runs(config, "sk") if r["result"] == "skipped"]
    assert [s["slot_ms"] for s in skips] == [slot_ms] and skips[0]["reason_code"] == "overlap"
    systemd.wait_unit_state("memsched-sk.service", "inactive")
    seconds.write_text("0.2")
    systemd.systemctl("start", "memsched-sk.service")
    second = wait_for(lambda: actual_runs(config, "sk")[1:], 15, "the next start to run")
    assert second[0]["result"] == "success", second
