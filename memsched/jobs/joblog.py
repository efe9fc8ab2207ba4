"""Log lines of a run, tagged so that `journalctl MEMSCHED_JOB=<job>` finds every run in every scope.

systemd applies ``LogExtraFields=`` only to system units (not user units, see
systemd issue #29956), so the runner sends its own lines, and forwards the
output of command jobs, through the journal's native protocol with the fields
itself. Outside systemd (a shell) it prints instead.
"""

from __future__ import annotations

import os
import sys

JOURNAL_SOCKET = "/run/systemd/journal/socket"
PRIORITY_ERR = 3
PRIORITY_WARNING = 4
PRIORITY_INFO = 6


class JobLog:
    """Writes a run's log lines with MEMSCHED_JOB, MEMSCHED_RUN_ID and the unit's invocation id."""

    def __init__(self, job: str, run_id: int | None = None, invocation_id: str | None = None):
        self.job = job
        self.run_id = run_id
        self.invocation_id = invocation_id or os.environ.get("INVOCATION_ID")
        self.to_journal = bool(os.environ.get("JOURNAL_STREAM")) and os.path.exists(JOURNAL_SOCKET)

    def fields(self) -> list[str]:
        fields = [f"MEMSCHED_JOB={self.job}", f"SYSLOG_IDENTIFIER=memsched-{self.job}"]
        if self.run_id is not None:
            fields.append(f"MEMSCHED_RUN_ID={self.run_id}")
        if self.invocation_id:
            fields.append(f"MEMSCHED_INVOCATION_ID={self.invocation_id}")
        return fields

    def line(self, message: str, priority: int = PRIORITY_INFO) -> None:
        """Log one line."""
        if self.to_journal:
            try:
                _send(f"MESSAGE={message}", f"PRIORITY={priority}", *self.fields())
                return
            except OSError:
                self.to_journal = False
        stream = sys.stderr if priority <= PRIORITY_WARNING else sys.stdout
        print(message, file=stream, flush=True)

    def info(self, message: str) -> None:
        self.line(message, PRIORITY_INFO)

    def warning(self, message: str) -> None:
        self.line(message, PRIORITY_WARNING)

    def error(self, message: str) -> None:
        self.line(message, PRIORITY_ERR)


_socket: object = None


def _send(*fields: str) -> None:
    """Send one entry over journald's native protocol (what sd_journal_sendv does), without pystemd.

    A field whose value has a newline goes in the protocol's binary form (name, newline,
    64-bit little-endian length, value). An entry too large for a datagram goes through
    a sealed memfd, as sd_journal_sendv does. Raises OSError when journald cannot be reached.
    """
    import socket

    global _socket
    parts = []
    for field in fields:
        name, _, value = field.partition("=")
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            parts.append(name.encode() + b"\n" + len(data).to_bytes(8, "little") + data + b"\n")
        else:
            parts.append(name.encode() + b"=" + data + b"\n")
    payload = b"".join(parts)
    if _socket is None:
        _socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock: socket.socket = _socket  # type: ignore[assignment]
    try:
        sock.sendto(payload, JOURNAL_SOCKET)
    except OSError as exc:
        import errno

        if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
            raise
        fd = os.memfd_create("journal-entry", os.MFD_ALLOW_SEALING)  # type: ignore[attr-defined]
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            import fcntl

            fcntl.fcntl(fd, 1033, 0x1 | 0x2 | 0x4 | 0x8)  # F_ADD_SEALS: seal, shrink, grow, write
            socket.send_fds(sock, [b""], [fd], 0, JOURNAL_SOCKET)
        finally:
            os.close(fd)
