"""The PID-1 harness: a Debian root per release, the memsched .deb built for it, booted with systemd
as PID 1 in ``systemd-nspawn`` and driven with ``nsenter``.

The pieces, each usable alone:

* :func:`build_deb` builds the .deb from this checkout with units rendered for a release's systemd.
* :func:`base_root` debootstraps a release once and caches it (with the package's dependencies
  installed) under ``/var/cache/memsched-pid1``, keyed by release and dependency list.
* :class:`Machine` is a private copy of that root with the .deb installed; :meth:`Machine.boot`
  starts systemd as PID 1 in it, :meth:`Machine.run` runs a command inside (as any user),
  :meth:`Machine.reboot` powers it off and boots it again, :meth:`Machine.destroy` halts it and
  removes every trace (the copy, the cgroups ``payload/`` and ``supervisor/`` nspawn leaves, and
  ``/run/systemd/nspawn/propagate/NAME``).

Why the flags: ``--register=no --keep-unit`` because no host systemd or machined runs here;
``--private-network`` because PrivateNetwork= cannot apply without it; ``--system-call-filter=bpf``
and ``SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1`` because without them IPAddressDeny= is silently not
enforced. ``env -i`` under nsenter because the host's environment would leak in otherwise.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MEMSCHED_PID1_CACHE", "/var/cache/memsched-pid1"))
WORK = Path(os.environ.get("MEMSCHED_PID1_WORK", "/var/tmp/memsched-pid1"))
HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MIRROR = os.environ.get("MEMSCHED_PID1_MIRROR", "http://deb.debian.org/debian")
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3")

PR_SET_PDEATHSIG = 1
CGROUP_MOUNT = Path("/sys/fs/cgroup")
# On a cgroup v1 hybrid host nspawn (with the unified hierarchy forced) uses these two; on a
# unified host "unified" is missing and the root itself is the hierarchy.
CGROUP_HIERARCHIES = ("unified", "systemd") if Path("/sys/fs/cgroup/unified").is_dir() else ("",)

# Each release the suite proves memsched on, and the major version of the systemd it ships.
RELEASES = {"bookworm": 252, "trixie": 257}


class HarnessError(RuntimeError):
    """A step of building, installing or booting a machine failed (the message says which and why)."""


def _run(cmd: Sequence[str], *, timeout: float = 900, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a host command; return it. Raises HarnessError (with its output) when ``check`` and it fails."""
    env = {"PATH": HOST_PATH, "LANG": "C.UTF-8", "HOME": "/root", "DEBIAN_FRONTEND": "noninteractive"}
    env.update(kw.pop("env", {}) or {})  # type: ignore[arg-type]
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=env, **kw)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise HarnessError(f"{shlex.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _source_tree(dest: Path) -> Path:
    """Copy the checkout (no venv, caches or VCS data) into ``dest``; return ``dest``."""
    excluded = {".venv", ".git", "__pycache__", ".hypothesis", ".pytest_cache", "_generated", "dist", "build"}
    shutil.copytree(ROOT, dest, ignore=lambda _d, names: [n for n in names if n in excluded or n.endswith(".egg-info")])
    return dest


def build_deb(release: str, workdir: Path) -> Path:
    """Build memsched's .deb with units rendered for ``release``'s systemd; return its path.

    Raises HarnessError when dpkg-buildpackage fails."""
    src = _source_tree(workdir / "memsched-0.1.0")
    shutil.copytree(src / "packaging" / "debian", src / "debian")
    _run(
        ["dpkg-buildpackage", "-us", "-uc", "-b"],
        cwd=src,
        env={"DEB_BUILD_OPTIONS": "nocheck", "MEMSCHED_SYSTEMD_VERSION": str(RELEASES[release])},
    )
    (package,) = workdir.glob("memsched_*_all.deb")
    return package


def deb_depends(deb: Path) -> list[str]:
    """Return the Debian package names the .deb depends on (alternatives and versions dropped)."""
    field_ = _run(["dpkg-deb", "-f", str(deb), "Depends"]).stdout
    names = []
    for part in field_.split(","):
        name = part.split("|")[0].strip().split(" ")[0].split(":")[0]
        if name:
            names.append(name)
    return sorted(set(names))


def machine_cgroups(name: str) -> list[Path]:
    """Return the cgroups (one per hierarchy nspawn uses here) the nspawn of machine ``name`` runs in."""
    return [CGROUP_MOUNT / h / f"memsched-pid1-{name}" for h in CGROUP_HIERARCHIES if (CGROUP_MOUNT / h).is_dir()]


def enter_cgroup(name: str) -> None:
    """Move this process into machine ``name``'s own cgroups, creating them (a preexec_fn)."""
    # With --keep-unit nspawn makes its payload/ and supervisor/ cgroups under its own: each
    # machine gets a cgroup of its own, so two nspawns at once never share one, and the traces
    # they leave are ours to remove, nobody else's.
    for cg in machine_cgroups(name):
        cg.mkdir(exist_ok=True)
        (cg / "cgroup.procs").write_text(str(os.getpid()))
    os.setsid()
    # If the test process dies (a killed session), nspawn gets SIGTERM and halts its container.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def release_cgroups(name: str) -> None:
    """Remove machine ``name``'s cgroups and the empty payload/ and supervisor/ nspawn left in them."""
    for cg in machine_cgroups(name):
        _rmdir_tree(cg)


def nspawn_offline(root: Path, name: str, *cmd: str, timeout: float = 900, check: bool = True,
                   binds: Sequence[tuple[Path, str]] = (), cwd: str = "/root", env: dict[str, str] | None = None,
                   binds_ro: Sequence[tuple[Path, str]] = ()) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in ``root`` without booting it (with the host's network, a clean environment plus
    ``env``, as root in ``cwd``), ``binds`` / ``binds_ro`` (host path, path inside) bind-mounted
    (read-write / read-only); return it.

    Raises HarnessError when ``check`` and it exits non-zero."""
    try:
        return _run(
            ["systemd-nspawn", "-q", "-D", str(root), "-M", name, "--register=no", "--keep-unit", "--console=pipe", f"--chdir={cwd}",
             *(f"--bind={host}:{inside}" for host, inside in binds),
             *(f"--bind-ro={host}:{inside}" for host, inside in binds_ro),
             "env", "-i", f"PATH={GUEST_PATH}", "HOME=/root", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive",
             *(f"{k}={v}" for k, v in (env or {}).items()), *cmd],
            timeout=timeout, check=check, preexec_fn=lambda: enter_cgroup(name),
        )
    finally:
        release_cgroups(name)
        shutil.rmtree(f"/run/systemd/nspawn/propagate/{name}", ignore_errors=True)


def base_root(release: str, extra_packages: Sequence[str] = ()) -> Path:
    """Return the cached root of ``release``: debootstrapped, with ``extra_packages`` installed by apt.

    Built once (about a minute, ~300 MB) and reused while the key (release, packages) is the same;
    built into a temporary directory and renamed, so a killed build never leaves a half root.
    Raises HarnessError when debootstrap or apt fails."""
    plain = CACHE / release
    if not extra_packages and (plain / ".memsched-pid1-complete").exists():
        return plain
    key = hashlib.sha256(json.dumps([release, MIRROR, BASE_PACKAGES, sorted(extra_packages)]).encode()).hexdigest()[:12]
    root = CACHE / f"{release}-{key}"
    if (root / "etc" / "os-release").exists():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions at once: one builds, the other waits and reuses
        return _build_base_root(release, extra_packages, plain, root, key)


def _build_base_root(release: str, extra_packages: Sequence[str], plain: Path, root: Path, key: str) -> Path:
    """Build the cached roots base_root() returns (its lock held); return the one asked for."""
    if (root / "etc" / "os-release").exists():
        return root
    # A base root without the extras (the same debootstrap for every dependency list) is kept too.
    if not (plain / ".memsched-pid1-complete").exists():
        tmp = CACHE / f"{release}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", release, str(tmp), MIRROR], timeout=1800)
        (tmp / ".memsched-pid1-complete").write_text(release + "\n")
        shutil.rmtree(plain, ignore_errors=True)
        tmp.rename(plain)
    if not extra_packages:
        return plain
    tmp = CACHE / f"{release}-{key}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    _run(["cp", "-a", "--reflink=auto", str(plain), str(tmp)])
    # On trixie a virtual package (libre2) stops debootstrap's --include: apt resolves it.
    name = f"pid1-cache-{os.getpid()}"
    nspawn_offline(tmp, name, "apt-get", "install", "-y", "--no-install-recommends", *extra_packages)
    nspawn_offline(tmp, name, "apt-get", "clean")
    tmp.rename(root)
    return root


def _children(pid: int) -> list[int]:
    """Return the pids of ``pid``'s children (empty once it is gone)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def wait_for(what: str, predicate: Callable[[], object], timeout: float = 60.0, interval: float = 0.2) -> object:
    """Poll ``predicate`` until it returns something truthy; return that. Raises TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Result:
    """What a command run in the machine gave."""

    returncode: int
    stdout: str
    stderr: str

    def json(self) -> object:
        """Return stdout parsed as JSON."""
        return json.loads(self.stdout)


@dataclass
class Machine:
    """One container root with memsched's .deb installed; booted with systemd as PID 1 on demand."""

    release: str
    name: str
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    leader: int | None = None
    boots: int = 0
    console: list[Path] = field(default_factory=list)

    @classmethod
    def create(cls, release: str, deb: Path, name: str) -> Machine:
        """Copy the cached root of ``release``, install ``deb`` in it (not booted); return the machine.

        Raises HarnessError when a step fails."""
        base = base_root(release, deb_depends(deb))
        root = WORK / name
        if root.exists():
            shutil.rmtree(root)
        WORK.mkdir(parents=True, exist_ok=True)
        _run(["cp", "-a", "--reflink=auto", str(base), str(root)])
        shutil.copy(deb, root / "root" / "memsched.deb")
        # Every dependency is in the cached root already: dpkg alone, no network needed.
        nspawn_offline(root, name, "dpkg", "-i", "/root/memsched.deb")
        nspawn_offline(root, name, "useradd", "--create-home", "--shell", "/bin/sh", "stranger")
        return cls(release, name, root)

    # -- lifecycle ------------------------------------------------------------------------------

    def boot(self, timeout: float = 120.0) -> None:
        """Boot the root with systemd as PID 1 and wait until the system is up. Raises HarnessError."""
        assert self.proc is None, "already booted"
        self.boots += 1
        log = WORK / f"{self.name}.console.{self.boots}"
        self.console.append(log)
        env = {"PATH": HOST_PATH, "LANG": "C.UTF-8", "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                ["systemd-nspawn", "--boot", "-D", str(self.root), "-M", self.name, "--register=no", "--keep-unit",
                 "--private-network", "--system-call-filter=bpf", "--console=pipe"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=lambda: enter_cgroup(self.name),
            )
        try:
            self.leader = int(wait_for(f"{self.name}'s PID 1", self._find_leader, timeout=30))  # type: ignore[arg-type]
            state = wait_for(
                f"{self.name} to finish booting",
                lambda: (r := self.run(["systemctl", "is-system-running", "--wait"], timeout=timeout)).stdout.strip() or None,
                timeout=timeout,
            )
        except Exception as exc:
            self.halt()
            raise HarnessError(f"{self.name} did not boot: {exc}\n{log.read_text(errors='replace')[-3000:]}") from exc
        if state not in ("running", "degraded"):
            raise HarnessError(f"{self.name} booted into state {state!r}")

    def _find_leader(self) -> int | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise HarnessError(f"systemd-nspawn exited {self.proc.returncode}")
        # nspawn forks the container's PID 1 (directly, or via an inner child): the first
        # descendant running systemd.
        queue = _children(self.proc.pid)
        while queue:
            pid = queue.pop(0)
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            if exe.endswith("/systemd"):
                return pid
            queue += _children(pid)
        return None

    def halt(self, timeout: float = 60.0) -> None:
        """Stop the container (SIGTERM to nspawn: systemd shuts down) and clean the traces up."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
            self.leader = None
        self._clean_traces()

    def poweroff(self, timeout: float = 60.0) -> None:
        """Power the container off from inside (``systemctl poweroff``) and wait for nspawn to exit."""
        assert self.proc is not None
        self.run(["systemctl", "--no-block", "poweroff"])
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self.halt()

    def reboot(self) -> None:
        """Power off and boot again (the same root, a new boot)."""
        self.poweroff()
        self.boot()

    def destroy(self) -> None:
        """Halt and remove the root copy and its console logs."""
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)
        for log in self.console:
            log.unlink(missing_ok=True)

    def _clean_traces(self) -> None:
        release_cgroups(self.name)
        shutil.rmtree(f"/run/systemd/nspawn/propagate/{self.name}", ignore_errors=True)

    # -- inside ---------------------------------------------------------------------------------

    def run(self, cmd: Sequence[str] | str, user: str | None = None, timeout: float = 120.0, check: bool = False,
            input: str | None = None) -> Result:
        """Run ``cmd`` (argv, or a shell line) inside the booted machine as ``user`` (root by default).

        The environment is clean (PATH, HOME, LANG; USER and the user's XDG_RUNTIME_DIR for others).
        Returns the Result; raises HarnessError when ``check`` and it exits non-zero."""
        assert self.leader is not None, f"{self.name} is not booted"
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        env = [f"PATH={GUEST_PATH}", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"]
        if user and user != "root":
            home = self._passwd(user)
            env += [f"HOME={home[5]}", f"USER={user}", f"LOGNAME={user}"]
            prefix = ["setpriv", f"--reuid={home[2]}", f"--regid={home[3]}", "--init-groups", "--reset-env"]
            argv = [*prefix, "env", "-i", *env, *argv]
        else:
            env += ["HOME=/root", "USER=root"]
        full = ["nsenter", "-t", str(self.leader), "-a", "--", "env", "-i", *env, *argv]
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, input=input, env={"PATH": HOST_PATH})
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise HarnessError(f"in {self.name} as {user or 'root'}: {shlex.join(argv)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return result

    def _passwd(self, user: str) -> list[str]:
        for line in (self.root / "etc" / "passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == user:
                return fields
        raise HarnessError(f"no user {user} in {self.name}")

    def props(self, unit: str, *names: str) -> dict[str, str]:
        """Return the named properties of ``unit`` from the machine's systemd (``systemctl show``)."""
        out = self.run(["systemctl", "show", unit, *[f"--property={n}" for n in names]], check=True).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, *args: str) -> str:
        """Return ``journalctl --no-pager -o cat ARGS`` output of the current boot."""
        return self.run(["journalctl", "--no-pager", "-b", *args], check=True).stdout


def _rmdir_tree(path: Path) -> None:
    """Remove an (empty) cgroup directory and its empty sub-cgroups, deepest first."""
    if not path.is_dir():
        return
    for child in path.iterdir():
        if child.is_dir():
            _rmdir_tree(child)
    try:
        path.rmdir()
    except OSError:
        pass


def run_in(machine: Machine, cmd: Sequence[str] | str, user: str | None = None, **kw: object) -> Result:
    """Run ``cmd`` inside ``machine`` as ``user`` (root by default); return the Result (see Machine.run)."""
    return machine.run(cmd, user=user, **kw)  # type: ignore[arg-type]
