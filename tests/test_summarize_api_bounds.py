"""The API summarizer's bounds, against real servers on loopback speaking raw HTTP (both wire formats).

Each connection to :class:`RawServer` gets the next scripted behaviour: a good answer,
an answer trickling a byte at a time, a 50 MB answer, a body cut off mid-way, a hang,
a close without answer, an error body echoing the key. Checked: a deadline per
request (not per read), the size cap (memory measured with tracemalloc, bytes sent
counted by the server), retries of cut-off answers like connection errors, a hang
reported as a timeout, stop requests during a request and during a backoff (and
SIGTERM of a real `memsched exec` ending "interrupted"), TLS, proxies, and error
bodies that never carry the key into messages, the run registry or stderr.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memsched.store.models import Bullet, Event
from memsched.summarize import SummarizerError, SummarizerStopped, Summary
from memsched.summarize.api import ApiSummarizer, sanitise
from memsched_testing import write_config

GOOD = {"title": "Timer work", "bullets": ["Fixed the timer", "Measured the WAL", "Wrote the docs"], "keywords": ["timer", "wal", "docs"]}
KEY = "sk-test-0123456789abcdefSECRET"
EVENTS = [Event("01HM6X8Z3ZC0000000000000AA", "s", 1_705_329_000_000, "user_message", "user", "Please fix the timer")]
CHILDREN = [Summary("Timer fix", (Bullet("Fixed it"), Bullet("b"), Bullet("c")), ("timer", "fix", "wal"), label="Monday, January 15, 2024")]
KINDS = ("openai", "anthropic")
MEMSCHED = [sys.executable, "-m", "memsched"]


def envelope(kind: str, content: object = GOOD) -> bytes:
    text = content if isinstance(content, str) else json.dumps(content)
    if kind == "openai":
        return json.dumps({"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}).encode()
    return json.dumps({"id": "m", "type": "message", "content": [{"type": "text", "text": text}], "stop_reason": "end_turn"}).encode()


def head(status: int = 200, length: int | None = None, extra: str = "") -> bytes:
    lines = [f"HTTP/1.1 {status} X", "Content-Type: application/json", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


Behaviour = Callable[[socket.socket, "RawServer"], None]


class RawServer:
    """A loopback HTTP/1.1 server: each connection gets the next behaviour (the last one repeats)."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.tls = tls
        self.behaviours: list[Behaviour] = []
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.connections = 0
        self.sent = 0
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def then(self, *behaviours: Behaviour) -> RawServer:
        self.behaviours.extend(behaviours)
        return self

    def _serve(self) -> None:
        while not self.closing.is_set():
            ready, _, _ = select.select([self.listener], [], [], 0.05)
            if not ready:
                continue
            conn, _ = self.listener.accept()
            index = min(self.connections, len(self.behaviours) - 1)
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn, self.behaviours[index]), daemon=True).start()

    def _handle(self, conn: socket.socket, behaviour: Behaviour) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data:
                piece = conn.recv(65536)
                if not piece:
                    return
                data += piece
            header, _, body = data.partition(b"\r\n\r\n")
            lines = header.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            while len(body) < int(headers.get("content-length", 0)):
                body += conn.recv(65536)
            self.requests.append((lines[0].split(" ")[1], headers, body))
            behaviour(conn, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self.closing.set()
        self.thread.join(5)
        self.listener.close()


# ------------------------------------------------------------------ behaviours


def answer(body: bytes, status: int = 200, extra: str = "") -> Behaviour:
    return lambda conn, srv: srv.send(conn, head(status, len(body), extra) + body)


def trickle(body: bytes, interval: float, headers_too: bool = False) -> Behaviour:
    def run(conn: socket.socket, srv: RawServer) -> None:
        data = head(200, len(body)) + body
        if not headers_too:
            split = data.index(b"\r\n\r\n") + 4
            srv.send(conn, data[:split])
            data = data[split:]
        for i in range(len(data)):
            if srv.closing.wait(interval):
                return
            srv.send(conn, data[i : i + 1])

    return run


def huge(total: int, chunked: bool) -> Behaviour:
    def run(conn: socket.socket, srv: RawServer) -> None:
        srv.send(conn, head(200, None if chunked else total, "Transfer-Encoding: chunked\r\n" if chunked else ""))
        block = b"x" * 65536
        sent = 0
        while sent < total and not srv.closing.is_set():
            srv.send(conn, b"10000\r\n" + block + b"\r\n" if chunked else block)
            sent += len(block)

    return run


def cut_off(body: bytes, after: int, chunked: bool = False) -> Behaviour:
    def run(conn: socket.socket, srv: RawServer) -> None:
        if chunked:
            srv.send(conn, head(200, None, "Transfer-Encoding: chunked\r\n") + f"{len(body):x}\r\n".encode() + body[:after])
        else:
            srv.send(conn, head(200, len(body)) + body[:after])
        conn.shutdown(socket.SHUT_RDWR)

    return run


def hang(conn: socket.socket, srv: RawServer) -> None:
    srv.closing.wait(120)


def close_at_once(conn: socket.socket, srv: RawServer) -> None:
    conn.shutdown(socket.SHUT_RDWR)


# -------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[RawServer]:
    made = RawServer()
    try:
        yield made
    finally:
        made.close()


def summarizer(kind: str, base: str, **kwargs: object) -> ApiSummarizer:
    return ApiSummarizer(kind, api_key=KEY, base_url=base if kind == "anthropic" else base + "/v1", backoff_s=0.01, **kwargs)  # type: ignore[arg-type]


def summarize(made: ApiSummarizer) -> Summary:
    return made.summarize_children(CHILDREN)


# ------------------------------------------------------------------------ tests


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_50_mb_answer_is_refused_without_being_read_whole(server: RawServer, kind: str, chunked: bool) -> None:
    server.then(huge(50 << 20, chunked))
    made = summarizer(kind, server.base, retries=1)
    tracemalloc.start()
    try:
        with pytest.raises(SummarizerError, match=r"gave up after 2 attempts: incomplete or unusable answer .*1048576-byte cap"):
            summarize(made)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak} bytes allocated while refusing the answer"
    time.sleep(0.2)
    assert server.sent < 40 << 20, f"the server got to send {server.sent} of 2 x 50 MB: the client kept reading"
    assert server.connections == 2


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "status-and-headers"])
def test_a_trickling_answer_stops_at_the_deadline_and_says_timed_out(server: RawServer, kind: str, headers_too: bool) -> None:
    server.then(trickle(envelope(kind), 0.05, headers_too))  # all of it would take 10 s or more
    made = summarizer(kind, server.base, timeout_s=0.6, retries=1)
    started = time.monotonic()
    with pytest.raises(SummarizerError, match=r"gave up after 2 attempts: no complete answer from http://127\.0\.0\.1:\d+/\S+ within 0\.6s \(timed out\)") as caught:
        summarize(made)
    assert "cannot reach" not in str(caught.value)
    assert time.monotonic() - started < 8, "two attempts of 0.6 s each took far longer: the deadline is not per request"
    assert server.connections == 2


@pytest.mark.parametrize("kind", KINDS)
def test_a_hang_is_reported_as_a_timeout(server: RawServer, kind: str) -> None:
    server.then(hang)
    with pytest.raises(SummarizerError, match=r"gave up after 1 attempt: no complete answer .* within 0\.3s \(timed out\)") as caught:
        summarize(summarizer(kind, server.base, timeout_s=0.3, retries=0))
    assert "cannot reach" not in str(caught.value)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_answer_cut_off_mid_way_is_retried(server: RawServer, kind: str, chunked: bool) -> None:
    body = envelope(kind)
    server.then(cut_off(body, len(body) // 2, chunked), answer(body))
    made = summarizer(kind, server.base, retries=2)
    assert summarize(made).title == "Timer work"
    assert server.connections == 2 and made.waits == [0.01]


@pytest.mark.parametrize("kind", KINDS)
def test_an_answer_cut_off_every_time_is_reported_as_cut_off(server: RawServer, kind: str) -> None:
    body = envelope(kind)
    server.then(cut_off(body, 10))
    with pytest.raises(SummarizerError, match=r"gave up after 2 attempts: incomplete or unusable answer .*: the answer was cut off after 10 of \d+ bytes"):
        summarize(summarizer(kind, server.base, retries=1))


@pytest.mark.parametrize("kind", KINDS)
def test_a_connection_closed_without_an_answer_is_retried(server: RawServer, kind: str) -> None:
    server.then(close_at_once, answer(envelope(kind)))
    made = summarizer(kind, server.base)
    assert summarize(made).keywords == ("timer", "wal", "docs")
    assert server.connections == 2


@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_connection_is_cannot_reach_and_retried(kind: str) -> None:
    spare = socket.create_server(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()  # nothing listens there now
    made = summarizer(kind, f"http://127.0.0.1:{port}", retries=2)
    with pytest.raises(SummarizerError, match=rf"gave up after 3 attempts: cannot reach http://127\.0\.0\.1:{port}/\S+: Connection refused"):
        summarize(made)
    assert made.waits == [0.01, 0.02]


def stop_after(seconds: float) -> tuple[Callable[[], bool], threading.Timer]:
    flag = threading.Event()
    timer = threading.Timer(seconds, flag.set)
    timer.start()
    return flag.is_set, timer


@pytest.mark.parametrize("kind", KINDS)
def test_a_stop_request_ends_a_hanging_request_at_once(server: RawServer, kind: str) -> None:
    server.then(hang)
    should_stop, timer = stop_after(0.3)
    made = summarizer(kind, server.base, timeout_s=60, retries=3, should_stop=should_stop)
    started = time.monotonic()
    with pytest.raises(SummarizerStopped, match="stopped while waiting for http://127.0.0.1"):
        summarize(made)
    timer.cancel()
    assert time.monotonic() - started < 5 and server.connections == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_stop_request_ends_a_backoff_and_a_trickle(server: RawServer, kind: str) -> None:
    server.then(answer(b'{"error": "busy"}', 503, "Retry-After: 30\r\n"))
    should_stop, timer = stop_after(0.3)
    made = summarizer(kind, server.base, retries=3, should_stop=should_stop)
    started = time.monotonic()
    with pytest.raises(SummarizerStopped, match="stopped while waiting to retry"):
        summarize(made)
    timer.cancel()
    assert made.waits == [30.0] and time.monotonic() - started < 5
    server.behaviours[:] = [trickle(envelope(kind), 0.05)]
    server.connections = 0
    should_stop, timer = stop_after(0.3)
    with pytest.raises(SummarizerStopped):
        summarize(summarizer(kind, server.base, timeout_s=60, should_stop=should_stop))
    timer.cancel()


@pytest.mark.parametrize("kind", KINDS)
def test_client_errors_fail_at_once_and_never_carry_the_key(server: RawServer, kind: str) -> None:
    echo = {"error": {"message": f"Incorrect API key provided: {KEY}. You sent 'Authorization: Bearer {KEY}' \x1b[31m\n" + "padding " * 200}}
    server.then(answer(json.dumps(echo).encode(), 401))
    with pytest.raises(SummarizerError) as caught:
        summarize(summarizer(kind, server.base))
    message = str(caught.value)
    assert server.connections == 1 and message.startswith(f"{kind}:") and "HTTP 401 from http://127.0.0.1" in message
    assert KEY not in message and "0123456789abcdef" not in message and "[redacted]" in message
    assert "\x1b" not in message and "\n" not in message
    detail = message.split(": ", 2)[2]
    assert len(detail) <= 200, detail


def test_retried_errors_never_carry_the_key_either(server: RawServer) -> None:
    server.then(answer(f"upstream said: x-api-key={KEY}; token {KEY[:12]}".encode(), 502))
    with pytest.raises(SummarizerError) as caught:
        summarize(summarizer("anthropic", server.base, retries=1))
    assert KEY not in str(caught.value) and KEY[:12] not in str(caught.value) and "HTTP 502" in str(caught.value)


def test_sanitise_drops_the_key_credentials_controls_and_length() -> None:
    key = "abcd-efgh-ijkl-mnop"
    assert sanitise(f"bad key {key} here", key, 200) == "bad key [redacted] here"
    assert sanitise(f"cut off at {key[:9]}", key, 200) == "cut off at [redacted]"  # the read cap cut the key
    assert sanitise("Authorization: Bearer tok.en-123 ok", "", 200) == "Authorization: Bearer [redacted] ok"
    assert sanitise('{"x-api-key": "abc123", "api_key=zzz"}', "", 200) == '{"x-api-key": "[redacted]", "api_key=[redacted]"}'
    assert "sk-live" not in sanitise("uses sk-liveABCDEF123 now", "", 200)
    assert sanitise("a\x00b\x1b[0m\r\nc\u202ed", "", 200) == "a b [0m c d"
    assert sanitise("y" * 500, "", 50) == "y" * 47 + "..."


def test_a_key_that_cannot_be_a_header_is_refused_before_any_request() -> None:
    with pytest.raises(SummarizerError, match="API key has a character an HTTP header cannot carry"):
        ApiSummarizer("openai", api_key="sk-abc\r\nX-Injected: 1")


def test_the_url_shown_in_errors_drops_credentials_and_query(server: RawServer) -> None:
    server.then(answer(b"{}", 404))
    made = ApiSummarizer("openai", api_key=KEY, base_url=f"http://user:pw@127.0.0.1:{server.port}/v1?token=abc", retries=0)
    with pytest.raises(SummarizerError) as caught:
        summarize(made)
    assert f"HTTP 404 from http://127.0.0.1:{server.port}/v1" in str(caught.value)
    assert "pw" not in str(caught.value) and "token=abc" not in str(caught.value)


# ---------------------------------------------------------------- TLS, proxies


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[RawServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    made = RawServer(tls=context)
    try:
        yield made
    finally:
        made.close()


@pytest.mark.parametrize("kind", KINDS)
def test_https_with_a_trusted_certificate(tls_server: RawServer, certificate, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    tls_server.then(answer(envelope(kind)))
    assert summarize(summarizer(kind, tls_server.base)).title == "Timer work"
    assert tls_server.requests[0][1]["authorization" if kind == "openai" else "x-api-key"].endswith(KEY)


def test_https_with_an_untrusted_certificate_fails_at_once(tls_server: RawServer) -> None:
    tls_server.then(answer(envelope("openai")))
    with pytest.raises(SummarizerError, match="TLS certificate of 127.0.0.1 does not verify") as caught:
        summarize(summarizer("openai", tls_server.base, retries=3))
    assert "gave up" not in str(caught.value) and tls_server.requests == []


def test_an_http_proxy_from_the_environment_is_used_and_no_proxy_bypasses_it(server: RawServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.then(answer(envelope("openai")))
    monkeypatch.setenv("http_proxy", f"http://alice:s3cret@127.0.0.1:{server.port}")
    assert summarize(summarizer("openai", "http://api.example.invalid")).title == "Timer work"
    target, headers, _ = server.requests[0]
    assert target == "http://api.example.invalid/v1/chat/completions" and headers["host"] == "api.example.invalid"
    assert headers["proxy-authorization"] == "Basic YWxpY2U6czNjcmV0"
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    summarize(summarizer("openai", server.base))
    assert server.requests[1][0] == "/v1/chat/completions"


def test_https_goes_through_a_connect_tunnel(tls_server: RawServer, certificate, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    tls_server.then(answer(envelope("anthropic")))
    proxy = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def tunnel() -> None:  # a minimal CONNECT proxy: one connection, piped both ways
        client, _ = proxy.accept()
        request = b""
        while b"\r\n\r\n" not in request:
            request += client.recv(4096)
        seen.append(request)
        upstream = socket.create_connection(("127.0.0.1", tls_server.port))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        ends = [client, upstream]
        while True:
            ready, _, _ = select.select(ends, [], [], 5)
            if not ready:
                break
            for end in ready:
                data = end.recv(65536)
                if not data:
                    client.close()
                    upstream.close()
                    return
                (upstream if end is client else client).sendall(data)

    thread = threading.Thread(target=tunnel, daemon=True)
    thread.start()
    monkeypatch.setenv("https_proxy", f"127.0.0.1:{proxy.getsockname()[1]}")
    try:
        assert summarize(summarizer("anthropic", tls_server.base)).title == "Timer work"
    finally:
        thread.join(5)
        proxy.close()
    assert seen[0].startswith(f"CONNECT 127.0.0.1:{tls_server.port} HTTP/1.1\r\n".encode())


# ------------------------------------------------------------- a real run


def rollup_config(tmp_path: Path, base: str, kind: str) -> Path:
    from memsched.ops.memory import ingest
    from memsched.store import open_store
    from memsched.store.sample import generate_events, to_jsonl

    with open_store(tmp_path / "memory.db") as store:
        ingest(store, iter(to_jsonl(generate_events(1_705_276_800_000, 2, seed=1))))
    config = write_config(
        tmp_path,
        {"roll": {"kind": "rollup", "level": "day", "cron": "0 0 1 1 *", "min_age": "1s"}},
        extra={"store": {"path": str(tmp_path / "memory.db")}, "summarizer": {"kind": kind, "api_key": KEY, "base_url": base if kind == "anthropic" else base + "/v1", "timeout": "60s", "retries": 3}},
    )
    config.chmod(0o600)  # a key in a config file others may read is refused (issue 12.5)
    return config


def exec_env() -> dict[str, str]:
    env = dict(os.environ, MEMSCHED_SCOPE="user", XDG_RUNTIME_DIR="/nonexistent-runtime")
    for name in ("INVOCATION_ID", "JOURNAL_STREAM", "MEMSCHED_CONFIG"):
        env.pop(name, None)
    return env


def last_run(registry: Path) -> dict:
    db = sqlite3.connect(registry)
    db.row_factory = sqlite3.Row
    try:
        return dict(db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone())
    finally:
        db.close()


@pytest.mark.parametrize("kind", KINDS)
def test_sigterm_during_a_hanging_request_ends_the_run_interrupted(server: RawServer, tmp_path: Path, kind: str) -> None:
    server.then(hang)
    config = rollup_config(tmp_path, server.base, kind)
    proc = subprocess.Popen([*MEMSCHED, "--config", str(config), "exec", "roll"], env=exec_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not server.requests and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert server.requests, "the run never asked the API"
    stopped = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 75, err
    assert time.monotonic() - stopped < 10
    run = last_run(tmp_path / "registry.db")
    assert run["result"] == "interrupted" and "Traceback" not in err
    with sqlite3.connect(tmp_path / "memory.db") as db:
        assert db.execute("SELECT count(*) FROM toc_nodes WHERE level = 'day' AND summarized = 1").fetchone()[0] == 0  # nothing half-written


def test_a_failed_run_records_no_key(server: RawServer, tmp_path: Path) -> None:
    server.then(answer(json.dumps({"error": {"message": f"invalid key {KEY}"}}).encode(), 401))
    config = rollup_config(tmp_path, server.base, "openai")
    proc = subprocess.run([*MEMSCHED, "--config", str(config), "exec", "roll"], env=exec_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    run = last_run(tmp_path / "registry.db")
    assert run["result"] == "failed" and "HTTP 401" in run["reason"] and "[redacted]" in run["reason"]
    for text in (run["reason"], run["metadata"] or "", proc.stdout, proc.stderr):
        assert KEY not in text
