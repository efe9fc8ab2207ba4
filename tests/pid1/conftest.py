"""Fixtures of the PID-1 suite (see tests/pid1/README.md).

* ``deb(release)``: memsched's .deb built from this checkout for ``release`` (once per session).
* ``booted(release)``: the session's shared machine of ``release``, booted with systemd as PID 1
  (booted once, on first use; halted and removed at the end of the session).
* ``machine``: ``booted(release)`` for every release in turn (tests using it run once per release).
* ``fresh_machine(release)``: a machine of its own for one test (a reboot, a changed config that
  must not leak); removed after the test.
* ``run_in(machine, cmd, user=...)``: from ``harness``, run a command inside as root or any user.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import RELEASES, WORK, Machine, build_deb, release_cgroups

pytestmark = pytest.mark.pid1


def _need_host() -> None:
    if os.geteuid() != 0:
        pytest.skip("the PID-1 suite needs root (debootstrap, systemd-nspawn)")
    for tool in ("debootstrap", "systemd-nspawn", "nsenter", "dpkg-buildpackage"):
        if shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            pytest.skip(f"the PID-1 suite needs {tool}: run scripts/bootstrap --packaging")


def _reap_stale() -> None:
    """Remove machines of sessions that died (their pid in the name is gone)."""
    if not WORK.is_dir():
        return
    for entry in WORK.iterdir():
        prefix = entry.name.split("-", 1)[0]
        if not prefix.startswith("m") or not prefix[1:].isdigit():
            continue
        pid = int(prefix[1:])
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            name = entry.name.split(".console.")[0]
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            release_cgroups(name)
            shutil.rmtree(f"/run/systemd/nspawn/propagate/{name}", ignore_errors=True)


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    _need_host()
    built: dict[str, Path] = {}

    def get(release: str) -> Path:
        if release not in built:
            built[release] = build_deb(release, tmp_path_factory.mktemp(f"deb-{release}"))
        return built[release]

    return get


@pytest.fixture(scope="session")
def booted(deb: Callable[[str], Path]) -> Iterator[Callable[[str], Machine]]:
    _reap_stale()
    machines: dict[str, Machine] = {}

    def get(release: str) -> Machine:
        if release not in machines:
            m = Machine.create(release, deb(release), f"m{os.getpid()}-{release}")
            machines[release] = m
            m.boot()
        return machines[release]

    try:
        yield get
    finally:
        for m in machines.values():
            m.destroy()


@pytest.fixture(scope="session", params=sorted(RELEASES))
def release(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def machine(booted: Callable[[str], Machine], release: str) -> Machine:
    return booted(release)


@pytest.fixture
def fresh_machine(deb: Callable[[str], Path], request: pytest.FixtureRequest) -> Iterator[Callable[[str], Machine]]:
    made: list[Machine] = []

    def make(release: str) -> Machine:
        m = Machine.create(release, deb(release), f"m{os.getpid()}-{release}-f{len(made)}")
        made.append(m)
        m.boot()
        return m

    try:
        yield make
    finally:
        for m in made:
            m.destroy()
