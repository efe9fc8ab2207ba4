"""The README's "Using it" commands, run as written, against the suite's private systemd manager.

Each line of that block is run through the shell as a user would type it (the comment cut
off), one after the other, with the config in $MEMSCHED_CONFIG instead of ~/.config. Each must
exit 0 and print something; `logs -f` must still be following when stopped. A command that
the README shows and that fails, or whose options changed, fails this test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tomli_w

from systemd_env import SystemdTestEnv

README = Path(__file__).resolve().parent.parent / "README.md"


def using_it_commands() -> list[str]:
    text = README.read_text()
    block = text.split("## Using it", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line]


def test_the_readme_shows_the_commands_this_test_runs() -> None:
    commands = using_it_commands()
    assert len(commands) >= 10 and all(c.split()[0] in ("memsched", "systemctl") for c in commands), commands


def test_every_using_it_command_runs_as_written(systemd: SystemdTestEnv) -> None:
    config = systemd.tmp / "memsched.toml"
    config.write_text(tomli_w.dumps({"store": {"path": str(systemd.tmp / "memory.db")}, "registry": {"path": str(systemd.tmp / "registry.db")}}))
    env = dict(systemd.env, MEMSCHED_CONFIG=str(config), MEMSCHED_SCOPE="user")
    # `memsched` on PATH is this checkout's (the venv's bin first)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    seen = []
    try:
        for command in using_it_commands():
            follows = bool(re.search(r"\s-f\b|--follow", command))
            try:
                proc = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=4 if follows else 120)
            except subprocess.TimeoutExpired:
                assert follows, f"{command!r} hung"
                seen.append(command)
                continue
            assert not follows, f"{command!r} should keep following, exited {proc.returncode}: {proc.stderr}"
            assert proc.returncode == 0, f"{command!r} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            assert proc.stdout.strip(), f"{command!r} printed nothing"
            assert "Traceback" not in proc.stderr, proc.stderr
            seen.append(command)
    finally:
        subprocess.run(["bash", "-c", "memsched resume toc_rollup_day; memsched uninstall-units"], env=env, capture_output=True, timeout=120)
    assert seen == using_it_commands()
