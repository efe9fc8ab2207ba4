"""Where things are, with nothing but ``os``: the scope, the config file, the state directory.

The start of `memsched exec` (what every timer runs) uses these before the job's
command starts, so they import no pathlib, no re and no config schema.
:mod:`memsched.config.load` and :mod:`memsched.paths` return the same answers
as :class:`pathlib.Path` objects, through these functions.
"""

from __future__ import annotations

import os

from memsched.errors import UsageError

SCOPES = ("user", "system")
SYSTEM_CONFIG = "/etc/memsched/memsched.toml"
SYSTEM_STATE_DIR = "/var/lib/memsched"
SYSTEM_USER = "memsched"  # the user system-scope jobs run as; owns SYSTEM_STATE_DIR


def resolve_scope(flag: str | None, env: dict[str, str] | None = None) -> str:
    """Return "user" or "system": the flag, else ``$MEMSCHED_SCOPE``, else system for root and user otherwise.

    Raises :class:`UsageError` for an invalid ``$MEMSCHED_SCOPE``.
    """
    env = os.environ if env is None else env
    if flag:
        return flag
    value = env.get("MEMSCHED_SCOPE", "").strip()
    if value:
        if value not in SCOPES:
            raise UsageError(f"MEMSCHED_SCOPE={value!r}: expected 'user' or 'system'")
        return value
    return "system" if os.geteuid() == 0 else "user"


def home(env: dict[str, str]) -> str:
    """Return ``$HOME``, or the user's home directory from the password database."""
    return env.get("HOME") or os.path.expanduser("~")


def xdg_dir(env: dict[str, str], name: str, default: str) -> str:
    """Return the XDG directory ``$name`` when it is absolute, else ``$HOME/default``."""
    value = env.get(name)
    return value if value and os.path.isabs(value) else os.path.join(home(env), default)


def user_config_home(env: dict[str, str] | None = None) -> str:
    """Return ``$XDG_CONFIG_HOME`` or ``~/.config``."""
    env = os.environ if env is None else env
    value = env.get("XDG_CONFIG_HOME")
    return value if value else os.path.join(home(env), ".config")


def find_config_path(explicit: str | None, scope: str, env: dict[str, str] | None = None) -> str | None:
    """Return the absolute path of the config file to use, or None for built-in defaults.

    Order: ``explicit`` (``--config``), ``$MEMSCHED_CONFIG``, the scope's standard path.
    Raises :class:`UsageError` when an explicitly named file does not exist.
    """
    env = os.environ if env is None else env
    if explicit:
        if not os.path.isfile(explicit):
            raise UsageError(f"--config {explicit}: no such file")
        return os.path.realpath(explicit)
    if env.get("MEMSCHED_CONFIG"):
        path = env["MEMSCHED_CONFIG"]
        if not os.path.isfile(path):
            raise UsageError(f"MEMSCHED_CONFIG={path}: no such file")
        return os.path.realpath(path)
    candidate = os.path.join(user_config_home(env), "memsched", "memsched.toml") if scope == "user" else SYSTEM_CONFIG
    return candidate if os.path.isfile(candidate) else None


def state_dir(scope: str, env: dict[str, str] | None = None) -> str:
    """Return memsched's state directory: ``$XDG_STATE_HOME/memsched``, or /var/lib/memsched (system)."""
    env = os.environ if env is None else env
    if scope == "system":
        return SYSTEM_STATE_DIR
    return os.path.join(xdg_dir(env, "XDG_STATE_HOME", ".local/state"), "memsched")
