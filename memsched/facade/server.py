"""`memsched serve`: assemble the facade and run it until SIGTERM or the idle timeout.

Layout of a running server::

    clients --> public socket(s) --> Relay (SO_PEERCRED) --> private unix socket --> grpc.Server
                (inherited from         memsched.facade.relay     (0700 directory)       MemoryService + Health
                 systemd, or bound)

Lifecycle: READY=1 once the gRPC server and the relay accept calls; WATCHDOG=1 every
half $WATCHDOG_USEC while the main loop is alive; STATUS= with the address and the
call count. It exits 0 after ``idle_timeout`` without calls or traffic (only when
asked for, or when socket-activated: then the socket starts it again), and on
SIGTERM/SIGINT: it stops accepting, lets calls in flight finish for up to
``drain_timeout``, and exits 0.
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import sys
import tempfile
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from memsched.config.load import Config
from memsched.errors import UsageError
from memsched.facade import activation
from memsched.facade.auth import AuthPolicy, load_token
from memsched.facade.tls import server_context
from memsched.facade.listen import ListenAddress, bind, default_address, describe_socket, is_loopback_host, parse_address, resolve_group, socket_is_loopback

if TYPE_CHECKING:
    from memsched.facade.relay import Relay
    from memsched.facade.service import Tracker

WORKERS = 32
MAX_MESSAGE = 4 * 1024 * 1024


@dataclass
class ServeOptions:
    """What `memsched serve` was asked for; None means "take the config's [facade] value"."""

    listen: str | None = None
    allow_remote: bool | None = None
    token_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    idle_timeout_ms: int | None = None
    drain_timeout_ms: int | None = None
    group: str | None = None
    workers: int = WORKERS


@dataclass
class ServeSettings:
    """The checked settings a server runs with."""

    address: ListenAddress
    allow_remote: bool
    token: str | None
    tls: ssl.SSLContext | None  # TCP listeners speak TLS when set
    group_gid: int | None
    idle_timeout_ms: int | None  # None: from the config, applied only when socket-activated
    config_idle_timeout_ms: int
    drain_timeout_ms: int
    workers: int


def _facade_settings(config: Config) -> dict[str, object]:
    return dict((config.settings or {}).get("facade", {}))


def resolve_settings(config: Config, scope: str, options: ServeOptions, env: dict[str, str] | None = None) -> ServeSettings:
    """Merge the options with the config's [facade] table and check them.

    Returns :class:`ServeSettings`. Raises :class:`UsageError` naming the option:
    a malformed address, TCP without a token file, a non-loopback address without
    ``--allow-remote``, an unknown group, an unreadable token file.
    """
    facade = _facade_settings(config)
    listen_text = options.listen if options.listen is not None else str(facade.get("listen") or "")
    what = "--listen" if options.listen is not None else "facade.listen"
    address = parse_address(listen_text, what) if listen_text else default_address(scope, env)
    allow_remote = options.allow_remote if options.allow_remote else bool(facade.get("allow_remote", False))
    token_file = options.token_file if options.token_file is not None else str(facade.get("token_file") or "")
    token_what = "--token-file" if options.token_file is not None else "facade.token_file"
    group = options.group if options.group is not None else str(facade.get("group") or "")
    cert = options.tls_cert if options.tls_cert is not None else str(facade.get("tls_cert_file") or "")
    key = options.tls_key if options.tls_key is not None else str(facade.get("tls_key_file") or "")
    cert_what = "--tls-cert" if options.tls_cert is not None else "facade.tls_cert_file"
    key_what = "--tls-key" if options.tls_key is not None else "facade.tls_key_file"
    if bool(cert) != bool(key):
        raise UsageError(f"{key_what if cert else cert_what}: TLS needs both a certificate and its key (--tls-cert and --tls-key)")
    if allow_remote and not token_file:
        raise UsageError("--allow-remote needs --token-file (remote callers must present its bearer token)")
    if allow_remote and not cert:
        raise UsageError("--allow-remote needs --tls-cert and --tls-key: the bearer token must not cross the network in clear")
    if address.kind == "tcp":
        check_tcp(str(address), is_loopback_host(address.host), allow_remote, bool(token_file), what)
    token = load_token(token_file, token_what) if token_file else None
    return ServeSettings(
        address=address,
        allow_remote=allow_remote,
        token=token,
        tls=server_context(cert, key, cert_what, key_what) if cert else None,
        group_gid=resolve_group(group, "--group" if options.group is not None else "facade.group") if group else None,
        idle_timeout_ms=options.idle_timeout_ms,
        config_idle_timeout_ms=int(facade.get("idle_timeout", 60_000) or 0),  # type: ignore[call-overload]
        drain_timeout_ms=options.drain_timeout_ms if options.drain_timeout_ms is not None else int(facade.get("drain_timeout", 10_000)),  # type: ignore[call-overload]
        workers=options.workers,
    )


def check_tcp(address: str, loopback: bool, allow_remote: bool, have_token: bool, what: str = "--listen") -> None:
    """Refuse TCP without a token file, and a non-loopback address without ``allow_remote``. Raises UsageError."""
    if not loopback and not allow_remote:
        raise UsageError(
            f"{what} {address}: not a loopback address; refusing to serve the network without --allow-remote "
            "(and --token-file, --tls-cert, --tls-key)"
        )
    if not have_token:
        raise UsageError(f"{what} {address}: TCP needs --token-file (callers send its token as 'authorization: Bearer TOKEN')")


def _raise_file_limit() -> None:
    """Raise the soft open-files limit to the hard one (systemd's default soft limit is 1024):
    every relayed connection takes two descriptors, and asyncio needs no select() below 1024."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            pass


def _private_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="memsched-grpc-"))  # mode 0700: only our uid (and root) can reach it


def serve(config: Config, scope: str, options: ServeOptions, env: dict[str, str] | None = None) -> int:
    """Run the facade until SIGTERM/SIGINT or the idle timeout; return the exit status (0).

    Raises :class:`UsageError` for bad settings or an address that cannot be served.
    """
    import grpc

    try:
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    except ImportError:  # a distribution without grpcio-health-checking (Debian 12 has none)
        health = None

    from memsched.facade.relay import Relay
    from memsched.facade.service import SERVICE_NAME, FacadeService, Tracker

    env = os.environ if env is None else env
    settings = resolve_settings(config, scope, options, env)
    _raise_file_limit()
    inherited = activation.listen_fds(env=env)
    for sock in inherited:
        where = describe_socket(sock)
        if where.kind == "tcp":
            check_tcp(str(where), socket_is_loopback(sock), settings.allow_remote, settings.token is not None, "the socket from systemd")
    if inherited:
        listeners = inherited
        idle_ms = settings.idle_timeout_ms if settings.idle_timeout_ms is not None else settings.config_idle_timeout_ms
        how = "socket-activated"
    else:
        listeners = [bind(settings.address, settings.group_gid)]
        idle_ms = settings.idle_timeout_ms or 0
        how = "own socket"
    addresses = ", ".join(str(describe_socket(s)) for s in listeners)
    own_path = settings.address.path if not inherited and settings.address.kind == "unix" else None

    private = _private_dir()
    upstream = str(private / "grpc.sock")
    relay = None
    server = None
    try:
        tracker = Tracker()
        notifier = activation.Notifier(env)
        relay = Relay(listeners, upstream, tls=settings.tls)
        policy = AuthPolicy(server_uid=os.geteuid(), group_gid=settings.group_gid, token=settings.token)
        service = FacadeService(config, scope, policy, relay.peer_of, tracker)
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="memsched-grpc"),
            options=[("grpc.max_receive_message_length", MAX_MESSAGE)],
        )
        server.add_generic_rpc_handlers((service.generic_handler(),))
        health_servicer = None
        if health is not None:
            health_servicer = health.HealthServicer(experimental_non_blocking=True)
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        else:
            print("memsched serve: grpcio-health-checking is not installed: no grpc.health.v1 service", file=sys.stderr, flush=True)
        server.add_insecure_port(f"unix:{upstream}")

        watchdog = activation.watchdog_interval(env)
        stop = threading.Event()
        reason: list[str] = []

        def on_signal(signum: int, _frame: object) -> None:
            reason.append(signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        server.start()
        relay.start()
        if health_servicer is not None:
            for name in ("", SERVICE_NAME):
                health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        idle_text = f"idle exit after {idle_ms / 1000:g}s" if idle_ms else "no idle exit"
        print(f"memsched serve: {SERVICE_NAME} on {addresses} ({how}, {scope} scope, {idle_text})", file=sys.stderr, flush=True)
        notifier.ready(f"serving {addresses}")
        _main_loop(stop, reason, tracker, relay, notifier, idle_ms, addresses, watchdog)
        why = reason[0] if reason else "idle"
        print(f"memsched serve: stopping ({why}) after {tracker.calls} MemoryService calls", file=sys.stderr, flush=True)
        notifier.stopping(f"stopping ({why}); draining calls in flight")
        if health_servicer is not None:
            health_servicer.enter_graceful_shutdown()
        relay.stop_accepting()
        drained = server.stop(grace=settings.drain_timeout_ms / 1000)
        while not drained.wait(min(0.25, watchdog) if watchdog else None):
            notifier.watchdog()  # draining is not hanging
    finally:
        if relay is not None:
            relay.close()
        if server is not None:
            server.stop(None)
        shutil.rmtree(private, ignore_errors=True)
        if own_path:
            try:
                os.unlink(own_path)
            except OSError:
                pass
    return 0


def _main_loop(
    stop: threading.Event,
    reason: list[str],
    tracker: Tracker,
    relay: Relay,
    notifier: activation.Notifier,
    idle_ms: int,
    addresses: str,
    watchdog: float | None,
) -> None:
    """Ping the watchdog, update STATUS=, and return on a signal or once idle for ``idle_ms``."""
    tick = min(0.25, watchdog) if watchdog else 0.25
    next_ping = 0.0
    shown = (-1, -1)
    while not stop.wait(tick):
        now = time.monotonic()
        if watchdog and now >= next_ping:
            notifier.watchdog()
            next_ping = now + watchdog
        calls, connections = tracker.calls, relay.connections
        if (calls, connections) != shown:
            notifier.status(f"serving {addresses}; {calls} calls, {connections} connections open")
            shown = (calls, connections)
        if idle_ms and tracker.in_flight == 0:
            last = max(tracker.last_end, relay.last_activity)
            if now - last >= idle_ms / 1000:
                return
