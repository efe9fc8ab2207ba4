"""The per-user cache of decoded config files (memsched.config.rawcache): a start that finds the
file unchanged does not parse TOML; any change, a cache that is not ours, or no runtime directory
means the file is parsed; validation is never skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memsched.config import rawcache
from memsched.config.load import load_config
from memsched.errors import ConfigError

PROBE = "import json, sys; from pathlib import Path; from memsched.config.load import load_config; " \
    "c = load_config(Path(sys.argv[1])); print(json.dumps({'tomllib': 'tomllib' in sys.modules, 'cron': c.jobs['j'].cron}))"


def probe(config: Path, runtime: Path | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    if runtime is not None:
        env["XDG_RUNTIME_DIR"] = str(runtime)
    proc = subprocess.run([sys.executable, "-c", PROBE, str(config)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def write(path: Path, cron: str) -> None:
    path.write_text(f'[jobs.j]\nkind = "command"\ncommand = ["/bin/true"]\ncron = "{cron}"\n')


def test_an_unchanged_file_is_not_parsed_again_and_any_change_is_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    config = tmp_path / "memsched.toml"
    write(config, "0 0 1 * * *")
    assert probe(config, runtime) == {"tomllib": True, "cron": "0 0 1 * * *"}  # just written: parsed, not kept
    assert not (runtime / "memsched").exists()
    aged = config.stat().st_mtime_ns - 5_000_000_000
    os.utime(config, ns=(aged, aged))  # ctime stays "now": still too fresh
    assert probe(config, runtime)["tomllib"] is True
    monkeypatch.setattr(rawcache, "RACY_NS", 0)  # in this process only; the probes below run with the real one
    rawcache.store(str(config), config.stat(), {"jobs": {"j": {"kind": "command", "command": ["/bin/true"], "cron": "0 0 1 * * *"}}})
    assert probe(config, runtime) == {"tomllib": False, "cron": "0 0 1 * * *"}  # unchanged: from the cache
    cache = next((runtime / "memsched").iterdir())
    assert cache.stat().st_mode & 0o777 == 0o600 and (runtime / "memsched").stat().st_mode & 0o777 == 0o700
    # an edit of the same size that keeps the mtime still misses (ctime and inode data change)
    st = config.stat()
    write(config, "0 0 2 * * *")
    os.utime(config, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert probe(config, runtime) == {"tomllib": True, "cron": "0 0 2 * * *"}
    # without a runtime directory nothing is cached, and the answer is the same
    assert probe(config, None) == {"tomllib": True, "cron": "0 0 2 * * *"}


def test_a_cache_others_may_write_is_ignored_and_validation_is_never_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    config = tmp_path / "memsched.toml"
    write(config, "0 0 1 * * *")
    monkeypatch.setattr(rawcache, "RACY_NS", 0)
    load_config(config)
    (cache,) = (runtime / "memsched").iterdir()
    st = config.stat()
    # a planted table under the right key, in a file others may write: not believed
    rawcache.store(str(config), st, {"jobs": {"j": {"kind": "command", "command": ["/bin/evil"], "cron": "* * * * *"}}})
    cache.chmod(0o622)
    assert list(load_config(config).jobs["j"].command) == ["/bin/true"]
    # a cached table is validated like a file just read
    cache.chmod(0o600)
    rawcache.store(str(config), st, {"jobs": {"j": {"kind": "command", "command": ["/bin/true"], "cron": "61 * * * *"}}})
    with pytest.raises(ConfigError, match="jobs.j.cron"):
        load_config(config)


def test_a_file_marshal_cannot_hold_is_parsed_every_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    config = tmp_path / "memsched.toml"
    monkeypatch.setattr(rawcache, "RACY_NS", 0)
    config.write_text('x = 1979-05-27T07:32:00Z\n[jobs.j]\nkind = "command"\ncommand = ["/bin/true"]\ncron = "0 0 1 * * *"\n')
    with pytest.raises(ConfigError):  # an unknown top-level key: refused whether cached or not
        load_config(config)
    assert not (runtime / "memsched").exists() or not list((runtime / "memsched").glob("*.marshal"))
