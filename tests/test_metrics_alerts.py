"""Prometheus textfile metrics after every run, and failure alerts through memsched-failure@.service."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from memsched_testing import command_job, write_config
from systemd_env import SystemdTestEnv, wait_for
from test_units_install import install

MEMSCHED = [sys.executable, "-m", "memsched"]


def metrics(path: Path) -> dict[tuple[str, tuple], float]:
    """Parse the textfile with the Prometheus client's own text parser."""
    values = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def test_metrics_textfile_is_rewritten_after_every_run(tmp_path: Path) -> None:
    textfile = tmp_path / "collector" / "memsched.prom"
    config = write_config(
        tmp_path,
        {"good": command_job(["/bin/true"], overlap="queue"), "bad": command_job(["/bin/false"], overlap="queue")},
        extra={"metrics": {"textfile": str(textfile)}},
    )
    env = dict(os.environ, MEMSCHED_SCOPE="user", XDG_RUNTIME_DIR="/nonexistent-runtime")
    for job in ("good", "good", "bad"):
        subprocess.run([*MEMSCHED, "--config", str(config), "exec", job], env=env, capture_output=True, check=False)
    values = metrics(textfile)
    good, bad = (("job_name", "good"),), (("job_name", "bad"),)
    assert values[("memsched_job_runs_total", good)] == 2 and values[("memsched_job_errors_total", good)] == 0
    assert values[("memsched_job_runs_total", bad)] == 0 and values[("memsched_job_errors_total", bad)] == 1
    assert values[("memsched_job_last_run_success", good)] == 1 and values[("memsched_job_last_run_success", bad)] == 0
    assert values[("memsched_job_last_run_result", (("job_name", "bad"), ("result", "failed")))] == 1
    db = sqlite3.connect(tmp_path / "registry.db")
    (last_good_start,) = db.execute("SELECT MAX(started_ms) FROM runs WHERE job = 'good' AND result = 'success'").fetchone()
    assert values[("memsched_job_last_success_timestamp_seconds", good)] == last_good_start / 1000
    assert ("memsched_job_last_success_timestamp_seconds", bad) not in values
    assert values[("memsched_job_last_run_end_timestamp_seconds", good)] >= values[("memsched_job_last_run_start_timestamp_seconds", good)]
    assert values[("memsched_job_skips_total", good)] == 0
    inode = textfile.stat().st_ino
    subprocess.run([*MEMSCHED, "--config", str(config), "exec", "good"], env=env, capture_output=True)
    assert textfile.stat().st_ino != inode, "replaced by a rename, never rewritten in place"
    assert metrics(textfile)[("memsched_job_runs_total", good)] == 3
    assert [p.name for p in textfile.parent.iterdir()] == ["memsched.prom"], "no temporary files left"


def test_failure_alert_command_gets_the_run_details(systemd: SystemdTestEnv) -> None:
    out = systemd.tmp / "alert.env"
    alert = ["/bin/sh", "-c", f"env | grep '^MEMSCHED_' | sort > '{out}.tmp'; printf '%s' \"$MEMSCHED_LOG\" > '{out}.log'; mv '{out}.tmp' '{out}'"]
    config = write_config(
        systemd.tmp,
        {"breaks": command_job(["/bin/sh", "-c", "echo about-to-break; exit 5"], cron="0 0 1 1 *")},
        extra={"alerts": {"on_failure": alert}},
    )
    install(systemd, config)
    proc = systemd.memsched("run", "breaks", "--wait", "--json", "--config", str(config))
    assert proc.returncode == 5
    wait_for(out.exists, 20, "the alert command to run")
    env = dict(line.split("=", 1) for line in out.read_text().splitlines())
    invocation = systemd.show("memsched-breaks.service", "InvocationID")["InvocationID"]
    assert env["MEMSCHED_JOB"] == "breaks"
    assert env["MEMSCHED_INVOCATION_ID"] == invocation
    assert env["MEMSCHED_RESULT"] == "exit-code" and env["MEMSCHED_EXIT_STATUS"] == "1"
    assert env["MEMSCHED_REASON"] == "command exited with status 5"
    assert "about-to-break" in Path(f"{out}.log").read_text()


def test_a_run_killed_by_its_timeout_is_recorded_by_the_failure_unit(systemd: SystemdTestEnv) -> None:
    textfile = systemd.tmp / "collector" / "memsched.prom"
    config = write_config(
        systemd.tmp,
        {"hangs": command_job(["/bin/sleep", "60"], cron="0 0 1 1 *", timeout="2s")},
        extra={"metrics": {"textfile": str(textfile)}},
    )
    install(systemd, config)
    systemd.systemctl("start", "--no-block", "memsched-hangs.service")
    registry = systemd.tmp / "registry.db"

    def closed() -> tuple | None:
        if not registry.exists():
            return None
        db = sqlite3.connect(registry)
        row = db.execute("SELECT result, reason FROM runs WHERE job = 'hangs' AND result != 'skipped'").fetchone()
        db.close()
        return row if row and row[0] != "running" else None

    def failed() -> tuple | None:
        row = closed()
        return row if row and row[0] == "failed" else None

    result, reason = wait_for(failed, 30, "the timed-out run to be recorded as failed")
    assert "longer than its timeout" in reason
    # The killed run never wrote the metrics its end would have: the failure unit does.
    hangs = (("job_name", "hangs"),)
    wait_for(lambda: textfile.exists() and metrics(textfile).get(("memsched_job_errors_total", hangs)) == 1, 30, "the failure in the metrics")
    assert metrics(textfile)[("memsched_job_last_run_result", (("job_name", "hangs"), ("result", "failed")))] == 1


def test_pause_and_resume_rewrite_the_metrics(systemd: SystemdTestEnv) -> None:
    textfile = systemd.tmp / "collector" / "memsched.prom"
    config = write_config(
        systemd.tmp, {"nightly": command_job(["/bin/true"], cron="0 3 * * *")}, extra={"metrics": {"textfile": str(textfile)}}
    )
    install(systemd, config)
    nightly = (("job_name", "nightly"),)
    assert systemd.memsched("pause", "nightly", "--config", str(config)).returncode == 0
    values = metrics(textfile)
    assert values[("memsched_job_paused", nightly)] == 1
    assert abs(values[("memsched_job_paused_since_timestamp_seconds", nightly)] - values[("memsched_textfile_written_timestamp_seconds", ())]) < 5
    assert systemd.memsched("resume", "nightly", "--config", str(config)).returncode == 0
    values = metrics(textfile)
    assert values[("memsched_job_paused", nightly)] == 0
    assert ("memsched_job_paused_since_timestamp_seconds", nightly) not in values


def test_install_units_writes_the_metrics_so_a_job_that_never_runs_is_seen(systemd: SystemdTestEnv) -> None:
    textfile = systemd.tmp / "collector" / "memsched.prom"
    config = write_config(
        systemd.tmp, {"nightly": command_job(["/bin/true"], cron="0 3 * * *")}, extra={"metrics": {"textfile": str(textfile)}}
    )
    report = install(systemd, config)
    values = metrics(textfile)
    nightly = (("job_name", "nightly"),)
    db = sqlite3.connect(systemd.tmp / "registry.db")
    (installed,) = db.execute("SELECT MIN(installed_ms) FROM installed_units WHERE job = 'nightly'").fetchone()
    db.close()
    assert values[("memsched_job_tracked_since_timestamp_seconds", nightly)] == installed / 1000
    assert values[("memsched_job_expected_interval_seconds", nightly)] == 86_400
    assert values[("memsched_job_runs_total", nightly)] == 0
    assert not [n for n in report.get("notes", []) if "metrics" in n]


def test_two_writers_interleaved_leave_the_newer_snapshot(tmp_path: Path) -> None:
    # Writer A reads the registry, then is held up before its rename; writer B records a run and
    # writes meanwhile. Unserialized, A's older snapshot would replace B's file and hide B's run
    # (a failed-run alert that a good run had resolved would stay until the next write).
    import threading

    from memsched.config.load import load_config
    from memsched.metrics import write_textfile
    from memsched.registry import Registry

    config = load_config(write_config(tmp_path, {"j": command_job(["/bin/true"])}))
    textfile = tmp_path / "collector" / "memsched.prom"
    read, go = threading.Event(), threading.Event()

    class HeldUp(Registry):
        def pauses(self):  # the last registry read of a render: A has its snapshot, then waits
            answer = super().pauses()
            read.set()
            assert go.wait(30)
            return answer

    def writer_a() -> None:
        with HeldUp(tmp_path / "registry.db").open() as registry:
            write_textfile(textfile, registry, list(config.enabled_jobs.values()), config)

    a = threading.Thread(target=writer_a)
    a.start()
    assert read.wait(30)
    b_done = threading.Event()

    def writer_b() -> None:
        with Registry(tmp_path / "registry.db").open() as registry:
            run = registry.start_run("j", trigger="manual")
            registry.finish_run(run, result="success", exit_code=0)
            write_textfile(textfile, registry, list(config.enabled_jobs.values()), config)
        b_done.set()

    b = threading.Thread(target=writer_b)
    b.start()
    b_done.wait(2)  # unserialized, B is done by now; serialized, it waits for A
    go.set()
    a.join(30)
    b.join(30)
    assert metrics(textfile)[("memsched_job_runs_total", (("job_name", "j"),))] == 1, "the newer snapshot is the one left"
