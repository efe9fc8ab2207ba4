"""The memory store: events, the TOC (nodes, append-only versions, grips) and rollup checkpoints.

``open_store(path)`` opens (creating and migrating) the SQLite store;
``resolve_store_path(config, scope)`` says where it lives. The interface other
engines would implement is :class:`memsched.store.base.Store`. See docs/store.md.
"""

from __future__ import annotations

import os
from pathlib import Path

from typing import TYPE_CHECKING

from memsched.paths import data_dir

if TYPE_CHECKING:
    from memsched.store.base import Store
    from memsched.store.models import StoreBusyError, StoreError
    from memsched.store.sqlite import DEFAULT_BUSY_TIMEOUT_MS, SqliteStore

# Loaded on first use (PEP 562), so that `memsched status` reading the verification state, or
# `from memsched.store import StoreError`, does not pay for the engine and its interface.
_LAZY = {
    "Store": "memsched.store.base",
    "StoreBusyError": "memsched.store.models",
    "StoreError": "memsched.store.models",
    "DEFAULT_BUSY_TIMEOUT_MS": "memsched.store.sqlite",
    "SqliteStore": "memsched.store.sqlite",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'memsched.store' has no attribute {name!r}")

STORE_FILE = "memory.db"

__all__ = [
    "DEFAULT_BUSY_TIMEOUT_MS",
    "SqliteStore",
    "Store",
    "StoreBusyError",
    "StoreError",
    "open_store",
    "open_configured_store",
    "resolve_store_path",
]


def open_store(path: Path | str, *, busy_timeout_ms: int | None = None) -> SqliteStore:
    """Open the store at ``path``, creating the file (and directory) and migrating the schema.

    Returns an open store (a context manager; ``close()`` when done). Raises
    :class:`StoreError`, :class:`StoreBusyError` or :class:`memsched.errors.PermissionDenied`.
    """
    from memsched.store.sqlite import DEFAULT_BUSY_TIMEOUT_MS, SqliteStore

    return SqliteStore(path, DEFAULT_BUSY_TIMEOUT_MS if busy_timeout_ms is None else busy_timeout_ms).open()


def resolve_store_path(config: object, scope: str, env: dict[str, str] | None = None) -> Path:
    """Return the store file for a config and scope.

    ``[store] path`` when set (``~`` expanded; a relative path is taken relative to the
    config file's directory, or the working directory without a file); otherwise
    ``$XDG_DATA_HOME/memsched/memory.db`` (``~/.local/share/...`` when unset) in user
    scope and ``/var/lib/memsched/memory.db`` in system scope.
    """
    env = os.environ if env is None else env
    settings = getattr(config, "settings", {}).get("store", {})
    configured = str(settings.get("path") or "")
    if configured:
        path = Path(configured).expanduser()
        if not path.is_absolute():
            source = getattr(config, "source", None)
            path = (Path(source).parent if source else Path.cwd()) / path
        return path
    return data_dir(scope, env) / STORE_FILE


def open_configured_store(config: object, scope: str, env: dict[str, str] | None = None) -> SqliteStore:
    """Open the store a config names for a scope, with the config's ``[store] busy_timeout``."""
    settings = getattr(config, "settings", {}).get("store", {})
    timeout = settings.get("busy_timeout")
    return open_store(resolve_store_path(config, scope, env), busy_timeout_ms=int(timeout) if timeout is not None else None)
