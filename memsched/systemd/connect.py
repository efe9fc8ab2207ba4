"""Where the systemd manager of a scope listens, and what to tell the user when it does not.

Kept free of pystemd imports so that commands can explain a missing manager
cheaply, before anything heavy is loaded.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from memsched.errors import ManagerUnavailable, PermissionDenied

SYSTEM_PRIVATE_SOCKET = Path("/run/systemd/private")
SYSTEM_BUS_SOCKET = Path("/run/dbus/system_bus_socket")


@dataclass(frozen=True)
class ManagerAddress:
    """How to reach a manager: a D-Bus address, and whether it is a direct (peer-to-peer) socket."""

    scope: str
    address: str
    peer_to_peer: bool


def user_runtime_dir(env: dict[str, str] | None = None) -> Path | None:
    """Return the user's runtime directory ($XDG_RUNTIME_DIR, else /run/user/UID when it exists)."""
    env = os.environ if env is None else env
    value = env.get("XDG_RUNTIME_DIR")
    if value:
        return Path(value)
    fallback = Path(f"/run/user/{os.getuid()}")
    return fallback if fallback.is_dir() else None


def manager_address(scope: str, env: dict[str, str] | None = None) -> ManagerAddress:
    """Return the address of the scope's manager.

    Prefers the manager's private socket (no dbus-daemon needed); a non-root
    user reaches the system manager through the system bus.
    Raises :class:`ManagerUnavailable` with what the user can do about it.
    """
    if scope == "user":
        runtime = user_runtime_dir(env)
        private = runtime / "systemd" / "private" if runtime else None
        if private is not None and _is_socket(private):
            return ManagerAddress(scope, f"unix:path={private}", True)
        raise ManagerUnavailable(no_manager_help("user", private))
    if os.geteuid() == 0 and SYSTEM_PRIVATE_SOCKET.is_socket():
        return ManagerAddress(scope, f"unix:path={SYSTEM_PRIVATE_SOCKET}", True)
    if SYSTEM_BUS_SOCKET.is_socket() and Path("/run/systemd/system").is_dir():
        return ManagerAddress(scope, f"unix:path={SYSTEM_BUS_SOCKET}", False)
    raise ManagerUnavailable(no_manager_help("system", SYSTEM_PRIVATE_SOCKET))


def _is_socket(path: Path) -> bool:
    """Whether ``path`` is a socket; raises :class:`PermissionDenied` when we may not even look (another user's runtime directory)."""
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except PermissionError:
        raise PermissionDenied(
            f"{path}: permission denied: that user manager belongs to another user (XDG_RUNTIME_DIR={path.parent.parent}); "
            "use your own session's manager, or --system"
        ) from None


def no_manager_help(scope: str, looked_at: Path | None) -> str:
    """Return the explanation and the options when no manager is reachable for ``scope``."""
    where = f" (nothing listens at {looked_at})" if looked_at else " ($XDG_RUNTIME_DIR is not set)"
    sandbox = (
        "  - on a machine without a running systemd (containers, CI): start a private manager with\n"
        "    `memsched sandbox start`, then `eval \"$(memsched sandbox env)\"` (it selects --user)."
    )
    if scope == "user":
        return (
            f"no systemd user manager is reachable{where}. What you can do:\n"
            "  - use the system manager instead: add --system (as root, on a machine booted with systemd);\n"
            "  - log in with a user session, which starts your user manager, and keep it running while\n"
            "    you are logged out with `loginctl enable-linger $USER`;\n" + sandbox
        )
    return (
        f"no systemd system manager is reachable{where}: systemd is not running as init here. What you can do:\n"
        "  - use your user manager instead: add --user (or set MEMSCHED_SCOPE=user), with a user session\n"
        "    or `loginctl enable-linger $USER` so it runs while you are logged out;\n" + sandbox
    )
