"""The private systemd manager: real timers fire, journald records, teardown leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from memsched.errors import ManagerUnavailable
from memsched.systemd.connect import manager_address
from memsched.proc import pid_alive as _pid_alive
from memsched.systemd.sandbox import REGISTRY_DIR, Sandbox, _cgroup_pids, reap_stale
from systemd_env import SystemdTestEnv, wait_for

TICK_SERVICE = """\
[Unit]
Description=sandbox tick test

[Service]
Type=oneshot
LogExtraFields=MEMSCHED_JOB={job}
ExecStart={python} -c "import sys; from pystemd.journal import sendv; print('tick-stdout', flush=True); sendv('MESSAGE=tick-structured', 'MEMSCHED_JOB={job}')"
"""

TICK_TIMER = """\
[Timer]
OnCalendar=*-*-* *:*:*
AccuracySec=1ms
"""


def _processes_in(sandbox: Sandbox) -> set[int]:
    assert sandbox.state is not None
    return set().union(*(_cgroup_pids(Path(c)) for c in sandbox.state.cgroups))


def test_one_second_timer_fires_and_journal_records_stdout_and_field(systemd: SystemdTestEnv) -> None:
    systemd.write_unit("sbtick.service", TICK_SERVICE.format(job="sbtick", python=sys.executable))
    systemd.write_unit("sbtick.timer", TICK_TIMER)
    systemd.systemctl("daemon-reload")
    systemd.systemctl("start", "sbtick.timer")
    stdout = systemd.wait_journal("_SYSTEMD_USER_UNIT=sbtick.service", text="tick-stdout", count=2, timeout=15)
    assert len({e["_PID"] for e in stdout}) >= 2, "two separate runs"
    fields = systemd.wait_journal("MEMSCHED_JOB=sbtick", count=2, timeout=15)
    assert all(e["MESSAGE"] == "tick-structured" for e in fields)
    assert len({e.get("_SYSTEMD_INVOCATION_ID", e["_PID"]) for e in fields}) >= 2
    timers = systemd.systemctl("list-timers", "--all", "--no-legend").stdout
    assert "sbtick.timer" in timers


def test_teardown_leaves_no_process_and_no_directory(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    box = Sandbox(Path("/run/memsched-test") / f"td{os.getpid()}", "teardown")
    state = box.start(tie_to_parent=True)
    env = dict(os.environ, **box.env())
    subprocess.run(["systemd-run", "--user", "--unit", "sleeper", "sleep", "1000"], env=env, check=True, capture_output=True)
    pids = wait_for(lambda: (p if len(p := _processes_in(box)) >= 3 else None), 10, "manager, journald and sleeper")
    pids |= {state.supervisor_pid, state.manager_pid}
    cgroups = [Path(c) for c in state.cgroups]
    assert box.stop()
    assert not any(_pid_alive(p) for p in pids), [p for p in pids if _pid_alive(p)]
    assert not any(Path(f"/proc/{p}").exists() for p in pids - {os.getpid()})
    assert not box.root.exists()
    assert not any(c.exists() for c in cgroups)
    assert not list(REGISTRY_DIR.glob(f"{box.root.name}-*.json"))


def test_two_managers_side_by_side(systemd: SystemdTestEnv) -> None:
    other = Sandbox(Path("/run/memsched-test") / f"o{os.getpid()}", "other")
    other.start(tie_to_parent=True)
    try:
        other_env = SystemdTestEnv(other, systemd.tmp, set())
        for env, job in ((systemd, "side-a"), (other_env, "side-b")):
            env.write_unit("side.service", TICK_SERVICE.format(job=job, python=sys.executable))
            env.systemctl("daemon-reload")
            env.systemctl("start", "side.service")
        assert systemd.wait_journal("MEMSCHED_JOB=side-a")
        assert other_env.wait_journal("MEMSCHED_JOB=side-b")
        # each journal holds only its own manager's entries
        assert not systemd.journal("MEMSCHED_JOB=side-b")
        assert not other_env.journal("MEMSCHED_JOB=side-a")
        assert systemd.sandbox.journal_dir() != other.journal_dir()
        # each manager loads units only from its own directory
        systemd.systemctl("stop", "side.service", check=False)
        (other.unit_dir / "side.service").unlink()
        other_env.systemctl("daemon-reload")
        assert systemd.show("side.service", "LoadState")["LoadState"] == "loaded"
        assert other_env.show("side.service", "LoadState")["LoadState"] == "not-found"
    finally:
        other.stop()


KILLED_OWNER = textwrap.dedent(
    """
    import sys, time, json
    from pathlib import Path
    from memsched.systemd.sandbox import Sandbox
    box = Sandbox(Path(sys.argv[1]), "killed")
    state = box.start(tie_to_parent=True)
    print(json.dumps(state.__dict__), flush=True)
    time.sleep(600)
    """
)


def _start_owned_sandbox(root: Path) -> tuple[subprocess.Popen[str], dict]:
    owner = subprocess.Popen([sys.executable, "-c", KILLED_OWNER, str(root)], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    state = json.loads(owner.stdout.readline())
    return owner, state


def test_killed_test_process_takes_its_manager_along() -> None:
    """A test run killed with SIGKILL: the supervisor is told by the kernel (PDEATHSIG) and cleans up."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    root = Path("/run/memsched-test") / f"k{os.getpid()}"
    owner, state = _start_owned_sandbox(root)
    box = Sandbox(root, "killed")
    box.load()
    env = dict(os.environ, **box.env())
    subprocess.run(["systemd-run", "--user", "--unit", "sleeper", "sleep", "1000"], env=env, check=True, capture_output=True)
    pids = wait_for(lambda: (p if len(p := _processes_in(box)) >= 3 else None), 10, "three processes") | {state["manager_pid"]}
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    wait_for(lambda: not any(_pid_alive(p) for p in pids | {state["supervisor_pid"]}), 30, "every sandbox process to exit")
    wait_for(lambda: not root.exists(), 10, "the sandbox directory to be removed")


def test_killed_supervisor_is_reaped_later() -> None:
    """Worst case, the supervisor itself is SIGKILLed: the manager dies with it, reap_stale() removes the rest."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    root = Path("/run/memsched-test") / f"r{os.getpid()}"
    owner, state = _start_owned_sandbox(root)
    box = Sandbox(root, "killed")
    box.load()
    env = dict(os.environ, **box.env())
    subprocess.run(["systemd-run", "--user", "--unit", "sleeper", "sleep", "1000"], env=env, check=True, capture_output=True)
    pids = wait_for(lambda: (p if len(p := _processes_in(box)) >= 3 else None), 10, "three processes")
    os.kill(state["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: not _pid_alive(state["manager_pid"]), 10, "the manager to die with its supervisor")
    assert root.name in {Path(r).name for r in reap_stale()}
    assert not any(_pid_alive(p) for p in pids)
    assert not root.exists()
    assert not any(Path(c).exists() for c in state["cgroups"])
    owner.kill()
    owner.wait()


def test_cli_start_twice_is_harmless_and_stop_without_one_says_so() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    name = f"cli{os.getpid()}"
    run = lambda *a: subprocess.run([sys.executable, "-m", "memsched", "sandbox", *a, "--name", name], capture_output=True, text=True, timeout=60)  # noqa: E731
    try:
        first, second = run("start"), run("start")
        assert first.returncode == 0 and "started" in first.stdout
        assert second.returncode == 0 and "already running" in second.stdout
        status = run("status", "--json")
        data = json.loads(status.stdout)
        assert status.returncode == 0 and data["running"] and data["manager_pid"]
        exports = run("env").stdout
        assert "export XDG_RUNTIME_DIR=" in exports and "export MEMSCHED_JOURNAL_DIR=" in exports
        # the environment really reaches this manager
        env = dict(os.environ, **data["env"])
        listed = subprocess.run(["systemctl", "--user", "list-units", "--no-legend", "dbus.socket"], env=env, capture_output=True, text=True)
        assert "dbus.socket" in listed.stdout
    finally:
        stopped = run("stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    again = run("stop")
    assert again.returncode == 0 and "not running; nothing to stop" in again.stdout
    gone = run("status")
    assert gone.returncode == 3 and "not running" in gone.stdout
    assert run("env").returncode == 3


def test_no_manager_explains_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ManagerUnavailable) as info:
        manager_address("user", {"XDG_RUNTIME_DIR": str(tmp_path)})
    text = str(info.value)
    for option in ("--system", "loginctl enable-linger", "memsched sandbox start", "sandbox env"):
        assert option in text
