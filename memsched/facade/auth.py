"""Who may call what.

* Read-only calls (GetSchedulerStatus, GetJobHistory, and the health service) are
  open to whoever can connect to the unix socket (its mode 0660 and group decide).
* Mutating calls (PauseJob, ResumeJob, RunJob) over the unix socket need a caller
  whose uid, read by the kernel (SO_PEERCRED, see :mod:`memsched.facade.relay`), is
  the server's own uid or root, or who belongs to the configured group.
* Over TCP, every MemoryService call needs ``authorization: Bearer TOKEN`` with the
  token of the token file (compared in constant time); only the health service is open.

gRPC's Python API cannot tell a server the uid of a unix-socket peer (its auth
context says only "local"), so the uid comes from the relay that accepted the
connection; see docs/facade.md.
"""

from __future__ import annotations

import hmac
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from memsched.errors import UsageError

MUTATING = frozenset({"PauseJob", "ResumeJob", "RunJob"})
READ_ONLY = frozenset({"GetSchedulerStatus", "GetJobHistory"})


@dataclass(frozen=True)
class Peer:
    """The far end of one connection: transport "unix" (with the kernel's uid/gid/pid) or "tcp" (with its address)."""

    transport: str
    uid: int | None = None
    gid: int | None = None
    pid: int | None = None
    address: str = ""

    def describe(self) -> str:
        if self.transport == "unix":
            return f"uid {self.uid} (pid {self.pid})"
        return f"tcp {self.address}"


class AuthDenied(Exception):
    """A call is refused; ``code`` is "unauthenticated" or "permission_denied"."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def in_group(uid: int, gid: int, group_gid: int) -> bool:
    """True when the user ``uid`` (primary group ``gid``) belongs to ``group_gid`` (primary or supplementary)."""
    if gid == group_gid:
        return True
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return False
    return group_gid in os.getgrouplist(name, gid)


def load_token(path: str, what: str = "--token-file") -> str:
    """Return the token in ``path`` (surrounding whitespace removed).

    Raises :class:`UsageError` naming ``what`` when the file is missing, empty,
    shorter than 16 characters, or readable by others.
    """
    file = Path(path)
    try:
        info = file.stat()
        token = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path}: not UTF-8 text") from None
    if info.st_mode & stat.S_IROTH:
        raise UsageError(f"{what} {path}: readable by everyone; chmod o-r it (a token must stay secret)")
    if len(token) < 16 or any(c.isspace() for c in token):
        raise UsageError(f"{what} {path}: expected one token of at least 16 characters without spaces")
    return token


def bearer_token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    """Return the token of an ``authorization: Bearer TOKEN`` metadata entry, or None."""
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


@dataclass(frozen=True)
class AuthPolicy:
    """The rules of one server: its own uid, the optional group, the TCP token."""

    server_uid: int
    group_gid: int | None = None
    token: str | None = None

    def check(self, peer: Peer | None, method: str, metadata: tuple[tuple[str, str | bytes], ...] | None) -> None:
        """Return when ``peer`` may call ``method``; raise :class:`AuthDenied` otherwise."""
        if peer is not None and peer.transport == "tcp":
            sent = bearer_token(metadata)
            if sent is None:
                raise AuthDenied("unauthenticated", "this TCP endpoint needs 'authorization: Bearer TOKEN' metadata")
            if self.token is None or not hmac.compare_digest(sent.encode(), self.token.encode()):
                raise AuthDenied("unauthenticated", "wrong token")
            return
        if method not in MUTATING:
            return
        if peer is None or peer.uid is None:
            raise AuthDenied("permission_denied", f"{method} needs a caller whose uid is known")
        if peer.uid in (0, self.server_uid):
            return
        if self.group_gid is not None and in_group(peer.uid, peer.gid if peer.gid is not None else -1, self.group_gid):
            return
        allowed = f"uid {self.server_uid}, root" + (f" or members of gid {self.group_gid}" if self.group_gid is not None else "")
        raise AuthDenied("permission_denied", f"{method} is refused to uid {peer.uid}: only {allowed} may change jobs")
