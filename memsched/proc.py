"""Process checks shared by the registry and the sandbox."""

from __future__ import annotations


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` exists and is not a zombie (a reaped-later child counts as gone)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")
