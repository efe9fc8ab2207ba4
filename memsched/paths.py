"""Where memsched keeps things, per scope (user: XDG directories; system: FHS paths)."""

from __future__ import annotations

import os
from pathlib import Path

from memsched import locate

SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
SYSTEM_STATE_DIR = Path(locate.SYSTEM_STATE_DIR)


def _home(env: dict[str, str]) -> Path:
    return Path(env.get("HOME") or str(Path.home()))


def _xdg(env: dict[str, str], name: str, default: str) -> Path:
    value = env.get(name)
    return Path(value) if value and os.path.isabs(value) else _home(env) / default


def state_dir(scope: str, env: dict[str, str] | None = None) -> Path:
    """Return memsched's state directory: $XDG_STATE_HOME/memsched, or /var/lib/memsched (system)."""
    return Path(locate.state_dir(scope, env))


def data_dir(scope: str, env: dict[str, str] | None = None) -> Path:
    """Return memsched's data directory: $XDG_DATA_HOME/memsched, or /var/lib/memsched (system)."""
    env = os.environ if env is None else env
    if scope == "system":
        return SYSTEM_STATE_DIR
    return _xdg(env, "XDG_DATA_HOME", ".local/share") / "memsched"


def unit_dir(scope: str, env: dict[str, str] | None = None) -> Path:
    """Return the directory units are installed to: $XDG_CONFIG_HOME/systemd/user or /etc/systemd/system."""
    env = os.environ if env is None else env
    if scope == "system":
        return SYSTEM_UNIT_DIR
    return _xdg(env, "XDG_CONFIG_HOME", ".config") / "systemd" / "user"


def registry_path(scope: str, env: dict[str, str] | None = None) -> Path:
    """Return the default run registry database path of a scope."""
    return state_dir(scope, env) / "registry.db"
