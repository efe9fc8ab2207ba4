"""Listen addresses of the facade: ``unix:PATH`` or ``tcp:HOST:PORT``; parsing, the loopback rule, binding.

Imports only the standard library and memsched.config (the CLI and the unit renderer use it without gRPC).
"""

from __future__ import annotations

import grp
import ipaddress
import os
import socket
import stat
from pathlib import Path

from memsched.config.values import ListenAddress, parse_listen  # ListenAddress: defined beside its rule, re-exported here
from memsched.errors import UsageError

SOCKET_MODE = 0o660
DIRECTORY_MODE = 0o755
SOCKET_NAME = "grpc.sock"
BACKLOG = 256


def parse_address(text: str, what: str = "--listen") -> ListenAddress:
    """Parse ``unix:PATH`` (absolute path) or ``tcp:HOST:PORT`` (``[v6]`` in brackets; a host name is fine here).

    The rule is :func:`memsched.config.values.parse_listen` (a config value must name an IP
    address, since it becomes ListenStream=). Returns the :class:`ListenAddress`;
    raises :class:`UsageError` naming ``what``.
    """
    try:
        return parse_listen(text, numeric_host=False)
    except ValueError as exc:
        raise UsageError(f"{what} {text}: {exc}") from None


def default_address(scope: str, env: dict[str, str] | None = None) -> ListenAddress:
    """Return the default unix socket: $XDG_RUNTIME_DIR/memsched/grpc.sock (user) or /run/memsched/grpc.sock (system).

    Raises :class:`UsageError` when the user scope has no XDG_RUNTIME_DIR.
    """
    env = os.environ if env is None else env
    if scope == "system":
        return ListenAddress("unix", path=f"/run/memsched/{SOCKET_NAME}")
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if not runtime.startswith("/"):
        raise UsageError("XDG_RUNTIME_DIR is not set, so there is no default socket path: give --listen unix:PATH")
    return ListenAddress("unix", path=str(Path(runtime) / "memsched" / SOCKET_NAME))


def is_loopback_host(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback address. Raises UsageError when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"--listen: cannot resolve {host!r}: {exc.strerror}") from None
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def socket_is_loopback(sock: socket.socket) -> bool:
    """True when a bound TCP socket listens on a loopback address only."""
    host = sock.getsockname()[0]
    return ipaddress.ip_address(host.split("%")[0]).is_loopback


def describe_socket(sock: socket.socket) -> ListenAddress:
    """Return the address a (possibly inherited) listening socket is bound to."""
    if sock.family == socket.AF_UNIX:
        name = sock.getsockname()
        return ListenAddress("unix", path=name if isinstance(name, str) else os.fsdecode(name))
    host, port = sock.getsockname()[:2]
    return ListenAddress("tcp", host=host, port=port)


def resolve_group(name: str, what: str = "facade.group") -> int:
    """Return the gid of a group name (or number). Raises UsageError naming ``what``."""
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise UsageError(f"{what} = {name!r}: no such group") from None


def bind(address: ListenAddress, group_gid: int | None = None) -> socket.socket:
    """Create, bind and listen on ``address``; a unix socket gets mode 0660 (and ``group_gid``).

    A stale unix socket file (nobody listening) is replaced; a live one is not.
    Returns the listening socket. Raises :class:`UsageError` when the address is in use or cannot be bound.
    """
    if address.kind == "unix":
        return _bind_unix(Path(address.path), group_gid)
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"--listen {address}: cannot resolve {address.host!r}: {exc.strerror}") from None
    family, kind, proto, _canon, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise UsageError(f"--listen {address}: cannot listen: {exc.strerror}") from None
    return sock


def _bind_unix(path: Path, group_gid: int | None) -> socket.socket:
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, DIRECTORY_MODE)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise UsageError(f"--listen unix:{path}: the path exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: nobody listens
        else:
            raise UsageError(f"--listen unix:{path}: another server already listens there")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o777 & ~SOCKET_MODE)  # the socket is never more open than 0660, not even for a moment
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise UsageError(f"--listen unix:{path}: cannot bind: {exc.strerror}") from None
    finally:
        os.umask(old)
    if group_gid is not None:
        try:
            os.chown(path, -1, group_gid)
        except OSError as exc:
            sock.close()
            raise UsageError(f"facade.group: cannot give {path} to gid {group_gid}: {exc.strerror}") from None
    os.chmod(path, SOCKET_MODE)
    sock.listen(BACKLOG)
    return sock
