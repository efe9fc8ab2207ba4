"""serve: run the gRPC facade (usually started by memsched-grpc.socket)."""

from __future__ import annotations

import sys

import click

from memsched.cli.common import app, common_options, handle_errors
from memsched.errors import UsageError


def _duration(value: str | None, option: str) -> int | None:
    from memsched.config.durations import parse_duration_ms

    if value is None:
        return None
    try:
        return parse_duration_ms(value)
    except ValueError as exc:
        raise UsageError(f"{option} {value}: {exc}") from None


@click.command("serve")
@click.option("--listen", "listen", metavar="ADDR", default=None,
              help="unix:PATH or tcp:HOST:PORT (default: facade.listen, else $XDG_RUNTIME_DIR/memsched/grpc.sock "
                   "or /run/memsched/grpc.sock). Ignored when systemd passes the socket.")
@click.option("--allow-remote", is_flag=True, default=False, help="Allow a TCP address that is not loopback (needs a token file and TLS).")
@click.option("--token-file", metavar="FILE", default=None, help="Bearer token TCP callers must send (required for TCP).")
@click.option("--tls-cert", metavar="FILE", default=None, help="PEM certificate: TCP is then TLS (default: facade.tls_cert_file).")
@click.option("--tls-key", metavar="FILE", default=None, help="Its PEM private key, not readable by others (default: facade.tls_key_file).")
@click.option("--group", metavar="GROUP", default=None, help="Members may pause, resume and run over the unix socket (default: facade.group).")
@click.option("--idle-timeout", metavar="DURATION", default=None,
              help="Exit after this long without calls (0: never). Default: facade.idle_timeout when "
                   "socket-activated, never otherwise.")
@click.option("--drain-timeout", metavar="DURATION", default=None, help="How long calls in flight may finish on stop (default: facade.drain_timeout).")
@common_options
@handle_errors
def serve_cmd(listen: str | None, allow_remote: bool, token_file: str | None, tls_cert: str | None, tls_key: str | None,
              group: str | None, idle_timeout: str | None, drain_timeout: str | None) -> None:
    """Serve the MemoryService gRPC facade: GetSchedulerStatus, PauseJob, ResumeJob (the original
    contract), RunJob, GetJobHistory, and the standard health service.

    Pausing, resuming and running need a caller with this server's uid, root, or --group over the
    unix socket, and the bearer token over TCP. See docs/facade.md.
    """
    from memsched.facade.server import ServeOptions, serve

    ctx = app()
    options = ServeOptions(
        listen=listen,
        allow_remote=allow_remote,
        token_file=token_file,
        tls_cert=tls_cert,
        tls_key=tls_key,
        group=group,
        idle_timeout_ms=_duration(idle_timeout, "--idle-timeout"),
        drain_timeout_ms=_duration(drain_timeout, "--drain-timeout"),
    )
    sys.exit(serve(ctx.config(), ctx.scope, options))
