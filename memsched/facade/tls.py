"""TLS for the facade's TCP listener (issue 12.9): the bearer token must not cross a network in clear.

The relay terminates TLS (it accepts every connection itself, see relay.py), so the gRPC
server behind it is unchanged. The server context: TLS 1.2 or later, ALPN ``h2`` (gRPC
clients insist on it), the certificate chain and key from PEM files, the key file not
readable by others. Clients trust the server with the CA (or the self-signed certificate)
in ``$MEMSCHED_TLS_CA_FILE``.
"""

from __future__ import annotations

import os
import ssl
import stat

from memsched.errors import UsageError

CA_FILE_ENV = "MEMSCHED_TLS_CA_FILE"


def server_context(cert_file: str, key_file: str, cert_what: str = "--tls-cert", key_what: str = "--tls-key") -> ssl.SSLContext:
    """Return the server's SSLContext for ``cert_file`` and ``key_file``.

    Raises :class:`UsageError` naming the option when a file is missing or unreadable, the key
    is readable by others, or the pair does not load (not PEM, key and certificate do not match).
    """
    for path, what in ((cert_file, cert_what), (key_file, key_what)):
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            raise UsageError(f"{what} {path}: cannot read: {exc.strerror}") from None
        if path == key_file and mode & stat.S_IROTH:
            raise UsageError(f"{what} {path}: readable by everyone; chmod o-r it (a private key must stay secret)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    try:
        context.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        raise UsageError(f"{cert_what} {cert_file} / {key_what} {key_file}: cannot load the certificate and key: {exc}") from None
    return context


def client_ca(env: dict[str, str] | None = None) -> bytes | None:
    """Return the PEM certificates ``$MEMSCHED_TLS_CA_FILE`` holds (None when unset: plain TCP). Raises UsageError."""
    env = os.environ if env is None else env
    path = env.get(CA_FILE_ENV, "")
    if not path:
        return None
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise UsageError(f"{CA_FILE_ENV}={path}: cannot read: {exc.strerror}") from None
