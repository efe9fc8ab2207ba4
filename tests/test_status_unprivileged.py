"""`status` for someone who may not read the run registry (issue 12.6): what can be read, a clear
message, exit 4; never "internal error" 70.

On a real system the case is an unprivileged user's `memsched --system status`: the system
manager answers anyone's reads, /var/lib/memsched (0750) lets them read nothing. Here the same
situation in user scope: root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (it still owns the
manager, but may not enter a 0700 directory another uid owns) runs status against a registry
in such a directory; and a real second uid, which may not even reach the manager. The
system-scope run is tests/pid1/test_state_access.py.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from foreign import ForeignUser
from memsched_testing import command_job, write_config
from systemd_env import SystemdTestEnv
from test_units_install import install

NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all", "--"]


@pytest.fixture
def guarded(systemd: SystemdTestEnv, foreign_user: ForeignUser) -> Iterator[Path]:
    """Installed jobs whose registry lives in a 0700 directory of the foreign uid; yields the config."""
    top = Path(tempfile.mkdtemp(prefix="msgu-", dir="/tmp"))
    top.chmod(0o755)
    state = top / "state"
    state.mkdir(mode=0o700)
    config = write_config(top, {"guarded": command_job(["/bin/true"], cron="0 0 1 1 *")})
    config.write_text(config.read_text().replace(str(top / "registry.db"), str(state / "registry.db")))
    config.chmod(0o644)
    install(systemd, config)
    assert systemd.memsched("run", "guarded", "--wait", "--config", str(config)).returncode == 0
    os.chown(state, foreign_user.uid, foreign_user.gid)
    for path in state.iterdir():
        os.chown(path, foreign_user.uid, foreign_user.gid)
    try:
        yield config
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _without_dac(systemd: SystemdTestEnv, *args: str) -> tuple[int, str, str]:
    proc = systemd.run(*NO_DAC, sys.executable, "-m", "memsched", *args)
    return proc.returncode, proc.stdout, proc.stderr


def test_status_shows_what_it_can_read_and_says_what_to_do(systemd: SystemdTestEnv, guarded: Path) -> None:
    code, out, err = _without_dac(systemd, "status", "--config", str(guarded))
    assert code == 4, (code, out, err)
    assert "internal error" not in err and "Traceback" not in err, err
    assert "cannot read the run registry" in err and "sudo memsched status" in err and "--endpoint" in err, err
    header, row = out.splitlines()[0].split(), out.splitlines()[1].split()
    assert header[:3] == ["JOB", "STATE", "LAST"] and row[:2] == ["guarded", "idle"], out
    assert row.count("?") >= 8, row  # registry columns unknown, not a made-up "never ran" or 0

    code, out, err = _without_dac(systemd, "status", "--json", "--config", str(guarded))
    assert code == 4, (code, err)
    answer = json.loads(out)
    assert answer["registry_readable"] is False and answer["scheduler_running"] is True, answer
    (job,) = answer["jobs"]
    assert job["state"] == "idle" and job["next_run_ms"] > 0 and job["installed"] is True, job
    assert job["run_count"] is None and job["last_result"] is None and job["late"] is None, job

    # the same command with the permission it needs sees the run
    readable = json.loads(systemd.memsched("status", "--json", "--config", str(guarded), check=True).stdout)
    assert readable["registry_readable"] is True and readable["jobs"][0]["run_count"] == 1, readable


def test_commands_that_need_the_registry_say_permission_denied(systemd: SystemdTestEnv, guarded: Path) -> None:
    for args in (["history", "guarded"], ["pause", "guarded"], ["doctor"]):
        code, out, err = _without_dac(systemd, *args, "--config", str(guarded))
        assert code == 4, (args, code, out, err)
        assert "permission denied" in err and "internal error" not in err and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) <= 3, (args, err)


def test_another_uid_is_told_the_manager_is_not_theirs(systemd: SystemdTestEnv, guarded: Path, foreign_user: ForeignUser) -> None:
    """A real second uid pointed at root's user manager (XDG_RUNTIME_DIR of another user): exit 4 and why."""
    for args in (["status"], ["status", "--json"], ["doctor"]):
        proc = foreign_user.run(sys.executable, "-m", "memsched", *args, "--config", str(guarded), "--user",
                                env=dict(systemd.env, HOME="/nonexistent"))
        assert proc.returncode == 4, (args, proc.returncode, proc.stdout, proc.stderr)
        assert "belongs to another user" in proc.stderr and "internal error" not in proc.stderr, (args, proc.stderr)


def test_a_paused_job_is_not_shown_idle_without_the_registry(systemd: SystemdTestEnv, guarded: Path, foreign_user: ForeignUser) -> None:
    """Whether a stopped timer is a pause is the registry's to say: unread, the state is "stopped", not "idle"."""
    state = guarded.parent / "state"
    os.chown(state, 0, 0)
    for path in state.iterdir():
        os.chown(path, 0, 0)
    assert systemd.memsched("pause", "guarded", "--config", str(guarded)).returncode == 0
    os.chown(state, foreign_user.uid, foreign_user.gid)
    for path in state.iterdir():
        os.chown(path, foreign_user.uid, foreign_user.gid)
    code, out, err = _without_dac(systemd, "status", "--json", "--config", str(guarded))
    assert code == 4, err
    (job,) = json.loads(out)["jobs"]
    assert job["state"] == "stopped" and job["is_paused"] is None and job["next_run_ms"] == 0, job
