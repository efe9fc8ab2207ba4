"""Issue 12.7: `memsched logs` and the failure alert's MEMSCHED_LOG show only lines that came from
the job's own units, selected by fields journald sets itself.

The attack: another local user (a throwaway uid) writes journal entries that claim to be the
victim job's (MEMSCHED_JOB=, USER_UNIT=, UNIT= and the run's invocation id in every field that
carries one). They used to appear in `memsched logs victim`, `logs victim --run ID` and in the
alert command's MEMSCHED_LOG. (In user scope the user's own processes are trusted as the user
is, as journalctl's --user-unit does: they could as well edit or stop the job. In system scope
only PID 1's UNIT= counts; the PID-1 harness covers that scope.)

The foreign uid writes through the private manager's journald socket: the test enters the
sandbox's mount namespace as root, then drops to that uid (setpriv) before the write, so
journald records the foreign uid as the sender, exactly as for a local user on a real system.
"""

from __future__ import annotations

import json
import os
import sys

from foreign import ForeignUser
from memsched_testing import command_job, write_config
from systemd_env import SystemdTestEnv, wait_for

FORGE = r"""
import socket, sys
job, invocation, tag = sys.argv[1:4]
fields = {
    "MESSAGE": f"forged-line-{tag}",
    "MEMSCHED_JOB": job,
    "USER_UNIT": f"memsched-{job}.service",
    "UNIT": f"memsched-{job}.service",
    "MEMSCHED_INVOCATION_ID": invocation,
    "INVOCATION_ID": invocation,
    "USER_INVOCATION_ID": invocation,
    "_SYSTEMD_INVOCATION_ID": invocation,  # journald drops trusted fields a client sends
    "SYSLOG_IDENTIFIER": f"memsched-{job}",
}
payload = "".join(f"{k}={v}\n" for k, v in fields.items()).encode()
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(payload, "/run/systemd/journal/socket")
print("sent")
"""


def _forge_as(systemd: SystemdTestEnv, foreign_user: ForeignUser, job: str, invocation: str) -> None:
    state = systemd.sandbox.load()
    assert state is not None and state.manager_pid
    # the system python: the venv's interpreter may live under /root, which the foreign uid cannot read
    as_foreign = foreign_user.command("/usr/bin/python3", "-c", FORGE, job, invocation, "foreign-uid")
    proc = systemd.run("nsenter", "-t", str(state.manager_pid), "-m", "--", *as_foreign)
    assert proc.returncode == 0 and "sent" in proc.stdout, proc.stderr


def test_lines_claiming_to_be_a_job_are_not_its_logs(systemd: SystemdTestEnv, foreign_user: ForeignUser) -> None:
    log_file = systemd.tmp / "alert-log.txt"
    alert = ["/bin/sh", "-c", f'printf "%s" "$MEMSCHED_LOG" > {log_file}']
    config = write_config(
        systemd.tmp,
        {"victim": command_job(["/bin/sh", "-c", "echo real-output-of-victim; exit 3"], cron="0 0 1 1 *")},
        extra={"alerts": {"on_failure": alert}},
    )
    assert systemd.memsched("install-units", "--config", str(config)).returncode == 0
    run = systemd.memsched("run", "victim", "--wait", "--config", str(config))
    assert run.returncode == 3, run.stdout + run.stderr
    history = json.loads(systemd.memsched("history", "victim", "--json", "--config", str(config)).stdout)
    invocation = history[0]["invocation_id"]
    assert invocation

    _forge_as(systemd, foreign_user, "victim", invocation)
    # the forged entry is in the journal (the test can fail for the right reason) ...
    journal = ["journalctl", "--no-pager", "-o", "cat", f"--directory={systemd.sandbox.journal_dir()}"]
    wait_for(lambda: systemd.run(*journal, "MEMSCHED_JOB=victim").stdout.count("forged-line-foreign-uid") == 1, 10, "the forged line in the journal")

    # ... and in none of memsched's views of the job
    every = systemd.memsched("logs", "victim", "-n", "100", "--config", str(config))
    one_run = systemd.memsched("logs", "victim", "--run", invocation, "--config", str(config))
    as_json = systemd.memsched("logs", "victim", "--run", invocation, "--json", "--config", str(config))
    for proc in (every, one_run, as_json):
        assert proc.returncode == 0, proc.stderr
        assert "real-output-of-victim" in proc.stdout, proc.stdout
        assert "forged-line-foreign-uid" not in proc.stdout, proc.stdout

    # the failure alert's log tail is chosen the same way (notify-failure is what the failure unit runs)
    env_extra = {"MONITOR_INVOCATION_ID": invocation, "MONITOR_SERVICE_RESULT": "exit-code", "MONITOR_EXIT_STATUS": "3"}
    saved = dict(systemd.env)
    systemd.env.update(env_extra)
    try:
        notified = systemd.memsched("notify-failure", "victim", "--config", str(config))
    finally:
        systemd.env.clear()
        systemd.env.update(saved)
    assert notified.returncode == 0, notified.stdout + notified.stderr
    tail = log_file.read_text()
    assert "real-output-of-victim" in tail and "forged-line-foreign-uid" not in tail, tail


def test_a_job_logs_do_not_include_a_job_with_a_longer_name(systemd: SystemdTestEnv) -> None:
    """The unit patterns are exact: `logs ab` never shows `abc`'s lines (nor `ab`'s instances' siblings)."""
    config = write_config(
        systemd.tmp,
        {
            "ab": command_job(["/bin/sh", "-c", "echo line-of-ab"], cron="0 0 1 1 *", overlap="concurrent"),
            "abc": command_job(["/bin/sh", "-c", "echo line-of-abc"], cron="0 0 1 1 *", overlap="concurrent"),
        },
    )
    assert systemd.memsched("install-units", "--config", str(config)).returncode == 0
    for job in ("ab", "abc"):
        assert systemd.memsched("run", job, "--wait", "--config", str(config)).returncode == 0
    logs = wait_for(
        lambda: (p := systemd.memsched("logs", "ab", "--config", str(config))).returncode == 0 and "line-of-ab" in p.stdout and p,
        10,
        "ab's instance output in its logs",
    )
    assert "line-of-abc" not in logs.stdout
