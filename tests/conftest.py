"""Suite-wide fixtures and rules.

* ``sandbox``: one private systemd user manager (with its own journald) for the
  whole session, torn down at the end, and with the test process (it is tied to
  it), so an interrupted or killed run leaves no manager behind.
* ``systemd``: a test's view of that manager; what the test installs is removed
  afterwards. Tests using it are marked ``systemd`` automatically.
* ``foreign_user``: a throwaway system user (tests/foreign.py) for attacks run as
  another uid; deleted at the end of the session.
* With MEMSCHED_NO_SKIP=1 (CI) a skipped test is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from foreign import ForeignUser, create_user, reap_stale_users, remove_user
from memsched.systemd.sandbox import Sandbox, reap_stale
from systemd_env import SystemdTestEnv

NO_SKIP = os.environ.get("MEMSCHED_NO_SKIP") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"systemd", "sandbox"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.systemd)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if NO_SKIP and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped, but MEMSCHED_NO_SKIP=1 forbids skips in CI: {reason}"


def _sandbox_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Unix socket paths are limited to 108 bytes: keep the sandbox root short.
    base = Path("/run/memsched-test") if os.geteuid() == 0 else tmp_path_factory.getbasetemp()
    base.mkdir(parents=True, exist_ok=True)
    return base


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    if os.geteuid() != 0:
        pytest.skip("the private systemd manager needs root")
    reap_stale()
    root = _sandbox_base(tmp_path_factory) / f"s{os.getpid()}"
    box = Sandbox(root, f"pytest-{os.getpid()}")
    box.start(tie_to_parent=True)
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture(scope="session")
def _baseline_units(sandbox: Sandbox) -> set[str]:
    probe = SystemdTestEnv(sandbox, Path("/nonexistent"), set())
    return probe.loaded_units()


@pytest.fixture
def systemd(sandbox: Sandbox, _baseline_units: set[str], tmp_path: Path) -> Iterator[SystemdTestEnv]:
    env = SystemdTestEnv(sandbox, tmp_path, _baseline_units)
    try:
        yield env
    finally:
        env.cleanup()


@pytest.fixture(scope="session")
def foreign_user() -> Iterator[ForeignUser]:
    if os.geteuid() != 0:
        pytest.skip("creating a throwaway user needs root")
    reap_stale_users()
    user = create_user()
    try:
        yield user
    finally:
        remove_user(user)
