"""Helpers for tests against the real (private) systemd manager: run commands in its environment,
wait for unit states and journal lines with deadlines, clean up what a test installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

from memsched.systemd.sandbox import Sandbox

T = TypeVar("T")


class Deadline(AssertionError):
    """A condition did not come true in time."""


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy; return that. Raises Deadline with ``what``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise Deadline(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class SystemdTestEnv:
    """One test's view of the session's private manager.

    ``env`` is the environment for clients (systemctl --user, memsched);
    ``tmp`` is the test's own directory for configs and state.
    """

    def __init__(self, sandbox: Sandbox, tmp: Path, baseline_units: set[str]):
        self.sandbox = sandbox
        self.tmp = tmp
        self.env = dict(os.environ)
        for key in ("MEMSCHED_CONFIG", "NOTIFY_SOCKET", "INVOCATION_ID"):
            self.env.pop(key, None)
        self.env.update(sandbox.env())
        self.env["SYSTEMD_PAGER"] = ""
        self.env["SYSTEMD_COLORS"] = "0"
        self.baseline_units = baseline_units
        self.unit_dir = sandbox.unit_dir
        self._unit_files_before = set(self.unit_dir.glob("*")) if self.unit_dir.exists() else set()

    # ------------------------------------------------------------- commands

    def run(self, *args: str, check: bool = False, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise AssertionError(f"{args} exited {proc.returncode}: {proc.stdout}\n{proc.stderr}")
        return proc

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--user", "--no-pager", *args, check=check)

    def memsched(self, *args: str, check: bool = False, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "memsched", *args, check=check, timeout=timeout, input=input)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    # ------------------------------------------------------------- units

    def write_unit(self, name: str, text: str) -> Path:
        self.unit_dir.mkdir(parents=True, exist_ok=True)
        path = self.unit_dir / name
        path.write_text(text)
        return path

    def wait_unit_state(self, unit: str, states: str | tuple[str, ...], timeout: float = 20) -> str:
        wanted = (states,) if isinstance(states, str) else states
        return wait_for(
            lambda: (s if (s := self.show(unit, "ActiveState")["ActiveState"]) in wanted else None),
            timeout,
            f"{unit} to be {'/'.join(wanted)}",
        )

    # ------------------------------------------------------------- journal

    def journal(self, *matches: str, extra: tuple[str, ...] = ()) -> list[dict[str, str]]:
        """Return journal entries (as dicts) matching the journalctl field matches."""
        proc = self.run(
            "journalctl", f"--directory={self.sandbox.journal_dir()}", "-o", "json", "--no-pager", *extra, *matches
        )
        entries = []
        for line in proc.stdout.splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
        return entries

    def wait_journal(self, *matches: str, text: str | None = None, count: int = 1, timeout: float = 20) -> list[dict[str, str]]:
        """Wait until at least ``count`` entries match (and contain ``text`` in MESSAGE); return them."""

        def found() -> list[dict[str, str]]:
            entries = [e for e in self.journal(*matches) if text is None or text in str(e.get("MESSAGE", ""))]
            return entries if len(entries) >= count else []

        return wait_for(found, timeout, f"{count} journal entries {matches} {text or ''}")

    # ------------------------------------------------------------- cleanup

    def loaded_units(self) -> set[str]:
        out = self.systemctl("list-units", "--all", "--plain", "--no-legend", "--type=service,timer,socket").stdout
        return {line.split()[0] for line in out.splitlines() if line.strip()}

    def cleanup(self) -> None:
        """Stop and remove what the test added, so the next test starts from the same manager state."""
        extra = sorted(self.loaded_units() - self.baseline_units)
        timers = [u for u in extra if u.endswith((".timer", ".socket"))]
        services = [u for u in extra if u not in timers]
        for group in (timers, services):
            if group:
                self.systemctl("stop", *group, check=False)
        if self.unit_dir.exists():
            for path in set(self.unit_dir.glob("*")) - self._unit_files_before:
                if path.is_dir() and not path.is_symlink():
                    for child in path.iterdir():
                        child.unlink()
                    path.rmdir()
                else:
                    path.unlink()
        self.systemctl("daemon-reload", check=False)
        self.systemctl("reset-failed", check=False)
