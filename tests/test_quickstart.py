"""The README's first command: on a machine with no systemd manager, `memsched quickstart` starts a
private one, loads sample events, installs the units and runs every job once through systemd."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from memsched.systemd.sandbox import Sandbox
from memsched.ops.quickstart import SANDBOX_ROOT


def test_quickstart_runs_every_job_through_a_private_systemd() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for the private manager")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "MEMSCHED_", "DBUS_"))}
    # Our own manager, never the one a user's quickstart (or another checkout's test) runs.
    root = SANDBOX_ROOT.parent / f"quickstart-test-{os.getpid()}"
    env["MEMSCHED_QUICKSTART_ROOT"] = str(root)
    theirs = SANDBOX_ROOT.exists()
    box = Sandbox(root, "quickstart")
    try:
        proc = subprocess.run([sys.executable, "-m", "memsched", "quickstart"], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out = proc.stdout
        assert "starting a private one" in out
        for job in ("toc_rollup_day", "toc_rollup_week", "toc_rollup_month", "toc_rollup_year", "compaction", "store_verify"):
            assert f"ran {job} through systemd: success" in out
        assert "21 day nodes" in out
        # the same view, afterwards, from the environment the sandbox hands out
        box_env = dict(env, **box.env())
        status = subprocess.run([sys.executable, "-m", "memsched", "status"], env=box_env, capture_output=True, text=True)
        assert status.returncode == 0 and status.stdout.count(" success ") == 6, status.stdout + status.stderr
        timers = subprocess.run(["systemctl", "--user", "list-timers", "--no-legend"], env=box_env, capture_output=True, text=True).stdout
        assert timers.count(".timer ") == 6 and all(f"memsched-{j}.timer" in timers for j in ("toc_rollup_day", "compaction"))
    finally:
        box.stop()
    assert not root.exists()
    assert SANDBOX_ROOT.exists() == theirs  # the default sandbox neither started nor stopped by the test
