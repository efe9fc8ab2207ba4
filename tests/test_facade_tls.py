"""TLS for the TCP facade (issue 12.9): someone on the path between client and server (here a
forwarder that records every byte) must not see the bearer token; `allow_remote` without TLS
is refused."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from memsched.facade.client import FacadeClient
from memsched_testing import write_config
from systemd_env import SystemdTestEnv
from test_facade import JOBS, Server
from test_units_install import install

TOKEN = "tls-test-token-0123456789abcdef"


class Eavesdropper:
    """Forwards 127.0.0.1:port to ``target`` and keeps a copy of every byte, both ways."""

    def __init__(self, target: int):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.seen = bytearray()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                with self.lock:
                    self.seen.extend(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A self-signed certificate for 127.0.0.1/localhost (key 0600), another one nobody trusts, and the token file."""
    out: dict[str, Path] = {}
    for name in ("server", "stranger"):
        cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
        key.chmod(0o600)
        out[f"{name}_cert"], out[f"{name}_key"] = cert, key
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    out["token"] = token
    return out


@pytest.fixture
def config(systemd: SystemdTestEnv) -> Iterator[Path]:
    path = write_config(systemd.tmp, JOBS)
    install(systemd, path)
    yield path


def _status_through(systemd: SystemdTestEnv, spy: Eavesdropper, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`memsched --endpoint tcp:...:SPY status --json`, with ``env`` added (MEMSCHED_TLS_CA_FILE "" removes it)."""
    full = {**systemd.env, **env}
    full = {k: v for k, v in full.items() if v != ""}
    return subprocess.run([sys.executable, "-m", "memsched", "--endpoint", f"tcp:127.0.0.1:{spy.port}", "status", "--json"],
                          capture_output=True, text=True, timeout=60, env=full)


def test_the_token_crosses_tcp_encrypted(systemd: SystemdTestEnv, config: Path, pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    # Control: without TLS the observer reads the token (so not seeing it below means something).
    port = _free_port()
    plain = Server(systemd, config, "--listen", f"tcp:127.0.0.1:{port}", "--token-file", str(pki["token"]))
    spy = Eavesdropper(port)
    try:
        plain.wait_ready(f"tcp:127.0.0.1:{port}")
        proc = _status_through(systemd, spy, {"MEMSCHED_TOKEN_FILE": str(pki["token"])})
        assert proc.returncode == 0, proc.stderr
        assert TOKEN.encode() in bytes(spy.seen)
    finally:
        spy.close()
        assert plain.stop() == 0, plain.output()

    port = _free_port()
    server = Server(systemd, config, "--listen", f"tcp:127.0.0.1:{port}", "--token-file", str(pki["token"]),
                    "--tls-cert", str(pki["server_cert"]), "--tls-key", str(pki["server_key"]))
    spy = Eavesdropper(port)
    monkeypatch.setenv("MEMSCHED_TLS_CA_FILE", str(pki["server_cert"]))
    try:
        server.wait_ready(f"tcp:127.0.0.1:{port}")
        good = {"MEMSCHED_TOKEN_FILE": str(pki["token"]), "MEMSCHED_TLS_CA_FILE": str(pki["server_cert"])}
        proc = _status_through(systemd, spy, good)
        assert proc.returncode == 0, proc.stderr
        assert sorted(j["job_name"] for j in json.loads(proc.stdout)["jobs"]) == sorted(JOBS)
        seen = bytes(spy.seen)
        assert seen and TOKEN.encode() not in seen and b"GetSchedulerStatus" not in seen, len(seen)
        assert seen[:1] == b"\x16", seen[:8]  # a TLS handshake record, not the HTTP/2 preface
        with FacadeClient(f"tcp:127.0.0.1:{port}", TOKEN) as client:
            assert client.pause("tick").success and client.resume("tick").success
        # a client that speaks plain TCP, or trusts another certificate, gets nowhere (exit 3: unreachable)
        for env in ({"MEMSCHED_TOKEN_FILE": str(pki["token"]), "MEMSCHED_TLS_CA_FILE": ""},
                    {"MEMSCHED_TOKEN_FILE": str(pki["token"]), "MEMSCHED_TLS_CA_FILE": str(pki["stranger_cert"])}):
            refused = _status_through(systemd, spy, env)
            assert refused.returncode == 3 and "Traceback" not in refused.stderr, (env, refused.returncode, refused.stderr)
    finally:
        spy.close()
        assert server.stop() == 0, server.output()


def test_allow_remote_needs_tls(systemd: SystemdTestEnv, config: Path, pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()
    base = ["serve", "--config", str(config), "--listen", f"tcp:0.0.0.0:{port}", "--allow-remote", "--token-file", str(pki["token"])]
    refused = systemd.memsched(*base, timeout=20)
    assert refused.returncode == 2 and "--allow-remote needs --tls-cert and --tls-key" in refused.stderr, refused.stderr
    half = systemd.memsched(*base, "--tls-cert", str(pki["server_cert"]), timeout=20)
    assert half.returncode == 2 and "--tls-key" in half.stderr, half.stderr
    pki["server_key"].chmod(0o644)
    readable = systemd.memsched(*base, "--tls-cert", str(pki["server_cert"]), "--tls-key", str(pki["server_key"]), timeout=20)
    assert readable.returncode == 2 and "readable by everyone" in readable.stderr, readable.stderr
    pki["server_key"].chmod(0o600)
    # the same rule in the config file, named by key
    remote = write_config(systemd.tmp, JOBS, name="remote.toml", extra={"facade": {
        "listen": f"tcp:0.0.0.0:{port}", "allow_remote": True, "token_file": str(pki["token"])}})
    validate = systemd.memsched("validate", "--config", str(remote))
    assert validate.returncode == 2 and "facade.allow_remote" in validate.stdout + validate.stderr, (validate.stdout, validate.stderr)
    # with TLS it serves the network
    server = Server(systemd, config, *base[3:], "--tls-cert", str(pki["server_cert"]), "--tls-key", str(pki["server_key"]))
    monkeypatch.setenv("MEMSCHED_TLS_CA_FILE", str(pki["server_cert"]))
    try:
        server.wait_ready(f"tcp:127.0.0.1:{port}")
        with FacadeClient(f"tcp:127.0.0.1:{port}", TOKEN) as client:
            assert len(client.status().jobs) == len(JOBS)
    finally:
        assert server.stop() == 0, server.output()
