"""A private systemd user manager for machines that have the systemd binaries but no manager.

Layout of one sandbox (``root`` is a private directory):

* ``root/runtime``  - its ``XDG_RUNTIME_DIR`` (manager socket, user bus)
* ``root/home``     - its ``HOME``, with ``.config``, ``.local/state``, ``.local/share``
* ``root/journal``  - its journal, bind-mounted onto ``/run/log/journal`` in the namespace
* ``root/sandbox.json`` - pids, cgroups and the environment clients need

A **supervisor** process owns each sandbox. It creates a cgroup for it (so every
process the manager starts can be found and killed), starts ``unshare --mount``
with a tmpfs on ``/run/systemd`` holding an empty ``/run/systemd/system`` (the
manager refuses to start without it), starts ``systemd-journald`` there with a
volatile, private journal, then ``systemd --user``; it waits for the manager's
``READY=1`` on a notify socket. On SIGTERM, on the manager's death, or (when
tied) on its parent's death, it stops the manager, kills what is left in the
cgroup, reaps everything (it is a child subreaper), removes the cgroups and the
directory, and exits. Every sandbox is listed in ``/run/memsched-sandboxes`` so
one left behind by a killed supervisor is found and reaped (:func:`reap_stale`).
"""

from __future__ import annotations

import ctypes
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from memsched.errors import MemschedError, PermissionDenied
from memsched.proc import pid_alive

REGISTRY_DIR = Path("/run/memsched-sandboxes")
CGROUP_ROOT = Path("/sys/fs/cgroup")
SYSTEMD_BINARY_CANDIDATES = ("/lib/systemd/systemd", "/usr/lib/systemd/systemd")
JOURNALD_BINARY_CANDIDATES = ("/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald")

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36

JOURNALD_CONF = """[Journal]
Storage=volatile
RuntimeMaxUse=64M
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
ReadKMsg=no
"""

# Runs inside the private mount namespace (as `sh -c`), then becomes the manager.
_NAMESPACE_SCRIPT = r"""
set -eu
mkdir -p /run/systemd
mount -t tmpfs -o mode=0755 memsched-sandbox /run/systemd
mkdir -p /run/systemd/system /run/systemd/journald.conf.d
cp "$MEMSCHED_SANDBOX_ROOT/journald.conf" /run/systemd/journald.conf.d/50-memsched-sandbox.conf
# journald looks up unit invocation ids under /run/systemd/units; point it at the user manager's
ln -s "$XDG_RUNTIME_DIR/systemd/units" /run/systemd/units
mkdir -p /run/log/journal
mount --bind "$MEMSCHED_SANDBOX_ROOT/journal" /run/log/journal
if [ -d /var/log/journal ]; then mount --bind "$MEMSCHED_SANDBOX_ROOT/journal" /var/log/journal; fi
setpriv --pdeathsig TERM -- "$MEMSCHED_JOURNALD" &
i=0
while [ ! -S /run/systemd/journal/stdout ]; do
  i=$((i + 1))
  if [ "$i" -gt 1000 ]; then echo "memsched sandbox: journald did not start" >&2; exit 1; fi
  sleep 0.01
done
manager="$MEMSCHED_SYSTEMD"
unset MEMSCHED_SANDBOX_ROOT MEMSCHED_SYSTEMD MEMSCHED_JOURNALD
exec "$manager" --user
"""


@dataclass
class SandboxState:
    """What sandbox.json records about a running sandbox."""

    name: str
    root: str
    supervisor_pid: int
    manager_pid: int | None = None
    cgroups: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    journal_dir: str = ""
    started: float = 0.0


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> None:
    if _libc().prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _find_binary(candidates: tuple[str, ...], what: str) -> str:
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    raise MemschedError(f"{what} is not installed (Debian: apt install systemd)")


def _cgroup_mounts() -> list[Path]:
    """Return the cgroup hierarchies to place a sandbox in: cgroup2, or the v1 name=systemd and unified ones."""
    if (CGROUP_ROOT / "cgroup.procs").exists():
        return [CGROUP_ROOT]  # pure cgroup v2
    mounts = []
    for name in ("systemd", "unified"):
        if (CGROUP_ROOT / name / "cgroup.procs").exists():
            mounts.append(CGROUP_ROOT / name)
    return mounts


def _all_hierarchies() -> list[Path]:
    if (CGROUP_ROOT / "cgroup.procs").exists():
        return [CGROUP_ROOT]
    return [p for p in CGROUP_ROOT.iterdir() if (p / "cgroup.procs").exists()] if CGROUP_ROOT.is_dir() else []


def _cgroup_pids(top: Path) -> set[int]:
    pids: set[int] = set()
    if not top.is_dir():
        return pids
    for dirpath, _dirs, files in os.walk(top):
        if "cgroup.procs" in files:
            try:
                pids.update(int(x) for x in Path(dirpath, "cgroup.procs").read_text().split())
            except OSError:
                pass
    return pids


def _remove_cgroup_tree(top: Path) -> None:
    if not top.is_dir():
        return
    for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


class Sandbox:
    """Handle on one private manager. Construction does no I/O; call :meth:`start` or :meth:`load`."""

    def __init__(self, root: Path | str, name: str | None = None):
        self.root = Path(root)
        self.name = name or self.root.name
        self.state: SandboxState | None = None

    # ------------------------------------------------------------------ paths

    @property
    def state_file(self) -> Path:
        return self.root / "sandbox.json"

    @property
    def runtime_dir(self) -> Path:
        return self.root / "runtime"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def journal_root(self) -> Path:
        return self.root / "journal"

    @property
    def unit_dir(self) -> Path:
        """The user unit directory this manager reads ($XDG_CONFIG_HOME/systemd/user)."""
        return self.home / ".config" / "systemd" / "user"

    def journal_dir(self) -> Path:
        """Return the directory journalctl --directory= must read for this sandbox."""
        machine_id = Path("/etc/machine-id").read_text().strip() if Path("/etc/machine-id").exists() else ""
        candidate = self.journal_root / machine_id
        return candidate if machine_id and candidate.is_dir() else self.journal_root

    def env(self) -> dict[str, str]:
        """Return the environment a client needs to use this manager (user scope)."""
        home = self.home
        return {
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "DBUS_SESSION_BUS_ADDRESS": f"unix:path={self.runtime_dir / 'bus'}",
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "MEMSCHED_SCOPE": "user",
            "MEMSCHED_JOURNAL_DIR": str(self.journal_root),
            "MEMSCHED_SANDBOX": str(self.root),
        }

    # ------------------------------------------------------------------ state

    def load(self) -> SandboxState | None:
        """Read sandbox.json; return the state when the supervisor is alive, else None."""
        try:
            data = json.loads(self.state_file.read_text())
            state = SandboxState(**data)
        except (OSError, ValueError, TypeError):
            return None
        self.state = state
        return state if pid_alive(state.supervisor_pid) else None

    def is_running(self) -> bool:
        state = self.load()
        return state is not None and pid_alive(state.manager_pid) and (self.runtime_dir / "systemd" / "private").is_socket()

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 30.0, tie_to_parent: bool = False) -> SandboxState:
        """Start the supervisor and wait until the manager is ready and its user bus listens.

        With ``tie_to_parent`` the sandbox is torn down when the calling process
        dies (for test sessions). Returns the running state.
        Raises :class:`PermissionDenied` when not root, :class:`MemschedError` on failure.
        """
        if os.geteuid() != 0:
            raise PermissionDenied(
                "the private systemd manager needs root (it uses a private mount namespace and a cgroup); "
                "run `sudo memsched sandbox start`, or use a real user session (`loginctl enable-linger $USER`)"
            )
        for what, candidates in (("systemd", SYSTEMD_BINARY_CANDIDATES), ("systemd-journald", JOURNALD_BINARY_CANDIDATES)):
            _find_binary(candidates, what)
        if shutil.which("unshare") is None or shutil.which("setpriv") is None:
            raise MemschedError("unshare and setpriv are needed (Debian: apt install util-linux)")
        self.root.mkdir(parents=True, exist_ok=True)
        log = self.root / "supervisor.log"
        cmd = [sys.executable, "-m", "memsched.systemd.sandbox", "supervise", str(self.root), self.name]
        if tie_to_parent:
            cmd.append("--tie-to-parent")
        with open(log, "ab") as log_fh:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=log_fh,
                start_new_session=not tie_to_parent,
                close_fds=True,
            )
        self._supervisor = proc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise MemschedError(f"the sandbox manager failed to start: {log.read_text(errors='replace').strip()[-2000:]}")
            state = self.load()
            if state is not None and state.manager_pid and (self.root / "ready").exists():
                return state
            time.sleep(0.02)
        proc.terminate()
        raise MemschedError(f"the sandbox manager did not become ready within {timeout:.0f}s; see {log}")

    def restart_manager(self, timeout: float = 30.0) -> SandboxState:
        """Replace the manager with a fresh process on the same directories (what a reboot keeps: files).

        Returns the new state. Raises :class:`MemschedError` when it does not come back.
        """
        state = self.load()
        if state is None:
            raise MemschedError("the sandbox is not running")
        old_pid = state.manager_pid
        os.kill(state.supervisor_pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = self.load()
            if current is not None and current.manager_pid != old_pid and (self.root / "ready").exists():
                return current
            time.sleep(0.02)
        raise MemschedError(f"the sandbox manager did not come back within {timeout:.0f}s")

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the sandbox and wait until its supervisor has cleaned up.

        Returns False when no sandbox was running here.
        """
        state = self.load()
        if state is None:
            if self.state is not None or self.state_file.exists():
                cleanup(self.state or SandboxState(self.name, str(self.root), 0))
            return False
        os.kill(state.supervisor_pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        supervisor = getattr(self, "_supervisor", None)
        while time.monotonic() < deadline:
            if supervisor is not None and supervisor.pid == state.supervisor_pid:
                if supervisor.poll() is not None:
                    break
            elif not pid_alive(state.supervisor_pid):
                break
            time.sleep(0.02)
        else:
            os.kill(state.supervisor_pid, signal.SIGKILL)
        cleanup(state)
        return True


# ---------------------------------------------------------------------- supervisor


def _cgroup_tops(state: SandboxState) -> list[Path]:
    tops = [Path(c) for c in state.cgroups]
    base_names = {Path(c).relative_to(m).parts[0] for c in state.cgroups for m in _all_hierarchies() if Path(c).is_relative_to(m)}
    for hierarchy in _all_hierarchies():
        for name in base_names:
            if (hierarchy / name) not in tops:
                tops.append(hierarchy / name)
    return tops


def _kill_processes(tops: list[Path]) -> None:
    """SIGTERM, then SIGKILL, every process in the cgroup trees, and reap what was ours."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = set().union(*(_cgroup_pids(t) for t in tops)) if tops else set()
        pids.discard(os.getpid())
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            _reap_children()
            pids = {p for p in pids if pid_alive(p)}
            time.sleep(0.02)
    _reap_children()


def cleanup(state: SandboxState) -> None:
    """Kill every process left in the sandbox's cgroups and remove its cgroups, files and registry entry."""
    tops = _cgroup_tops(state)
    _kill_processes(tops)
    for top in tops:
        _remove_cgroup_tree(top)
    shutil.rmtree(state.root, ignore_errors=True)
    try:
        (REGISTRY_DIR / f"{Path(state.root).name}-{_registry_key(state.root)}.json").unlink()
    except OSError:
        pass


def _registry_key(root: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, str(root)).hex[:12]


def _reap_children() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def reap_stale() -> list[str]:
    """Tear down sandboxes whose supervisor died without cleaning up. Returns what was reaped.

    Sandboxes listed in the registry with a dead supervisor are cleaned up
    (processes, cgroups, directory); sandbox cgroups that no live sandbox owns
    (their registry entry is gone too) are emptied and removed.
    """
    reaped = []
    live_cgroups: set[str] = set()
    for entry in REGISTRY_DIR.glob("*.json") if REGISTRY_DIR.is_dir() else []:
        try:
            state = SandboxState(**json.loads(entry.read_text()))
        except (OSError, ValueError, TypeError):
            entry.unlink(missing_ok=True)
            continue
        if pid_alive(state.supervisor_pid):
            live_cgroups.update(Path(c).name for c in state.cgroups)
            continue
        cleanup(state)
        entry.unlink(missing_ok=True)
        reaped.append(state.root)
    for hierarchy in _all_hierarchies():
        for orphan in hierarchy.glob("memsched_sandbox_*.slice"):
            if orphan.name in live_cgroups:
                continue
            _kill_processes([orphan])
            _remove_cgroup_tree(orphan)
            if not orphan.exists():
                reaped.append(str(orphan))
    return reaped


def supervise(root: Path, name: str, tie_to_parent: bool) -> int:
    """Run one sandbox until told to stop. Returns the process exit code."""
    if tie_to_parent:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:
            return 1
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    sandbox = Sandbox(root, name)
    env_for_clients = sandbox.env()
    for path in (sandbox.runtime_dir, sandbox.home, sandbox.journal_root):
        path.mkdir(parents=True, exist_ok=True)
    for key in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        Path(env_for_clients[key]).mkdir(parents=True, exist_ok=True)
    os.chmod(sandbox.runtime_dir, 0o700)
    (root / "journald.conf").write_text(JOURNALD_CONF)
    (root / "ready").unlink(missing_ok=True)

    key = _registry_key(str(root))
    uid = os.getuid()
    cgroup_name = f"memsched_sandbox_{key}.slice"
    cgroups: list[str] = []
    for mount in _cgroup_mounts():
        path = mount / cgroup_name / f"user@{uid}.service"
        try:
            path.mkdir(parents=True, exist_ok=True)
            cgroups.append(str(mount / cgroup_name))
        except OSError:
            pass

    state = SandboxState(
        name=name,
        root=str(root),
        supervisor_pid=os.getpid(),
        cgroups=cgroups,
        env=env_for_clients,
        journal_dir=str(sandbox.journal_root),
        started=time.time(),
    )
    REGISTRY_DIR.mkdir(parents=True, exist_ok=True)
    registry_entry = REGISTRY_DIR / f"{root.name}-{key}.json"
    _write_state(sandbox.state_file, state)
    _write_state(registry_entry, state)

    stop_requested = False
    restart_requested = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stop_requested, restart_requested
        if signum == signal.SIGUSR1:
            restart_requested = True
        else:
            stop_requested = True

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(signum, on_signal)

    notify_path = root / "notify.sock"
    notify_path.unlink(missing_ok=True)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(0.1)

    manager_env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_SOCKET", "LISTEN_", "MEMSCHED_"))}
    manager_env.update({k: v for k, v in env_for_clients.items() if not k.startswith("MEMSCHED_")})
    manager_env.update(
        {
            "NOTIFY_SOCKET": str(notify_path),
            "MEMSCHED_SANDBOX_ROOT": str(root),
            "MEMSCHED_SYSTEMD": _find_binary(SYSTEMD_BINARY_CANDIDATES, "systemd"),
            "MEMSCHED_JOURNALD": _find_binary(JOURNALD_BINARY_CANDIDATES, "systemd-journald"),
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        }
    )
    procs_files = [Path(c) / f"user@{uid}.service" / "cgroup.procs" for c in cgroups]

    def enter_cgroup() -> None:
        for procs in procs_files:
            try:
                procs.write_text("0")
            except OSError:
                pass
        # The manager must die with the supervisor, whatever kills the supervisor.
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    def spawn_manager() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", _NAMESPACE_SCRIPT],
            env=manager_env,
            stdin=subprocess.DEVNULL,
            preexec_fn=enter_cgroup,
            close_fds=True,
        )
        state.manager_pid = proc.pid
        _write_state(sandbox.state_file, state)
        _write_state(registry_entry, state)
        return proc

    def stop_manager(proc: subprocess.Popen[bytes]) -> None:
        # SIGTERM makes a user manager start exit.target, stopping every unit gracefully.
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    manager = spawn_manager()
    ready = False
    exit_code = 0
    while not stop_requested:
        if restart_requested:
            # A fresh manager process on the same directories: as after a reboot, only what is on disk survives.
            restart_requested = False
            (root / "ready").unlink(missing_ok=True)
            stop_manager(manager)
            _kill_processes(_cgroup_tops(state))
            manager = spawn_manager()
            ready = False
            continue
        if manager.poll() is not None:
            exit_code = 0 if ready else 1
            print(f"manager exited with status {manager.returncode}", file=sys.stderr, flush=True)
            break
        try:
            message = notify.recv(4096).decode(errors="replace")
        except (TimeoutError, socket.timeout):
            message = ""
        except InterruptedError:
            continue
        if not ready and "READY=1" in message.split("\n"):
            if _wait_for_socket(sandbox.runtime_dir / "bus", 10):
                ready = True
                (root / "ready").write_text(str(time.time()))
        _reap_children()

    stop_manager(manager)
    notify.close()
    cleanup(state)
    return exit_code


def _wait_for_socket(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_socket():
            return True
        time.sleep(0.01)
    return False


def _write_state(path: Path, state: SandboxState) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state.__dict__, indent=2))
    os.replace(tmp, path)


def shell_exports(env: dict[str, str]) -> str:
    """Return ``export K=V`` lines for ``eval "$(memsched sandbox env)"``."""
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "supervise":
        sys.exit(supervise(Path(sys.argv[2]), sys.argv[3], "--tie-to-parent" in sys.argv[4:]))
    print("usage: python -m memsched.systemd.sandbox supervise ROOT NAME [--tie-to-parent]", file=sys.stderr)
    sys.exit(2)
