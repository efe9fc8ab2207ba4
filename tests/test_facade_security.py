"""Attacks on the gRPC facade by another local user (issue 12.3), run as a throwaway uid.

The facade's relay connects to the private gRPC socket from sockets bound to abstract
names, which every local user can read in /proc/net/unix. An attacker who cannot even
connect to the facade's 0660 socket must not be able to take the names the relay will
use next and so make every call fail.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from foreign import ForeignUser
from memsched.facade import relay as relay_module
from memsched.facade.client import FacadeClient
from memsched_testing import command_job, write_config
from systemd_env import SystemdTestEnv, wait_for
from test_facade import YEARLY, Server, short_dir
from test_units_install import install

# Job names of their own: a timer of the same name installed seconds before by another test
# would make the runner take the next manual run there for a timer run (its LastTriggerUSec).
JOBS = {"squatted": command_job(["/bin/true"], cron=YEARLY)}

# Reads the abstract names in /proc/net/unix; for every facade-looking name NAME-N binds
# NAME-(N+1) .. NAME-(N+400), the names a counter would hand out next; then prints what
# it saw and holds the names until its stdin closes.
SQUATTER = textwrap.dedent(
    """
    import json, os, re, socket, sys
    seen, held = [], []
    for line in open("/proc/net/unix").read().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[7].startswith("@memsched-facade"):
            seen.append(fields[7][1:])
    for name in set(seen):
        match = re.fullmatch(r"(.*)-([0-9]+)", name)
        if not match:
            continue
        for n in range(int(match.group(2)) + 1, int(match.group(2)) + 401):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.bind("\\0" + match.group(1) + "-" + str(n))
                held.append(s)
            except OSError:
                s.close()
    print(json.dumps({"uid": os.getuid(), "seen": sorted(set(seen)), "held": len(held)}), flush=True)
    sys.stdin.read()
    """
)


@pytest.fixture
def squatted(systemd: SystemdTestEnv, foreign_user: ForeignUser) -> Iterator[tuple[Path, dict]]:
    """`memsched serve` (as root) with one open connection, and the foreign user squatting on names.

    Yields (socket path, what the squatter reported).
    """
    config = write_config(systemd.tmp, JOBS)
    install(systemd, config)
    path = short_dir() / "grpc.sock"
    server = Server(systemd, config, "--listen", f"unix:{path}", socket_path=path)
    holder = FacadeClient(f"unix:{path}")
    squatter = None
    try:
        server.wait_ready(f"unix:{path}")
        assert holder.status().jobs  # an open connection: its relay name is in /proc/net/unix
        squatter = foreign_user.popen(sys.executable, "-c", SQUATTER)
        report = json.loads(squatter.stdout.readline() or "{}")
        assert report.get("uid") == foreign_user.uid, squatter.stderr.read()
        yield path, report
    finally:
        if squatter is not None:
            squatter.stdin.close()
            squatter.wait(20)
        holder.close()
        assert server.stop() == 0, server.output()


def test_another_uid_cannot_take_the_relay_names(systemd: SystemdTestEnv, squatted: tuple[Path, dict]) -> None:
    path, report = squatted
    # The attacker could read the relay's names (they are public); it must not matter.
    assert report["seen"], report
    for attempt in range(5):
        proc = systemd.memsched("--endpoint", f"unix:{path}", "status", "--json")
        assert proc.returncode == 0, (attempt, report, proc.stderr)
        assert sorted(j["job_name"] for j in json.loads(proc.stdout)["jobs"]) == sorted(JOBS), proc.stdout
    with FacadeClient(f"unix:{path}") as client:
        assert client.pause("squatted").success and client.resume("squatted").success


def _echo_upstream(path: Path) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    return server


def test_a_taken_name_is_skipped_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a name someone guessed right (here: bound before the relay picks it) costs only a retry."""
    upstream = _echo_upstream(tmp_path / "up.sock")
    front = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    front.bind(str(tmp_path / "front.sock"))
    front.listen(8)
    taken = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    taken.bind("\0memsched-facade-taken")
    names = iter(["memsched-facade-taken", "memsched-facade-taken", "memsched-facade-free"])
    monkeypatch.setattr(relay_module, "_random_name", lambda: next(names))
    relay = relay_module.Relay([front], str(tmp_path / "up.sock"))
    relay.start()
    try:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(20)
        client.connect(str(tmp_path / "front.sock"))
        upstream.settimeout(20)
        conn, address = upstream.accept()
        assert address in ("\0memsched-facade-free", b"\0memsched-facade-free"), address
        client.sendall(b"ping")
        conn.settimeout(20)
        assert conn.recv(4) == b"ping"
        peer = wait_for(lambda: relay.peer_of("unix-abstract:memsched-facade-free"), 10, "the relayed peer")
        assert (peer.uid, peer.pid) == (os.getuid(), os.getpid())
        client.close()
        conn.close()
    finally:
        relay.close()
        taken.close()
        upstream.close()


# Opens as many connections as it can (up to argv[2]) to argv[1] (unix:PATH or tcp:HOST:PORT) and
# holds them; after a second for the server to shed what it refuses, prints how many are still open.
HOARDER = textwrap.dedent(
    """
    import json, os, resource, socket, sys, time
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    kind, _, where = sys.argv[1].partition(":")
    held = []
    for _ in range(int(sys.argv[2])):
        try:
            if kind == "unix":
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(where)
            else:
                host, _, port = where.rpartition(":")
                s = socket.create_connection((host, int(port)))
            held.append(s)
        except OSError:
            break
    time.sleep(1.5)
    alive = 0
    for s in held:
        s.setblocking(False)
        try:
            alive += s.recv(1) != b""   # b"": the server closed it
        except BlockingIOError:
            alive += 1                   # open, nothing to read
        except OSError:
            pass
    print(json.dumps({"uid": os.getuid(), "opened": len(held), "alive": alive}), flush=True)
    sys.stdin.read()
    """
)


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_another_uid_cannot_take_every_connection_slot(systemd: SystemdTestEnv, foreign_user: ForeignUser, transport: str) -> None:
    """A local user opens more connections than the relay allows in all (1024) and holds them: the
    others still get in, because one uid may hold only its share (128)."""
    config = write_config(systemd.tmp, JOBS)
    install(systemd, config)
    if transport == "unix":
        path = short_dir() / "grpc.sock"
        endpoint, args, token = f"unix:{path}", ["--listen", f"unix:{path}"], None
    else:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        token_file = short_dir() / "token"
        token_file.write_text("hoard-test-token-0123456789\n")
        token_file.chmod(0o600)
        endpoint, args, token = f"tcp:127.0.0.1:{port}", ["--listen", f"tcp:127.0.0.1:{port}", "--token-file", str(token_file)], "hoard-test-token-0123456789"
    server = Server(systemd, config, *args)
    hoarder = None
    try:
        server.wait_ready(endpoint, token)
        if transport == "unix":
            path.chmod(0o666)  # let the other uid connect at all: the slots are what is tested
        hoarder = foreign_user.popen(sys.executable, "-c", HOARDER, endpoint, "1100")
        report = json.loads(hoarder.stdout.readline() or "{}")
        assert report.get("uid") == foreign_user.uid and report["opened"] > 1024, (report, hoarder.stderr.read() if hoarder.poll() is not None else "")
        for _ in range(3):
            with FacadeClient(endpoint, token, timeout=20) as client:
                assert len(client.status().jobs) == len(JOBS)
    finally:
        if hoarder is not None:
            hoarder.stdin.close()
            hoarder.wait(30)
        assert server.stop() == 0, server.output()
