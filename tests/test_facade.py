"""The gRPC facade, for real: `memsched serve` started by the test and socket-activated by the private
systemd manager, called with the generated stub; peer-credential and token auth; load; idle exit."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from memsched.facade._generated import memory_scheduler_pb2 as pb
from memsched.facade.client import FacadeClient
from memsched_testing import command_job, write_config
from systemd_env import SystemdTestEnv, wait_for
from test_units_install import install

YEARLY = "0 0 1 1 *"  # never fires during a test: next_run_ms stays put between two reads
JOBS = {
    "tick": command_job(["/bin/sh", "-c", "echo tick"], cron=YEARLY),
    "fails": command_job(["/bin/sh", "-c", "echo broken >&2; exit 3"], cron=YEARLY),
}
FIELDS = ("job_name", "cron_expr", "last_run_ms", "last_duration_ms", "next_run_ms", "run_count", "error_count",
          "is_running", "is_paused")
RESULT = {None: pb.JOB_RESULT_STATUS_UNSPECIFIED, "running": pb.JOB_RESULT_STATUS_UNSPECIFIED,
          "success": pb.JOB_RESULT_STATUS_SUCCESS, "failed": pb.JOB_RESULT_STATUS_FAILED,
          "interrupted": pb.JOB_RESULT_STATUS_FAILED, "skipped": pb.JOB_RESULT_STATUS_SKIPPED}


_SOCKET_DIRS: list[Path] = []


def short_dir() -> Path:
    """A directory for sockets: short path (sun_path is 108 bytes), traversable by other users; removed after the test."""
    path = Path(tempfile.mkdtemp(prefix="msf-", dir="/tmp"))
    path.chmod(0o755)
    _SOCKET_DIRS.append(path)
    return path


@pytest.fixture(autouse=True)
def _remove_socket_dirs() -> Iterator[None]:
    yield
    while _SOCKET_DIRS:
        shutil.rmtree(_SOCKET_DIRS.pop(), ignore_errors=True)


class Server:
    """`memsched serve` as a child process of the test."""

    def __init__(self, systemd: SystemdTestEnv, config: Path, *args: str, socket_path: Path | None = None):
        self.log = systemd.tmp / f"serve-{time.monotonic_ns()}.log"
        self.socket = socket_path
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "memsched", "serve", "--config", str(config), *args],
                env=systemd.env, stdout=log, stderr=log,
            )

    def wait_ready(self, endpoint: str, token: str | None = None) -> None:
        def ready() -> bool:
            assert self.proc.poll() is None, self.output()
            try:
                with FacadeClient(endpoint, token, timeout=2) as client:
                    return client.health() == "SERVING"
            except Exception:
                return False

        wait_for(ready, 15, f"memsched serve on {endpoint}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@pytest.fixture
def served(systemd: SystemdTestEnv) -> Iterator[tuple[Server, FacadeClient, Path]]:
    """Two installed jobs and `memsched serve` on a unix socket of its own; yields (server, client, config)."""
    config = write_config(systemd.tmp, JOBS)
    install(systemd, config)
    path = short_dir() / "grpc.sock"
    server = Server(systemd, config, "--listen", f"unix:{path}", socket_path=path)
    client = FacadeClient(f"unix:{path}")
    try:
        server.wait_ready(f"unix:{path}")
        yield server, client, config
    finally:
        client.close()
        server.stop()


def cli_status(systemd: SystemdTestEnv, config: Path) -> dict:
    proc = systemd.memsched("status", "--json", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def assert_agree(cli: dict, answer: pb.GetSchedulerStatusResponse) -> None:
    """`memsched status --json` and GetSchedulerStatus, field for field."""
    assert cli["scheduler_running"] == answer.scheduler_running
    assert [j["job_name"] for j in cli["jobs"]] == [j.job_name for j in answer.jobs]
    for mine, wire in zip(cli["jobs"], answer.jobs):
        for field in FIELDS:
            assert mine[field] == getattr(wire, field), (mine["job_name"], field)
        assert RESULT[mine["last_result"]] == wire.last_result, mine["job_name"]
        assert mine["last_error"] == (wire.last_error if wire.HasField("last_error") else None), mine["job_name"]
        assert mine["last_run_metadata"] == dict(wire.last_run_metadata), mine["job_name"]


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value


# --------------------------------------------------------------------------- served by the test


def test_calls_errors_and_agreement_with_the_cli(systemd: SystemdTestEnv, served: tuple[Server, FacadeClient, Path]) -> None:
    server, client, config = served
    assert client.health() == "SERVING" and client.health("memory.MemoryService") == "SERVING"
    stub = client.stub

    ran = stub.RunJob(pb.RunJobRequest(job_name="tick", wait=True), timeout=60)
    assert ran.waited and ran.result == pb.JOB_RESULT_STATUS_SUCCESS and ran.result_name == "success"
    assert ran.exit_code == 0 and ran.unit == "memsched-tick.service" and len(ran.invocation_id) == 32
    failed = stub.RunJob(pb.RunJobRequest(job_name="fails", wait=True), timeout=60)
    assert failed.result == pb.JOB_RESULT_STATUS_FAILED and failed.exit_code == 3 and "status 3" in failed.reason

    # the same core answers both: field for field
    answer = stub.GetSchedulerStatus(pb.GetSchedulerStatusRequest(), timeout=10)
    assert_agree(cli_status(systemd, config), answer)
    by_name = {j.job_name: j for j in answer.jobs}
    assert by_name["tick"].run_count == 1 and by_name["tick"].last_result == pb.JOB_RESULT_STATUS_SUCCESS
    assert by_name["tick"].next_run_ms > time.time() * 1000 and not by_name["tick"].HasField("last_error")
    assert by_name["fails"].error_count == 1 and "status 3" in by_name["fails"].last_error

    history = stub.GetJobHistory(pb.GetJobHistoryRequest(job_name="fails"), timeout=10).runs
    assert len(history) == 1 and history[0].result_name == "failed" and history[0].trigger == "manual"
    assert history[0].invocation_id == failed.invocation_id and history[0].exit_code == 1

    # pause and resume: the original contract; the CLI sees the same state
    assert stub.PauseJob(pb.PauseJobRequest(job_name="tick"), timeout=30).success
    paused = wait_for(lambda: (j := {j.job_name: j for j in stub.GetSchedulerStatus(pb.GetSchedulerStatusRequest()).jobs}["tick"])
                      .next_run_ms == 0 and j, 10, "the paused timer to stop")
    assert paused.is_paused
    view = cli_status(systemd, config)
    assert {j["job_name"]: j for j in view["jobs"]}["tick"]["paused_by"].endswith("via gRPC")
    assert_agree(view, stub.GetSchedulerStatus(pb.GetSchedulerStatusRequest()))
    assert stub.ResumeJob(pb.ResumeJobRequest(job_name="tick"), timeout=30).success
    assert not {j.job_name: j for j in stub.GetSchedulerStatus(pb.GetSchedulerStatusRequest()).jobs}["tick"].is_paused

    # errors: as the original for Pause/Resume, status codes for the new calls, never a trace
    unknown = stub.PauseJob(pb.PauseJobRequest(job_name="nosuch"))
    assert not unknown.success and "unknown job 'nosuch'" in unknown.error and "tick" in unknown.error
    assert not stub.ResumeJob(pb.ResumeJobRequest(job_name="nosuch")).success
    assert rpc_error(stub.RunJob, pb.RunJobRequest(job_name="nosuch")).code() == grpc.StatusCode.NOT_FOUND
    assert rpc_error(stub.GetJobHistory, pb.GetJobHistoryRequest(job_name="nosuch")).code() == grpc.StatusCode.NOT_FOUND
    for bad in (lambda: stub.PauseJob(pb.PauseJobRequest(job_name="")),
                lambda: stub.RunJob(pb.RunJobRequest(job_name="../etc")),
                lambda: stub.GetJobHistory(pb.GetJobHistoryRequest(job_name="tick", limit=20_001))):
        error = rpc_error(bad)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "Traceback" not in error.details()
    channel = grpc.insecure_channel(f"unix:{server.socket}")
    garbage = channel.unary_unary("/memory.MemoryService/PauseJob")  # raw bytes, not a message
    error = rpc_error(garbage, b"\xff\xff\xff", timeout=10)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a valid memory.PauseJobRequest" in error.details()
    unimplemented = channel.unary_unary("/memory.MemoryService/DropEverything")
    assert rpc_error(unimplemented, b"", timeout=10).code() == grpc.StatusCode.UNIMPLEMENTED
    channel.close()

    # memsched --endpoint: the CLI through the facade
    endpoint = ["--endpoint", f"unix:{server.socket}"]
    remote = systemd.memsched(*endpoint, "status", "--json")
    assert remote.returncode == 0, remote.stderr
    assert [j["job_name"] for j in json.loads(remote.stdout)["jobs"]] == [j.job_name for j in answer.jobs]
    assert systemd.memsched(*endpoint, "pause", "tick").stdout.strip() == "tick: paused"
    assert "paused" in systemd.memsched(*endpoint, "status", "tick").stdout
    assert systemd.memsched(*endpoint, "resume", "tick").returncode == 0
    waited = systemd.memsched(*endpoint, "run", "fails", "--wait")
    assert waited.returncode == 3 and "failed" in waited.stdout
    missing = systemd.memsched(*endpoint, "run", "nosuch")
    assert missing.returncode == 2 and "unknown job 'nosuch'" in missing.stderr and "Traceback" not in missing.stderr
    assert systemd.memsched(*endpoint, "history", "tick").returncode == 2  # --endpoint: status, pause, resume, run only
    assert systemd.memsched(*endpoint, "pause", "tick", "--stop-running").returncode == 2
    nobody_home = systemd.memsched("--endpoint", f"unix:{server.socket}.absent", "status")
    assert nobody_home.returncode == 3 and "cannot reach the facade" in nobody_home.stderr

    assert server.stop() == 0 and not server.socket.exists(), server.output()
    assert "Traceback" not in server.output()


def test_status_without_endpoint_does_not_import_grpc(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, JOBS)
    proc = systemd.run(sys.executable, "-X", "importtime", "-m", "memsched", "status", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "memsched.ops.status" in imported
    assert not {m for m in imported if m.split(".")[0] in ("grpc", "grpc_health") or m.startswith(("google.protobuf", "memsched.facade"))}


# --------------------------------------------------------------------------- auth


FOREIGN_CLIENT = textwrap.dedent(
    """
    import json, os, sys
    import grpc
    from memsched.facade._generated import memory_scheduler_pb2 as pb
    from memsched.facade._generated import memory_scheduler_pb2_grpc as pb_grpc
    os.setgroups([]); os.setgid(65534); os.setuid(65534)  # nobody:nogroup from here on
    stub = pb_grpc.MemoryServiceStub(grpc.insecure_channel("unix:" + sys.argv[1]))
    out = {"uid": os.getuid()}
    for name, call, request in (
        ("status", stub.GetSchedulerStatus, pb.GetSchedulerStatusRequest()),
        ("history", stub.GetJobHistory, pb.GetJobHistoryRequest(job_name="tick")),
        ("pause", stub.PauseJob, pb.PauseJobRequest(job_name="tick")),
        ("resume", stub.ResumeJob, pb.ResumeJobRequest(job_name="tick")),
        ("run", stub.RunJob, pb.RunJobRequest(job_name="tick")),
    ):
        try:
            answer = call(request, timeout=20)
            out[name] = "OK" if not hasattr(answer, "success") or answer.success else "FAILED"
        except grpc.RpcError as exc:
            out[name] = exc.code().name + ": " + exc.details()
    print(json.dumps(out))
    """
)


def _as_nobody(systemd: SystemdTestEnv, socket_path: Path) -> dict[str, str]:
    proc = systemd.run(sys.executable, "-c", FOREIGN_CLIENT, str(socket_path), timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_foreign_uid_may_read_but_not_change_jobs_unless_in_the_group(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, JOBS)
    install(systemd, config)
    for group, allowed in ((None, False), ("nogroup", True)):
        path = short_dir() / "grpc.sock"
        server = Server(systemd, config, "--listen", f"unix:{path}", *(["--group", group] if group else []))
        try:
            server.wait_ready(f"unix:{path}")
            assert (path.stat().st_mode & 0o777) == 0o660
            if group:
                assert path.stat().st_gid == 65534
            else:
                path.chmod(0o666)  # let nobody connect at all: the socket's mode is not what refuses it
            seen = _as_nobody(systemd, path)
            assert seen["uid"] == 65534 and seen["status"] == "OK" and seen["history"] == "OK", seen
            for call in ("pause", "resume", "run"):
                if allowed:
                    assert seen[call] == "OK", seen
                else:
                    assert seen[call].startswith("PERMISSION_DENIED") and "uid 65534" in seen[call], seen
            if allowed:
                with FacadeClient(f"unix:{path}") as client:
                    wait_for(lambda: client.history("tick").runs, 10, "the run nobody started")
        finally:
            assert server.stop() == 0, server.output()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_tcp_needs_a_token_and_loopback_unless_allowed(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, JOBS)
    token_file = systemd.tmp / "token"
    token_file.write_text("s3cret-token-of-the-facade\n")
    token_file.chmod(0o600)
    port = _free_port()
    refusals = [
        (["--listen", f"tcp:127.0.0.1:{port}"], "TCP needs --token-file"),
        (["--listen", f"tcp:0.0.0.0:{port}", "--token-file", str(token_file)], "not a loopback address"),
        (["--listen", f"tcp:0.0.0.0:{port}", "--allow-remote"], "--allow-remote needs --token-file"),
        (["--listen", "tcp:127.0.0.1:http0"], "expected tcp:HOST:PORT"),
        (["--listen", "unix:relative.sock"], "must be absolute"),
        (["--listen", f"tcp:127.0.0.1:{port}", "--token-file", str(systemd.tmp / "absent")], "--token-file"),
        (["--idle-timeout", "soon"], "--idle-timeout soon"),
    ]
    for args, message in refusals:
        proc = systemd.memsched("serve", "--config", str(config), *args, timeout=20)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
    token_file.chmod(0o644)
    readable = systemd.memsched("serve", "--config", str(config), "--listen", f"tcp:127.0.0.1:{port}", "--token-file", str(token_file))
    assert readable.returncode == 2 and "readable by everyone" in readable.stderr
    token_file.chmod(0o600)

    install(systemd, config)
    endpoint = f"tcp:127.0.0.1:{port}"
    server = Server(systemd, config, "--listen", endpoint, "--token-file", str(token_file))
    try:
        server.wait_ready(endpoint)  # the health service needs no token
        with FacadeClient(endpoint) as anonymous:
            for call in (lambda: anonymous.stub.GetSchedulerStatus(pb.GetSchedulerStatusRequest()),
                         lambda: anonymous.stub.PauseJob(pb.PauseJobRequest(job_name="tick"))):
                assert rpc_error(call).code() == grpc.StatusCode.UNAUTHENTICATED
        with FacadeClient(endpoint, "not-the-token-at-all") as wrong:
            assert rpc_error(wrong.stub.GetSchedulerStatus, pb.GetSchedulerStatusRequest()).code() == grpc.StatusCode.UNAUTHENTICATED
        with FacadeClient(endpoint, "s3cret-token-of-the-facade") as good:
            assert len(good.status().jobs) == 2
            assert good.pause("tick").success and good.resume("tick").success
        denied = systemd.memsched("--endpoint", endpoint, "status")
        assert denied.returncode == 4 and "MEMSCHED_TOKEN_FILE" in denied.stderr
        systemd.env["MEMSCHED_TOKEN_FILE"] = str(token_file)
        allowed = systemd.memsched("--endpoint", endpoint, "status", "--json")
        assert allowed.returncode == 0 and len(json.loads(allowed.stdout)["jobs"]) == 2, allowed.stderr
    finally:
        systemd.env.pop("MEMSCHED_TOKEN_FILE", None)
        assert server.stop() == 0, server.output()


# --------------------------------------------------------------------------- load


def test_a_thousand_concurrent_status_calls_all_succeed(served: tuple[Server, FacadeClient, Path]) -> None:
    server, client, _config = served
    calls = 1000
    channels = [grpc.insecure_channel(f"unix:{server.socket}") for _ in range(4)]
    stubs = [client.stub.__class__(channel) for channel in channels]
    start = time.perf_counter()
    pending = [stubs[i % 4].GetSchedulerStatus.future(pb.GetSchedulerStatusRequest(), timeout=60) for i in range(calls)]
    errors = []
    for call in pending:
        try:
            assert len(call.result().jobs) == 2
        except Exception as exc:  # counted, not raised: the assertion below says how many
            errors.append(repr(exc))
    elapsed = time.perf_counter() - start
    for channel in channels:
        channel.close()
    print(f"\n{calls} concurrent GetSchedulerStatus calls in {elapsed:.2f}s: {calls / elapsed:.0f} calls/s")
    assert errors == [], errors[:3]


# --------------------------------------------------------------------------- socket activation


def _serve_processes(config: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in argv and str(config).encode() in argv:
                found.append(int(entry.name))
    return found


def test_socket_activation_watchdog_idle_exit_reactivation_and_drain(systemd: SystemdTestEnv) -> None:
    jobs = dict(JOBS, slow=command_job(["/bin/sleep", "1.5"], cron=YEARLY))
    facade = {"enabled": True, "idle_timeout": "2500ms", "watchdog": "1s", "drain_timeout": "10s"}
    config = write_config(systemd.tmp, jobs, extra={"facade": facade})
    report = install(systemd, config)
    assert "memsched-grpc.socket" in report["started"] and "memsched-grpc.socket" in report["enabled"]
    path = systemd.sandbox.runtime_dir / "memsched" / "grpc.sock"
    assert path.is_socket() and (path.stat().st_mode & 0o777) == 0o660
    assert systemd.show("memsched-grpc.service", "ActiveState")["ActiveState"] == "inactive"
    assert _serve_processes(config) == [], "nothing runs before the first call"

    endpoint = f"unix:{path}"
    with FacadeClient(endpoint, timeout=30) as client:
        assert client.health() == "SERVING"  # the connection starts the service
        first = systemd.show("memsched-grpc.service", "ActiveState", "MainPID", "Type", "NotifyAccess", "WatchdogUSec", "StatusText")
        assert first["ActiveState"] == "active" and first["Type"] == "notify" and first["WatchdogUSec"] == "1s", first
        assert first["StatusText"].startswith("serving unix:"), first
        assert _serve_processes(config) == [int(first["MainPID"])]
        assert len(client.status().jobs) == 3
        assert client.pause("tick").success and client.resume("tick").success
        ran = client.run("tick", wait=True)
        assert ran.result_name == "success"
        assert client.history("tick").runs[0].invocation_id == ran.invocation_id
        # busy for longer than WatchdogSec=1s: the pings keep it alive
        for _ in range(6):
            client.status()
            time.sleep(0.3)
        assert systemd.show("memsched-grpc.service", "MainPID")["MainPID"] == first["MainPID"], "no watchdog restart"

        # idle: the server exits 0 and nothing stays resident; the socket stays
        idle = wait_for(lambda: (s := systemd.show("memsched-grpc.service", "ActiveState", "Result", "MainPID", "ExecMainStatus"))
                        ["ActiveState"] == "inactive" and s, 10, "the idle exit")
        assert idle["Result"] == "success" and idle["ExecMainStatus"] == "0" and idle["MainPID"] == "0", idle
        assert _serve_processes(config) == []
        assert systemd.show("memsched-grpc.socket", "ActiveState")["ActiveState"] == "active"

        # the next call starts it again, on the same channel
        assert len(client.status().jobs) == 3
        second = systemd.show("memsched-grpc.service", "ActiveState", "MainPID")
        assert second["ActiveState"] == "active" and second["MainPID"] != first["MainPID"]

        # SIGTERM drains: a run being waited for still gets its answer, and the server exits 0
        result: list[object] = []
        waiter = threading.Thread(target=lambda: result.append(client.run("slow", wait=True)))
        waiter.start()
        wait_for(lambda: systemd.show("memsched-slow.service", "ActiveState")["ActiveState"] == "activating", 10, "the slow run")
        systemd.systemctl("stop", "--no-block", "memsched-grpc.service")
        waiter.join(30)
        assert result and result[0].result_name == "success", result
        stopped = wait_for(lambda: (s := systemd.show("memsched-grpc.service", "ActiveState", "Result", "ExecMainStatus"))
                           ["ActiveState"] == "inactive" and s, 20, "the drained stop")
        assert stopped["Result"] == "success" and stopped["ExecMainStatus"] == "0", stopped
    journal = " ".join(str(e.get("MESSAGE", "")) for e in systemd.journal("SYSLOG_IDENTIFIER=memsched-grpc"))
    assert "socket-activated" in journal and "stopping (idle)" in journal and "stopping (SIGTERM)" in journal
    assert "Traceback" not in journal

    # facade switched off: install-units stops and removes both units
    config = write_config(systemd.tmp, jobs)
    off = install(systemd, config)
    assert "memsched-grpc.socket" in off["stopped"] and not path.exists()
    assert not (systemd.unit_dir / "memsched-grpc.socket").exists()


def test_facade_units_render_only_when_enabled(tmp_path: Path) -> None:
    from memsched.config.load import load_config
    from memsched.errors import UsageError
    from memsched.ops.units import render

    off = render(load_config(write_config(tmp_path, JOBS)), "user", 252)
    assert not [u for u in off if u.name.startswith("memsched-grpc.")]
    tcp = {"enabled": True, "listen": "tcp:127.0.0.1:50051", "token_file": "/etc/memsched/token", "group": "adm"}
    units = {u.name: u.content for u in render(load_config(write_config(tmp_path, JOBS, extra={"facade": tcp})), "system", 252)}
    assert "ListenStream=127.0.0.1:50051" in units["memsched-grpc.socket"]
    service = units["memsched-grpc.service"]
    assert "Type=notify" in service and "WatchdogSec=30s" in service and '"--system"' in service and '"serve"' in service
    assert "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" in service
    for facade, message in (({"enabled": True, "listen": "tcp:127.0.0.1:50051"}, "facade.token_file"),
                            ({"enabled": True, "listen": "tcp:0.0.0.0:50051", "token_file": "/x"}, "facade.allow_remote"),
                            ({"enabled": True, "listen": "grpc.sock"}, "facade.listen")):
        with pytest.raises(UsageError, match=message):
            render(load_config(write_config(tmp_path, JOBS, extra={"facade": facade})), "user", 252)
