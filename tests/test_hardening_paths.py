"""check_paths: which paths the system-scope hardening hides or keeps read-only (the PID-1 suite proves
the refusal end to end: tests/pid1/test_install_refusals.py)."""

from __future__ import annotations

from pathlib import Path

from memsched.systemd.hardening import check_paths, hidden_by


def test_hidden_directories_and_their_neighbours() -> None:
    assert hidden_by("/root/venv/bin/memsched") == ("ProtectHome=yes", ("/home", "/root", "/run/user"))
    assert hidden_by("/home") is not None and hidden_by("/run/user/1000/x") is not None
    assert hidden_by("/var/tmp/x.db")[0] == "PrivateTmp=yes"  # type: ignore[index]
    for allowed in ("/rootfs/x", "/homes/x", "/tmpdata/x", "/opt/venv/bin/memsched", "/var/tmpx", "/run/users"):
        assert hidden_by(allowed) is None, allowed
    assert hidden_by("/srv/../root/x") is not None, "normalized first"


def test_written_paths_need_an_existing_directory_outside_the_state_directory() -> None:
    missing = Path("/var/cache/memsched-test-no-such-directory")
    assert not missing.exists()
    written = [("store.path", "/var/cache/memory.db"), ("registry.path", str(missing / "registry.db")),
               ("metrics.textfile", "/var/lib/memsched/sub/m.prom")]
    blocked = check_paths([("the config", "/etc/memsched/memsched.toml")], written, "/var/lib/memsched")
    assert [(b.what, b.setting) for b in blocked] == [("registry.path", "ProtectSystem=strict")]
    assert f"create {missing} first" in blocked[0].message()
    tmp = check_paths([], [("store.path", "/tmp/memory.db")], "/var/lib/memsched")
    assert [(b.what, b.setting) for b in tmp] == [("store.path", "PrivateTmp=yes")], "hidden, and not also reported as read-only"
