"""Packaging: the wheel carries the templates and units and works in a fresh venv; the Debian package
builds with debhelper + dh-python (pybuild pyproject), passes lintian with no errors, and installs
into a throwaway root where memsched runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _source_tree(dest: Path) -> Path:
    """Copy the project (tracked and new files, no venv, caches or VCS data) into ``dest``."""
    excluded = {".venv", ".git", "__pycache__", ".hypothesis", ".pytest_cache", "_generated", "dist", "build"}
    shutil.copytree(ROOT, dest, ignore=lambda _d, names: [n for n in names if n in excluded or n.endswith(".egg-info")])
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = _source_tree(tmp_path_factory.mktemp("wheel") / "src")
    out = src.parent / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(src)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (built,) = out.glob("memsched-*.whl")
    return built


def test_wheel_carries_templates_units_and_generated_code(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in ("timer.j2", "service.j2", "hardening.j2", "header.j2"):
        assert f"memsched/_data/templates/{template}" in names
    assert "memsched/_data/units/memsched-failure@.service.j2" in names
    assert "memsched/_data/prometheus/memsched.rules.yml" in names
    assert not any(n.startswith("tests/") for n in names)


def test_wheel_in_a_fresh_venv_renders_units(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)], capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-3000:]
    env = {"PATH": f"{venv / 'bin'}:{SYSTEM_PATH}", "HOME": str(tmp_path), "MEMSCHED_SCOPE": "system"}
    version = subprocess.run([str(venv / "bin" / "memsched"), "--version"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("memsched, version ")
    out = tmp_path / "units"
    render = subprocess.run(
        [str(venv / "bin" / "memsched"), "render", "--defaults", "--scope", "system", "--out", str(out)],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert render.returncode == 0, render.stderr
    service = (out / "memsched-toc_rollup_day.service").read_text()
    assert f'ExecStart="{venv / "bin" / "memsched"}" "--system" "exec" "toc_rollup_day"' in service
    assert "ProtectSystem=strict" in service
    # the installed package really runs from the venv, not from this checkout
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import memsched; print(memsched.__file__)"], capture_output=True, text=True, cwd=tmp_path)
    assert str(venv) in where.stdout


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = tmp_path_factory.mktemp("deb")
    src = _source_tree(build / "memsched-0.1.0")
    shutil.copytree(src / "packaging" / "debian", src / "debian")
    env = dict(os.environ, PATH=SYSTEM_PATH, DEB_BUILD_OPTIONS="nocheck")
    for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(key, None)
    proc = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (package,) = build.glob("memsched_*_all.deb")
    return package


def test_deb_contents(deb: Path) -> None:
    listing = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True, check=True).stdout
    for path in (
        "./usr/lib/systemd/system/memsched-toc_rollup_day.timer",
        "./usr/lib/systemd/system/memsched-compaction.service",
        "./usr/lib/systemd/system/memsched-failure@.service",
        "./usr/lib/systemd/system-preset/90-memsched.preset",
        "./usr/lib/sysusers.d/memsched.conf",
        "./usr/lib/tmpfiles.d/memsched.conf",
        "./etc/memsched/memsched.toml",
        "./usr/bin/memsched",
        "./usr/share/bash-completion/completions/memsched",
        "./usr/share/memsched/prometheus/memsched.rules.yml",
    ):
        assert path in listing, path
    conffiles = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True, check=True).stdout
    control = tarfile.open(fileobj=__import__("io").BytesIO(conffiles))
    assert "/etc/memsched/memsched.toml" in control.extractfile("./conffiles").read().decode()
    postinst = control.extractfile("./postinst").read().decode()
    assert "deb-systemd-helper" in postinst and "memsched-toc_rollup_day.timer" in postinst
    assert "systemd-sysusers" in postinst and "systemd-tmpfiles" in postinst


def test_lintian_finds_no_errors(deb: Path) -> None:
    proc = subprocess.run(["lintian", "--no-tag-display-limit", str(deb)], capture_output=True, text=True, env=dict(os.environ, PATH=SYSTEM_PATH))
    errors = [line for line in proc.stdout.splitlines() if line.startswith("E:")]
    assert not errors, proc.stdout


def test_deb_installs_into_a_throwaway_root_and_runs(deb: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "var" / "lib" / "dpkg" / "updates").mkdir(parents=True)
    (root / "var" / "lib" / "dpkg" / "info").mkdir(parents=True)
    (root / "var" / "lib" / "dpkg" / "status").write_text("")
    env = dict(os.environ, PATH=SYSTEM_PATH)
    unpack = subprocess.run(
        ["dpkg", f"--root={root}", "--force-depends", "--force-script-chrootless", "--force-not-root", "--unpack", str(deb)],
        capture_output=True, text=True, env=env,
    )
    assert unpack.returncode == 0, unpack.stderr
    assert (root / "usr/bin/memsched").exists()
    site = root / "usr/lib/python3/dist-packages"
    run_env = {"PATH": SYSTEM_PATH, "PYTHONPATH": str(site), "HOME": str(tmp_path), "MEMSCHED_SCOPE": "system"}
    version = subprocess.run(["/usr/bin/python3", str(root / "usr/bin/memsched"), "--version"], capture_output=True, text=True, env=run_env, cwd=tmp_path)
    assert version.returncode == 0 and "memsched, version 0.1.0" in version.stdout, version.stderr
    config = root / "etc/memsched/memsched.toml.dpkg-new"  # a conffile, only unpacked: not yet under its own name
    assert config.exists(), sorted(p.name for p in config.parent.iterdir())
    render = subprocess.run(
        ["/usr/bin/python3", str(root / "usr/bin/memsched"), "--config", str(config), "render", "--scope", "system", "--memsched-path", "/usr/bin/memsched"],
        capture_output=True, text=True, env=run_env, cwd=tmp_path,
    )
    assert render.returncode == 0, render.stderr
    assert "### memsched-toc_rollup_day.timer" in render.stdout
    rendered = render.stdout.replace(str(config), "/etc/memsched/memsched.toml")
    for unit in ("memsched-toc_rollup_day.service", "memsched-toc_rollup_day.timer", "memsched-failure@.service"):
        shipped = (root / "usr/lib/systemd/system" / unit).read_text()
        assert '"--config" "/etc/memsched/memsched.toml"' in shipped or unit.endswith(".timer"), shipped
        assert shipped in rendered, f"{unit}: the package's units are what `memsched render --scope system` gives with the shipped config"
