"""One HTTP POST with a deadline for the whole request, a stop check and a size cap on the answer.

Why not ``urllib``: its timeout bounds each socket operation, not the request (an
answer trickling a byte a second never times out), it reads an answer whole
whatever its size, and a blocked read cannot be interrupted when the run is asked
to stop. Here the socket is non-blocking and every wait (connect, TLS handshake,
send, each read) is a ``select()`` of at most :data:`POLL_S`, after which the
deadline and ``should_stop()`` are checked; ``http.client`` parses the response
(status line and headers are bounded by it: 64 KiB a line, 100 headers) and the
body is read in chunks up to ``max_bytes``.

Proxies are taken from the environment as ``urllib`` takes them (``http_proxy``,
``https_proxy``, ``no_proxy``): an ``http://`` proxy, with optional user:password;
an https URL goes through a CONNECT tunnel. Name resolution uses the system's
blocking resolver and is not bounded by the deadline.
"""

from __future__ import annotations

import base64
import errno
import http.client
import io
import os
import select
import socket
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message

POLL_S = 0.1  # how often a wait looks at the deadline and the stop request
READ_CHUNK = 64 * 1024


class TransportError(Exception):
    """The request did not produce a complete answer; ``retryable`` says whether trying again may help."""

    retryable = True


class Stopped(Exception):
    """``should_stop()`` turned true: the request was abandoned."""


class TimedOut(TransportError):
    """The deadline passed before the answer was complete."""


class Unreachable(TransportError):
    """No connection (refused, no route, name not found, TLS failed, proxy refused)."""


class CutOff(TransportError):
    """The connection ended before the answer was complete (``IncompleteRead`` and the like)."""


class TooLarge(TransportError):
    """The answer is bigger than the cap."""


class BadResponse(TransportError):
    """The server did not answer HTTP (bad status line, a header too long, too many headers)."""


class Refused(TransportError):
    """A problem trying again cannot fix (a certificate that does not verify, an unsupported proxy)."""

    retryable = False


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, headers and body (at most the cap; an error body at most ``error_bytes``)."""

    status: int
    headers: Message
    body: bytes


class _Channel:
    """A non-blocking socket whose every wait honours one deadline and a stop check."""

    def __init__(self, deadline: float, should_stop: Callable[[], bool]):
        self.deadline = deadline
        self.should_stop = should_stop
        self.sock: socket.socket | None = None

    def check(self) -> float:
        """Return the seconds left; raise :class:`Stopped` or :class:`TimedOut`."""
        if self.should_stop():
            raise Stopped()
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimedOut()
        return left

    def wait(self, for_write: bool) -> None:
        assert self.sock is not None
        while True:
            left = self.check()
            watched = [self.sock]
            ready = select.select([], watched, [], min(left, POLL_S)) if for_write else select.select(watched, [], [], min(left, POLL_S))
            if ready[0] or ready[1]:
                return

    def connect(self, host: str, port: int) -> None:
        self.check()
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise Unreachable(f"cannot resolve {host}: {exc.strerror or exc}") from None
        last = "no address"
        for family, kind, proto, _name, address in infos:
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            self.sock = sock
            try:
                code = sock.connect_ex(address)
                if code not in (0, errno.EINPROGRESS):
                    raise OSError(code, os.strerror(code))
                self.wait(for_write=True)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, os.strerror(code))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return
            except OSError as exc:
                sock.close()
                self.sock = None
                last = exc.strerror or str(exc)
            except BaseException:
                sock.close()
                self.sock = None
                raise
        raise Unreachable(last)

    def start_tls(self, hostname: str) -> None:
        assert self.sock is not None
        context = ssl.create_default_context()
        self.sock = context.wrap_socket(self.sock, server_hostname=hostname, do_handshake_on_connect=False)
        while True:
            try:
                self.sock.do_handshake()  # type: ignore[attr-defined]
                return
            except ssl.SSLWantReadError:
                self.wait(for_write=False)
            except ssl.SSLWantWriteError:
                self.wait(for_write=True)
            except ssl.SSLCertVerificationError as exc:
                raise Refused(f"the TLS certificate of {hostname} does not verify: {exc.verify_message or exc.reason}") from None
            except (ssl.SSLError, OSError) as exc:
                raise Unreachable(f"TLS handshake with {hostname} failed: {getattr(exc, 'reason', None) or exc.strerror or exc}") from None

    def sendall(self, data: bytes) -> None:
        assert self.sock is not None
        view = memoryview(data)
        while view:
            self.check()
            try:
                view = view[self.sock.send(view) :]
            except (BlockingIOError, ssl.SSLWantWriteError):
                self.wait(for_write=True)
            except ssl.SSLWantReadError:
                self.wait(for_write=False)
            except OSError as exc:
                raise CutOff(f"the connection broke while sending: {exc.strerror or exc}") from None

    def recv_into(self, buffer: memoryview) -> int:
        assert self.sock is not None
        while True:
            self.check()  # also between chunks that arrive at once: a steady trickle still meets the deadline
            try:
                return self.sock.recv_into(buffer)
            except (BlockingIOError, ssl.SSLWantReadError):
                self.wait(for_write=False)
            except ssl.SSLWantWriteError:
                self.wait(for_write=True)
            except OSError as exc:
                raise CutOff(f"the connection broke while reading: {exc.strerror or exc}") from None

    def makefile(self, *_args: object, **_kwargs: object) -> io.BufferedReader:
        """What :class:`http.client.HTTPResponse` reads the answer through."""
        return io.BufferedReader(_Reader(self), READ_CHUNK)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class _Reader(io.RawIOBase):
    def __init__(self, channel: _Channel):
        self._channel = channel

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        return self._channel.recv_into(memoryview(buffer).cast("B"))


def _proxy_for(scheme: str, host: str) -> urllib.parse.SplitResult | None:
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    parts = urllib.parse.urlsplit(proxy)
    if parts.scheme != "http" or not parts.hostname:
        raise Refused(f"the {scheme}_proxy setting {parts.scheme}://{parts.hostname or ''}: only http:// proxies are supported")
    return parts


def _proxy_auth(proxy: urllib.parse.SplitResult) -> list[str]:
    if proxy.username is None:
        return []
    pair = f"{urllib.parse.unquote(proxy.username)}:{urllib.parse.unquote(proxy.password or '')}"
    return [f"Proxy-Authorization: Basic {base64.b64encode(pair.encode()).decode()}"]


def _head(channel: _Channel, method: str) -> http.client.HTTPResponse:
    response = http.client.HTTPResponse(channel, method=method)  # type: ignore[arg-type]
    try:
        response.begin()
    except http.client.RemoteDisconnected:
        raise CutOff("the server closed the connection without answering") from None
    except (http.client.HTTPException, ValueError) as exc:  # BadStatusLine, LineTooLong, too many headers
        raise BadResponse(f"not an HTTP answer ({type(exc).__name__})") from None
    return response


def _read_body(response: http.client.HTTPResponse, limit: int, cap_is_error: bool) -> bytes:
    declared = response.length
    if cap_is_error and declared is not None and declared > limit:
        raise TooLarge(f"the answer is {declared} bytes, more than the {limit}-byte cap")
    chunks, total = [], 0
    while total <= limit:
        try:
            piece = response.read(min(READ_CHUNK, limit + 1 - total))
        except http.client.IncompleteRead as exc:
            raise CutOff(f"the answer was cut off after {total + len(exc.partial)} bytes") from None
        except http.client.HTTPException as exc:  # a malformed chunked encoding
            raise BadResponse(f"malformed answer body ({type(exc).__name__})") from None
        if not piece:
            if response.length:  # http.client returns b"" at an early end of a Content-Length body
                raise CutOff(f"the answer was cut off after {total} of {declared} bytes")
            return b"".join(chunks)
        chunks.append(piece)
        total += len(piece)
    if cap_is_error:
        raise TooLarge(f"the answer is more than the {limit}-byte cap")
    return b"".join(chunks)[:limit]


def post_json(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout_s: float,
    max_bytes: int,
    error_bytes: int = 4096,
    should_stop: Callable[[], bool] = lambda: False,
) -> Answer:
    """POST ``body`` (JSON) to ``url`` and return the answer, all within ``timeout_s``.

    A 2xx body larger than ``max_bytes`` raises :class:`TooLarge` (at most that much
    is read); any other status returns at most ``error_bytes`` of its body. Raises
    :class:`Stopped` as soon as ``should_stop()`` is true (checked at least every
    :data:`POLL_S`), :class:`TimedOut`, :class:`Unreachable`, :class:`CutOff`,
    :class:`BadResponse`, :class:`TooLarge` or :class:`Refused`. Header values
    must not contain line breaks (the caller checks).
    """
    parts = urllib.parse.urlsplit(url)
    host, secure = parts.hostname or "", parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    host_header = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    proxy = _proxy_for(parts.scheme, host)
    channel = _Channel(time.monotonic() + timeout_s, should_stop)
    extra: list[str] = []
    try:
        if proxy is None:
            channel.connect(host, port)
        else:
            channel.connect(proxy.hostname or "", proxy.port or 80)
            if secure:
                channel.sendall("\r\n".join([f"CONNECT {host_header if parts.port else host_header + ':443'} HTTP/1.1", f"Host: {host_header}", *_proxy_auth(proxy), "", ""]).encode("latin-1"))
                tunnel = _head(channel, "CONNECT")
                if tunnel.status != 200:
                    raise Unreachable(f"the proxy {proxy.hostname} refused the tunnel (HTTP {tunnel.status})")
            else:
                target = f"http://{host_header}{target}"
                extra = _proxy_auth(proxy)
        if secure:
            channel.start_tls(host)
        lines = [
            f"POST {target} HTTP/1.1",
            f"Host: {host_header}",
            "Accept-Encoding: identity",
            "Connection: close",
            f"Content-Length: {len(body)}",
            *extra,
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        channel.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        response = _head(channel, "POST")
        ok = 200 <= response.status < 300
        data = _read_body(response, max_bytes if ok else error_bytes, cap_is_error=ok)
        return Answer(response.status, response.msg, data)
    finally:
        channel.close()
