"""The README's test command on a fresh machine of each release: in a freshly debootstrapped root
(nothing but the minimal base), `./scripts/test` sets up everything the suite needs before it runs
it — the packaging tools (its packaging tests build and lint the .deb), the Python headers pystemd
builds against (a fresh Debian 13 has none), debootstrap and systemd-nspawn for this suite — and
the packaging tests then pass there. (The rest of the suite needs a systemd manager and runs on the
host; this proves what a fresh machine lacks.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import CACHE, RELEASES, WORK, _source_tree, base_root, nspawn_offline

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_scripts_test_sets_up_a_fresh_machine_and_the_packaging_tests_pass(release: str) -> None:
    name = f"m{os.getpid()}-{release}-fresh"
    root = WORK / name
    shutil.rmtree(root, ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    # Downloads are kept between sessions (apt's archive, pip's cache): the packages are the same.
    apt_cache, pip_cache = CACHE / f"{release}-apt-archives", CACHE / f"{release}-pip-cache"
    for d in (apt_cache / "partial", pip_cache):
        d.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["cp", "-a", "--reflink=auto", str(base_root(release)), str(root)], check=True)
        _source_tree(root / "root" / "memsched")
        out = nspawn_offline(
            root, name, "sh", "-c", "./scripts/test -q -x -p no:cacheprovider tests/test_packaging.py",
            cwd="/root/memsched", check=False, timeout=1500,
            binds=[(apt_cache, "/var/cache/apt/archives"), (pip_cache, "/root/.cache/pip")], **_host_trust(),
        )
        assert out.returncode == 0, f"./scripts/test on a fresh {release}:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
        assert " passed" in out.stdout and "skipped" not in out.stdout, out.stdout[-2000:]
        tools = nspawn_offline(root, name, "sh", "-c", "for t in debootstrap systemd-nspawn dpkg-buildpackage lintian; do command -v $t || exit 1; done; .venv/bin/python -c 'import pystemd'",
                               cwd="/root/memsched", check=False, **_host_trust())
        assert tools.returncode == 0 and len(tools.stdout.split()) == 4, tools.stdout + tools.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _host_trust() -> dict[str, object]:
    """pip's TLS trust for the fresh root: the host's CA bundle, when the host has one.

    Where the host reaches PyPI through a TLS-inspecting proxy, only the host's own bundle trusts
    it; a fresh root (and pip's own certifi) would not. The bundle goes in read-only beside, not
    over, the root's own (its ca-certificates package writes that one)."""
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if not bundle.is_file():
        return {}
    return {"binds_ro": [(bundle, "/etc/memsched-pid1-host-ca.crt")], "env": {"PIP_CERT": "/etc/memsched-pid1-host-ca.crt"}}
