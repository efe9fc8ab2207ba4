"""install-units --system refuses (exit 2, one line naming the setting and the path, nothing
changed) an executable, config, store, registry or metrics path the hardening of system-scope
units would hide (ProtectHome=, PrivateTmp=) or keep read-only (ProtectSystem=strict), instead of
installing units that fail at run time (203/EXEC for a virtualenv under /root); a path the
hardening allows (a store in an existing directory outside /var/lib) installs, opened for writing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import Machine

VENV = "/root/venv"


def _installed(machine: Machine) -> list[str]:
    return sorted(p.name for p in (machine.root / "etc/systemd/system").glob("memsched*"))


@pytest.fixture
def restored(machine: Machine) -> Iterator[Machine]:
    """The shared machine; whatever a test installs into /etc/systemd/system is removed after it."""
    before = _installed(machine)
    assert before == [], before
    try:
        yield machine
    finally:
        machine.run(f"rm -rf {VENV} /etc/memsched/alt.toml /srv/mem /root/memsched.toml", check=True)
        if _installed(machine):
            machine.run("rm -f /etc/systemd/system/memsched* && systemctl daemon-reload", check=True)
            machine.run("systemctl restart 'memsched-*.timer'", check=True)


ALT = "/etc/memsched/alt.toml"


def test_refuses_paths_the_hardening_hides_or_keeps_read_only(restored: Machine) -> None:
    m = restored
    # memsched in a virtualenv under /root: its executable and interpreter are hidden by ProtectHome=.
    m.run(f"python3 -m venv --without-pip --system-site-packages {VENV} && sed '1s|.*|#!{VENV}/bin/python|' /usr/bin/memsched > {VENV}/bin/memsched && chmod 755 {VENV}/bin/memsched", check=True)
    m.run("cp /etc/memsched/memsched.toml /root/memsched.toml", check=True)
    alt = ["memsched", "--config", ALT, "install-units", "--system"]
    cases = [
        ([f"{VENV}/bin/memsched", "install-units", "--system"], None, "ProtectHome=yes", f"the memsched executable {VENV}/bin/memsched"),
        (["memsched", "--config", "/root/memsched.toml", "install-units", "--system"], None, "ProtectHome=yes", "the config /root/memsched.toml"),
        (alt, '[store]\npath = "/tmp/memory.db"\n', "PrivateTmp=yes", "store.path /tmp/memory.db"),
        (alt, '[registry]\npath = "/srv/none/registry.db"\n', "ProtectSystem=strict", "registry.path /srv/none/registry.db"),
        ([*alt, "--dry-run"], '[metrics]\ntextfile = "/home/stranger/memsched.prom"\n', "ProtectHome=yes", "metrics.textfile /home/stranger/memsched.prom"),
    ]
    for argv, config, setting, named in cases:
        if config is not None:
            m.run(["sh", "-c", f"cat > {ALT}"], input=config, check=True)
        out = m.run(argv)
        assert out.returncode == 2, f"{argv}: exit {out.returncode}: {out.stdout[-500:]}{out.stderr}"
        assert setting in out.stderr and named in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr, out.stderr
        assert _installed(m) == [], f"{argv} changed /etc/systemd/system"


def test_a_store_outside_var_lib_in_an_existing_directory_installs(restored: Machine) -> None:
    m = restored
    m.run("mkdir -p /srv/mem && chown memsched:memsched /srv/mem", check=True)
    m.run(["sh", "-c", f"cat > {ALT}"], input='[store]\npath = "/srv/mem/memory.db"\n', check=True)
    out = m.run(["memsched", "--config", ALT, "install-units", "--system", "--json"], timeout=300)
    assert out.returncode == 0, out.stdout[-1000:] + out.stderr
    # Loaded with the directory opened for writing (a run there also needs a registry the memsched
    # user can write: the access proofs cover that).
    props = m.props("memsched-compaction.service", "ReadWritePaths", "ProtectSystem", "ExecStart")
    assert props["ReadWritePaths"] == "/srv/mem" and props["ProtectSystem"] == "strict", props
    assert ALT in props["ExecStart"], props
