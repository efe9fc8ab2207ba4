"""Who is acting, as the registry records it."""

from __future__ import annotations

import getpass
import os
import socket


def default_actor() -> str:
    """Return who is acting, for the registry: user@host (uid)."""
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} (uid {os.getuid()})"
