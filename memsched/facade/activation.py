"""systemd integration of the facade service: inherited sockets (LISTEN_FDS) and sd_notify.

:func:`listen_fds` follows ``sd_listen_fds(3)``: the sockets are file descriptors 3
to 3+N-1, and they are ours only when ``LISTEN_PID`` is our pid (a child that
inherited the environment must not take them). :class:`Notifier` sends READY=1,
STATUS=, WATCHDOG=1 and STOPPING=1 through ``$NOTIFY_SOCKET`` (sdnotify) and is a
no-op outside systemd.
"""

from __future__ import annotations

import fcntl
import os
import socket

from memsched.errors import UsageError

SD_LISTEN_FDS_START = 3


def listen_fds(unset_environment: bool = True, env: dict[str, str] | None = None) -> list[socket.socket]:
    """Return the listening sockets systemd passed to this process (empty when none).

    Each descriptor gets FD_CLOEXEC; with ``unset_environment`` LISTEN_PID,
    LISTEN_FDS and LISTEN_FDNAMES are removed so children do not see them.
    Raises :class:`UsageError` when a passed descriptor is not a listening stream socket
    (the socket unit must use ListenStream= and Accept=no).
    """
    env = os.environ if env is None else env
    try:
        pid = int(env.get("LISTEN_PID", ""))
        count = int(env.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    finally:
        if unset_environment:
            for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
                env.pop(key, None)
    if pid != os.getpid() or count <= 0:
        return []
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        flags = fcntl.fcntl(fd, fcntl.F_GETFD)
        fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise UsageError(f"file descriptor {fd} from systemd is not a socket ({exc.strerror})") from None
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise UsageError(
                f"file descriptor {fd} from systemd is not a listening stream socket: "
                "memsched-grpc.socket must use ListenStream= with Accept=no"
            )
        sockets.append(sock)
    return sockets


def watchdog_interval(env: dict[str, str] | None = None) -> float | None:
    """Return how often (seconds) to send WATCHDOG=1: half of $WATCHDOG_USEC, or None when no watchdog is asked for."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    watchdog_pid = env.get("WATCHDOG_PID", "")
    if usec <= 0 or (watchdog_pid and watchdog_pid != str(os.getpid())):
        return None
    return usec / 2 / 1_000_000


class Notifier:
    """sd_notify messages to the service manager; every method is a no-op without $NOTIFY_SOCKET."""

    def __init__(self, env: dict[str, str] | None = None):
        env = os.environ if env is None else env
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self._notifier = None
        if self.enabled:
            import sdnotify

            self._notifier = sdnotify.SystemdNotifier()

    def _send(self, text: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(text)

    def ready(self, status: str) -> None:
        """Tell systemd the server accepts calls (READY=1) and what it does (STATUS=)."""
        self._send(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")

    def status(self, text: str) -> None:
        """Update the STATUS= line `systemctl status` shows."""
        self._send(f"STATUS={text}")

    def watchdog(self) -> None:
        """Ping the watchdog (WATCHDOG=1)."""
        self._send("WATCHDOG=1")

    def stopping(self, status: str) -> None:
        """Tell systemd the server is shutting down (STOPPING=1)."""
        self._send(f"STOPPING=1\nSTATUS={status}")
