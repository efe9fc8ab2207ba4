"""The SQLite store: creation, migrations by version, clear errors, and locks waited for, never surfaced."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from memsched.config.load import parse_config
from memsched.errors import PermissionDenied
from memsched.store import StoreBusyError, StoreError, open_configured_store, open_store, resolve_store_path
from memsched.store.migrations import MIGRATIONS, SCHEMA_VERSION


def test_new_store_is_wal_incremental_vacuum_and_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "memory.db"
    with open_store(path) as store:
        assert store.pragma("PRAGMA journal_mode", "t") == [("wal",)]
        assert store.pragma("PRAGMA auto_vacuum", "t") == [(2,)]
        assert store.pragma("PRAGMA user_version", "t") == [(SCHEMA_VERSION,)]
        assert store.count_events() == 0 and store.list_nodes() == []
    with open_store(path) as again:  # reopening migrates nothing
        assert again.pragma("PRAGMA user_version", "t") == [(SCHEMA_VERSION,)]


def test_migrations_run_in_order_from_an_older_version(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE unrelated (x)")  # an existing file at version 0
    conn.commit()
    conn.close()
    with open_store(path) as store:
        tables = {r[0] for r in store.pragma("SELECT name FROM sqlite_schema WHERE type = 'table'", "t")}
        assert {"events", "toc_nodes", "toc_versions", "grips", "segments", "build_queue", "rollup_checkpoints", "unrelated"} <= tables
        assert store.pragma("PRAGMA user_version", "t") == [(len(MIGRATIONS),)]


def test_a_store_from_a_newer_memsched_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    open_store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this memsched understands"):
        open_store(path)


def test_not_a_database_is_a_clear_store_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"x" * 8192)
    with pytest.raises(StoreError, match=r"junk\.db: open: not an SQLite database") as caught:
        open_store(path)
    assert caught.value.exit_code == 1


def test_directory_that_cannot_be_created_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises((StoreError, PermissionDenied), match="cannot create the store's directory"):
        open_store(blocker / "sub" / "memory.db")


def hold_write_lock(path: Path, seconds: float, ready: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    ready.set()
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()


def test_a_writer_waits_for_a_lock_shorter_than_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with open_store(path, busy_timeout_ms=5000) as store:
        ready = threading.Event()
        holder = threading.Thread(target=hold_write_lock, args=(path, 0.5, ready))
        holder.start()
        ready.wait()
        assert store.count_events() == 0  # readers are never blocked in WAL mode
        with store.write("test") as conn:
            conn.execute("INSERT INTO build_queue (day, min_new_ts) VALUES (1, 1)")
        holder.join()
        assert [d.day for d in store.pending_days()] == [1]


def test_a_lock_held_past_busy_timeout_is_a_clear_error_not_database_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with open_store(path, busy_timeout_ms=300) as store:
        ready = threading.Event()
        holder = threading.Thread(target=hold_write_lock, args=(path, 1.5, ready))
        holder.start()
        ready.wait()
        with pytest.raises(StoreBusyError) as caught:
            with store.write("rollup"):
                pass
        holder.join()
    message = str(caught.value)
    assert "database is locked" not in message
    assert "m.db: rollup: another process kept the store busy for more than 0.3s" in message and "[store] busy_timeout" in message


def test_resolve_store_path(tmp_path: Path) -> None:
    defaults = parse_config({})
    assert resolve_store_path(defaults, "user", {"XDG_DATA_HOME": "/xdg", "HOME": "/home/u"}) == Path("/xdg/memsched/memory.db")
    assert resolve_store_path(defaults, "user", {"HOME": "/home/u"}) == Path("/home/u/.local/share/memsched/memory.db")
    assert resolve_store_path(defaults, "user", {"XDG_DATA_HOME": "relative", "HOME": "/home/u"}) == Path("/home/u/.local/share/memsched/memory.db")
    assert resolve_store_path(defaults, "system", {}) == Path("/var/lib/memsched/memory.db")
    absolute = parse_config({"store": {"path": "/srv/m.db"}})
    assert resolve_store_path(absolute, "system", {}) == Path("/srv/m.db")
    relative = parse_config({"store": {"path": "stores/m.db"}}, source=tmp_path / "memsched.toml")
    assert resolve_store_path(relative, "user", {}) == tmp_path / "stores" / "m.db"


def test_open_configured_store_uses_the_configured_busy_timeout(tmp_path: Path) -> None:
    config = parse_config({"store": {"path": str(tmp_path / "m.db"), "busy_timeout": "2s"}})
    with open_configured_store(config, "user") as store:
        assert store.busy_timeout_ms == 2000 and store.path == tmp_path / "m.db"
