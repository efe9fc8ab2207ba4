"""The front door: accept connections on the public sockets, learn who is calling, relay bytes to gRPC.

Why a relay: gRPC's Python server can neither adopt a listening socket systemd
passes (``add_insecure_port`` only binds addresses itself, and binding a unix path
unlinks systemd's socket) nor tell a handler the uid of a unix-socket peer (its
auth context only says "local"). So memsched accepts every connection itself, on
the inherited or self-bound sockets, and reads the peer's credentials from the
kernel (``SO_PEERCRED``: pid, uid, gid of the connecting process, unforgeable).
It then opens a connection to the real gRPC server on a private unix socket (in a
0700 directory) from a socket bound to an abstract address; gRPC reports that
address as the call's peer (``unix-abstract:NAME``), and :meth:`Relay.peer_of` maps
it back to the credentials. Abstract names are a namespace every local user shares
and can read (/proc/net/unix), so each name is 128 random bits drawn afresh per
connection: nobody can predict, and so take first, the name the relay binds next
(a counter or a per-process tag let another user squat on the next names and make
every call fail). A name that is taken anyway costs a retry, not the connection. Bytes are relayed unchanged in both directions
(HTTP/2 end to end: flow control, GOAWAY and deadlines work as without the relay).

The relay runs one asyncio loop in a thread of its own.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import secrets
import socket
import ssl
import struct
import threading
import time
from functools import partial

from memsched.facade.auth import Peer

ABSTRACT_PREFIX = "unix-abstract:"
NAME_PREFIX = "memsched-facade-"
_BIND_ATTEMPTS = 8
_UCRED = struct.Struct("3i")


def _random_name() -> str:
    """Return a fresh abstract socket name: the prefix and 128 bits from the OS's CSPRNG."""
    return NAME_PREFIX + secrets.token_hex(16)


def _proc_address(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """Decode a /proc/net/tcp{,6} address ("0100007F:1F90": host words in host byte order, port in hex)."""
    host, _, port = text.partition(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return _plain(ipaddress.IPv4Address(raw[::-1])), int(port, 16)
    return _plain(ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))), int(port, 16)


def _plain(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped if mapped is not None else ip


def tcp_peer_uid(peer: tuple[str, int], local: tuple[str, int]) -> int | None:
    """Return the uid that owns the TCP socket at ``peer`` connected to our ``local`` address, or None.

    Read from /proc/net/tcp and /proc/net/tcp6 (the kernel lists every socket of the network
    namespace with its owner): meaningful for loopback peers, which are processes of this machine.
    """
    want = ((_plain(ipaddress.ip_address(peer[0].split("%")[0])), peer[1]), (_plain(ipaddress.ip_address(local[0].split("%")[0])), local[1]))
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            try:
                if len(fields) > 7 and (_proc_address(fields[1]), _proc_address(fields[2])) == want:
                    return int(fields[7])
            except ValueError:
                continue
    return None


def bind_unpredictable(sock: socket.socket) -> str:
    """Bind unix ``sock`` to a fresh random abstract name and return the name (without the NUL).

    A name already in use is replaced by another random one. Raises OSError when
    binding fails otherwise, or when every attempt found its name taken.
    """
    for _ in range(_BIND_ATTEMPTS):
        name = _random_name()
        try:
            sock.bind("\0" + name)
            return name
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, f"no free abstract socket name after {_BIND_ATTEMPTS} attempts")


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """Return (pid, uid, gid) of the process at the other end of a connected unix socket (SO_PEERCRED)."""
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return pid, uid, gid


class Relay:
    """Accepts on ``listeners`` and relays every connection to the gRPC server at unix ``upstream``.

    At most ``max_connections`` in all, and ``max_per_owner`` per owner: a uid (a unix peer's,
    or a loopback TCP peer's from /proc/net/tcp) or a remote address. Root and our own uid are
    limited by the total only.

    With ``tls``, TCP connections are TLS, terminated here (unix sockets stay plain).

    ``last_activity`` (time.monotonic) moves with every relayed chunk and
    connection; ``connections`` counts open ones.
    """

    def __init__(
        self,
        listeners: list[socket.socket],
        upstream: str,
        max_connections: int = 1024,
        tls: ssl.SSLContext | None = None,
        max_per_owner: int = 128,
    ):
        self._listeners = listeners
        # One local user (or one remote address) may hold at most max_per_owner connections, so
        # nobody can take every slot and shut the others out; root and the server's own uid are not limited.
        self._max_per_owner = max_per_owner
        self._owners: dict[tuple[str, object], int] = {}
        self._exempt = {0, os.geteuid()}
        self._tls = tls  # TCP listeners speak TLS with this context (the token must not cross a network in clear)
        self._upstream = upstream
        self._max = max_connections
        self._peers: dict[str, Peer] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._transports: set[asyncio.BaseTransport] = set()
        self.connections = 0
        self.accepted = 0
        self.last_activity = time.monotonic()

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start accepting in a background thread. Raises OSError when a listener cannot be served."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start_servers())
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="memsched-facade-relay", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]

    async def _start_servers(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._listeners:
            sock.setblocking(False)
            transport = "unix" if sock.family == socket.AF_UNIX else "tcp"
            tls = self._tls if transport == "tcp" else None
            self._servers.append(await loop.create_server(partial(_ClientSide, self, transport), sock=sock, ssl=tls,
                                                          ssl_handshake_timeout=10 if tls else None))

    def stop_accepting(self) -> None:
        """Close the listening sockets (systemd keeps its own copy of an inherited one); open connections go on."""
        if self._loop is None:
            return

        async def close() -> None:
            for server in self._servers:
                server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)

    def close(self) -> None:
        """Stop accepting, cut every relayed connection, and stop the thread."""
        if self._loop is None or self._thread is None:
            return
        self.stop_accepting()

        async def cut() -> None:
            for transport in list(self._transports):
                transport.abort()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(cut(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    # ------------------------------------------------------------- identity

    def peer_of(self, grpc_peer: str) -> Peer | None:
        """Return the caller behind a gRPC peer string (``context.peer()``), or None when it did not come through us."""
        if not grpc_peer.startswith(ABSTRACT_PREFIX):
            return None
        return self._peers.get(grpc_peer[len(ABSTRACT_PREFIX) :])

    def _owner(self, peer: Peer, sock: socket.socket) -> tuple[str, object] | None:
        """Return who a connection counts against (None: not limited per owner)."""
        uid = peer.uid
        if peer.transport == "tcp":
            host, port = sock.getpeername()[:2]
            if not _plain(ipaddress.ip_address(host.split("%")[0])).is_loopback:
                return ("address", host)
            uid = tcp_peer_uid((host, port), sock.getsockname()[:2])
            if uid is None:
                return ("address", host)
        return None if uid in self._exempt else ("uid", uid)

    def _admit(self, owner: tuple[str, object] | None) -> bool:
        if owner is None:
            return True
        held = self._owners.get(owner, 0)
        if held >= self._max_per_owner:
            return False
        self._owners[owner] = held + 1
        return True

    def _release(self, owner: tuple[str, object]) -> None:
        left = self._owners.get(owner, 0) - 1
        if left > 0:
            self._owners[owner] = left
        else:
            self._owners.pop(owner, None)

    @staticmethod
    def _identify(transport: str, sock: socket.socket) -> Peer:
        if transport == "unix":
            pid, uid, gid = peer_credentials(sock)
            return Peer("unix", uid=uid, gid=gid, pid=pid)
        host, port = sock.getpeername()[:2]
        return Peer("tcp", address=f"[{host}]:{port}" if ":" in host else f"{host}:{port}")

    # ------------------------------------------------------------- relaying

    def _register(self, name: str, peer: Peer, transports: tuple[asyncio.BaseTransport, ...]) -> None:
        self._peers[name] = peer
        self._transports.update(transports)
        self.connections += 1

    def _unregister(self, name: str, transports: tuple[asyncio.BaseTransport, ...]) -> None:
        if self._peers.pop(name, None) is not None:
            self.connections -= 1
        self._transports.difference_update(transports)
        self.last_activity = time.monotonic()


class _Side(asyncio.Protocol):
    """One end of a relayed connection; ``other`` is the protocol of the far end.

    Bytes received are written to the other transport; when the other transport's
    buffer fills, this side stops reading (and starts again when it drains), so a
    slow reader never makes the relay buffer without bound. An end of file is
    passed on as a half-close; once both directions ended, or on any error, both
    connections are closed.
    """

    def __init__(self, relay: Relay):
        self.relay = relay
        self.transport: asyncio.Transport | None = None
        self.other: _Side | None = None
        self.eof = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.relay.last_activity = time.monotonic()
        if self.other is not None and self.other.transport is not None and not self.other.closed:
            self.other.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        other = self.other
        if other is None or other.transport is None or other.closed:
            return False
        if other.eof:
            other.transport.close()
            return False  # closes ours
        if other.transport.can_write_eof():
            other.transport.write_eof()
        return True  # keep the other direction going

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        other = self.other
        if other is not None and other.transport is not None and not other.closed:
            if exc is None:
                other.transport.close()  # sends what is still buffered first
            else:
                other.transport.abort()
        self.lost()

    def lost(self) -> None:
        """Hook for the client side's bookkeeping."""

    def pause_writing(self) -> None:
        if self.other is not None and self.other.transport is not None and not self.other.closed:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None and not self.other.closed:
            self.other.transport.resume_reading()


class _ClientSide(_Side):
    """A caller's connection: identified on arrival, paused until the upstream connection is up."""

    def __init__(self, relay: Relay, kind: str):
        super().__init__(relay)
        self.kind = kind
        self.name = ""
        self.pair: tuple[asyncio.BaseTransport, ...] = ()
        self.owner: tuple[str, object] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        relay = self.relay
        relay.accepted += 1
        relay.last_activity = time.monotonic()
        if relay.connections >= relay._max:
            transport.abort()
            return
        try:
            sock = transport.get_extra_info("socket")
            peer = relay._identify(self.kind, sock)
            owner = relay._owner(peer, sock)
        except (OSError, ValueError):
            transport.abort()
            return
        if not relay._admit(owner):
            transport.abort()  # this uid (or address) holds its share of the connections already
            return
        self.owner = owner
        transport.pause_reading()  # nothing to send it to yet  # type: ignore[attr-defined]
        asyncio.get_running_loop().create_task(self._connect(peer))

    async def _connect(self, peer: Peer) -> None:
        relay = self.relay
        loop = asyncio.get_running_loop()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.setblocking(False)
        try:
            name = bind_unpredictable(upstream)
            await loop.sock_connect(upstream, relay._upstream)
            up_transport, up_side = await loop.create_connection(lambda: _Side(relay), sock=upstream)
        except OSError:
            upstream.close()
            if self.transport is not None:
                self.transport.abort()
            return
        if self.closed or self.transport is None:
            up_transport.abort()
            return
        up_side.other, self.other = self, up_side
        self.name = name
        self.pair = (self.transport, up_transport)
        relay._register(name, peer, self.pair)
        self.transport.resume_reading()

    def lost(self) -> None:
        if self.owner is not None:
            self.relay._release(self.owner)
            self.owner = None
        if self.name:
            self.relay._unregister(self.name, self.pair)
