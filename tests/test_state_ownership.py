"""State files created by root belong to the service user (issue 12.2), with a real second uid.

In system scope /var/lib/memsched belongs to the service user (``memsched``) and the jobs
run as it; root's commands (install-units, pause, ingest, the facade's PauseJob) open the
same registry.db and memory.db. Here a throwaway uid plays the service user: it owns the
state directory, root runs memsched's commands against it (user scope, the private
manager), and then that uid must still be able to write everything. The system-scope run
of the same promise is tests/pid1 (see docs/store.md).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from foreign import ForeignUser
from memsched import statefile
from memsched.errors import MemschedError
from memsched.registry import Registry
from memsched.store import open_store
from memsched.store.sample import generate_events, to_jsonl
from memsched_testing import command_job, write_config
from systemd_env import SystemdTestEnv
from test_units_install import install

DAY0 = 1_767_225_600_000  # 2026-01-01 UTC

# As the service user: record a pause in the registry and ingest events into the store,
# the writes its jobs make. Prints what happened.
SERVICE_USER_WRITES = textwrap.dedent(
    """
    import json, os, sys
    from memsched.registry import Registry
    from memsched.store import open_store
    out = {"uid": os.getuid()}
    try:
        with Registry(sys.argv[1]).open() as registry:
            registry.pause("owned", "service user")
            registry.resume("owned")
        out["registry"] = "OK"
    except Exception as exc:
        out["registry"] = f"{type(exc).__name__}: {exc}"
    try:
        store = open_store(sys.argv[2])
        with store.write("test"):
            pass
        store.close()
        out["store"] = "OK"
    except Exception as exc:
        out["store"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(out))
    """
)


@pytest.fixture
def state(foreign_user: ForeignUser) -> Iterator[Path]:
    """A state directory owned by the foreign uid, mode 0750, under a directory everyone may traverse."""
    top = Path(tempfile.mkdtemp(prefix="msst-", dir="/tmp"))
    top.chmod(0o755)
    directory = top / "state"
    directory.mkdir(mode=0o750)
    os.chown(directory, foreign_user.uid, foreign_user.gid)
    try:
        yield directory
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _config(state: Path) -> Path:
    config = write_config(state.parent, {"owned": command_job(["/bin/true"], cron="0 0 1 1 *")},
                          extra={"store": {"path": str(state / "memory.db")}})
    text = config.read_text().replace(str(state.parent / "registry.db"), str(state / "registry.db"))
    config.write_text(text)
    config.chmod(0o644)
    return config


def _owners(state: Path) -> dict[str, tuple[int, int, str]]:
    return {p.name: (p.lstat().st_uid, p.lstat().st_gid, oct(stat.S_IMODE(p.lstat().st_mode))) for p in sorted(state.iterdir())}


def _service_user_writes(user: ForeignUser, state: Path) -> dict[str, str]:
    proc = user.run(sys.executable, "-c", SERVICE_USER_WRITES, str(state / "registry.db"), str(state / "memory.db"),
                    env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _assert_owned(state: Path, user: ForeignUser) -> None:
    _assert_owned_names(state, user, {"registry.db", "memory.db"})


def _assert_owned_names(state: Path, user: ForeignUser, names: set[str]) -> None:
    owners = _owners(state)
    assert names <= set(owners), owners
    wrong = {name: o for name, o in owners.items() if o[:2] != (user.uid, user.gid)}
    assert not wrong, f"not owned by uid {user.uid}: {wrong}"


def test_files_root_creates_belong_to_the_service_user(systemd: SystemdTestEnv, state: Path, foreign_user: ForeignUser) -> None:
    config = _config(state)
    events = state.parent / "events.jsonl"
    events.write_bytes(b"".join(to_jsonl(generate_events(DAY0, 1, seed=3))))
    # root's commands, each of which creates or opens registry.db / memory.db first
    install(systemd, config)
    assert systemd.memsched("pause", "owned", "--config", str(config)).returncode == 0
    proc = systemd.memsched("ingest", str(events), "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    _assert_owned(state, foreign_user)
    assert _service_user_writes(foreign_user, state) == {"uid": foreign_user.uid, "registry": "OK", "store": "OK"}


def test_wal_and_shm_root_creates_while_it_holds_the_files_open(state: Path, foreign_user: ForeignUser) -> None:
    """Interleaved: the service user made the files; root opens them first after a quiet spell
    (so it creates -wal and -shm) and keeps them open while the service user writes."""
    assert _service_user_writes(foreign_user, state) == {"uid": foreign_user.uid, "registry": "OK", "store": "OK"}
    with Registry(str(state / "registry.db")).open() as registry:
        registry.pause("owned", "root")
        store = open_store(state / "memory.db")
        try:
            with store.write("test"):
                pass
            assert (state / "registry.db-wal").exists() and (state / "memory.db-shm").exists()
            _assert_owned(state, foreign_user)
            assert _service_user_writes(foreign_user, state)["registry"] == "OK"
            assert _service_user_writes(foreign_user, state)["store"] == "OK"
        finally:
            store.close()
    _assert_owned(state, foreign_user)


def test_files_an_older_memsched_left_owned_by_root_are_given_back(systemd: SystemdTestEnv, state: Path, foreign_user: ForeignUser) -> None:
    config = _config(state)
    for name in ("registry.db", "memory.db"):
        sqlite3.connect(state / name).close()  # as root, 0644: what memsched before the fix left behind
        assert (state / name).stat().st_uid == 0
    assert systemd.memsched("status", "--config", str(config)).returncode == 0
    proc = systemd.memsched("toc", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    _assert_owned(state, foreign_user)
    assert _service_user_writes(foreign_user, state) == {"uid": foreign_user.uid, "registry": "OK", "store": "OK"}


def test_a_link_planted_in_the_state_directory_is_not_followed(state: Path, foreign_user: ForeignUser, tmp_path: Path) -> None:
    """The service user owns the directory: root neither follows nor hands over what a link there points at."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"")
    missing = tmp_path / "would-be-created"
    cases = {"registry.db": victim, "memory.db": missing}
    for name, target in cases.items():
        (state / name).symlink_to(target)
    with pytest.raises(MemschedError, match="registry.db: is a symbolic link"):
        Registry(str(state / "registry.db")).open()
    with pytest.raises(MemschedError, match="memory.db: is a symbolic link"):
        open_store(state / "memory.db")
    (state / "registry.db").unlink()
    (state / "registry.db-wal").symlink_to(victim)
    with pytest.raises(MemschedError, match="registry.db-wal: is a symbolic link"):
        Registry(str(state / "registry.db")).open()
    assert victim.stat().st_uid == 0 and victim.stat().st_size == 0 and not missing.exists()
    os.link(victim, state / "linked.db")  # root may make a hard link to its file; the owner could not (protected_hardlinks)
    with pytest.raises(MemschedError, match="2 links"):
        Registry(str(state / "linked.db")).open()
    assert victim.stat().st_uid == 0


def test_root_creating_the_system_state_directory_gives_it_to_the_service_user(monkeypatch: pytest.MonkeyPatch, foreign_user: ForeignUser) -> None:
    """When root's command is the first to need /var/lib/memsched (here: a stand-in path), it is the service user's, 0750."""
    top = Path(tempfile.mkdtemp(prefix="msst-", dir="/tmp"))
    try:
        directory = top / "var-lib-memsched"
        monkeypatch.setattr(statefile, "SYSTEM_STATE_DIR", str(directory))
        monkeypatch.setattr(statefile, "SYSTEM_USER", foreign_user.name)
        with Registry(str(directory / "registry.db")).open():
            pass
        info = directory.stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (foreign_user.uid, foreign_user.gid, 0o750)
        _assert_owned_names(directory, foreign_user, {"registry.db"})
    finally:
        shutil.rmtree(top, ignore_errors=True)
