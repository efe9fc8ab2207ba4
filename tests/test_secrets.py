"""The API summarizer's key (issue 12.5): taken from a systemd credential or a file only its owner
reads, refused where others may read it, never printed by `config show`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from memsched.config.secrets import CREDENTIAL_NAME, find_api_key
from memsched_testing import write_config
from systemd_env import SystemdTestEnv
from test_units_install import install

KEY = "sk-test-THIS-IS-THE-SECRET-0123456789"
MEMSCHED = [sys.executable, "-m", "memsched"]


def _run(*args: str, tmp: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = dict(os.environ, MEMSCHED_SCOPE="user", XDG_RUNTIME_DIR=str(tmp))
    base.pop("OPENAI_API_KEY", None)
    return subprocess.run([*MEMSCHED, *args], capture_output=True, text=True, env={**base, **(env or {})})


def _config(tmp: Path, mode: int, **summarizer: object) -> Path:
    config = write_config(tmp, {"toc_rollup_day": {"enabled": True}}, extra={"summarizer": {"kind": "openai", **summarizer}})
    config.chmod(mode)
    return config


def test_config_show_never_prints_the_key(tmp_path: Path) -> None:
    config = _config(tmp_path, 0o600, api_key=KEY)
    for args in (["config", "show"], ["config", "show", "--json"]):
        proc = _run(*args, "--config", str(config), tmp=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert KEY not in proc.stdout + proc.stderr and "[redacted]" in proc.stdout, proc.stdout
    shown = json.loads(_run("config", "show", "--json", "--config", str(config), tmp=tmp_path).stdout)
    assert shown["settings"]["summarizer"]["api_key"] == "[redacted]"


def test_a_key_in_a_config_file_others_may_read_is_refused(tmp_path: Path) -> None:
    config = _config(tmp_path, 0o644, api_key=KEY)
    for args in (["validate"], ["exec", "toc_rollup_day"]):
        proc = _run(*args, "--config", str(config), tmp=tmp_path)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, (args, proc.returncode, out)
        assert "summarizer.api_key" in out and "others may read" in out and "0644" in out, out
        assert KEY not in out, out
    config.chmod(0o600)
    assert _run("validate", "--config", str(config), tmp=tmp_path).returncode == 0


def test_a_key_file_must_be_its_owners_alone(tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o644)
    config = _config(tmp_path, 0o644, api_key_file=str(key_file))
    proc = _run("validate", "--config", str(config), tmp=tmp_path)
    assert proc.returncode == 2 and "summarizer.api_key_file" in proc.stdout and "readable by others" in proc.stdout, proc.stdout
    assert KEY not in proc.stdout + proc.stderr
    key_file.chmod(0o600)
    assert _run("validate", "--config", str(config), tmp=tmp_path).returncode == 0
    settings = {"summarizer": {"kind": "openai", "api_key_file": str(key_file)}}
    found = find_api_key(settings, {})
    assert (found.key, found.source, found.problem) == (KEY, str(key_file), None)


def test_the_credential_comes_first(tmp_path: Path) -> None:
    """What a unit with LoadCredential=memsched-api-key:FILE sees: $CREDENTIALS_DIRECTORY/memsched-api-key."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / CREDENTIAL_NAME).write_text(KEY)
    unreadable = tmp_path / "root-only"  # as the jobs' user would find a root 0600 file: not there for it
    settings = {"summarizer": {"kind": "openai", "api_key_file": str(unreadable), "api_key": "other"}}
    found = find_api_key(settings, {"CREDENTIALS_DIRECTORY": str(credentials), "OPENAI_API_KEY": "env"})
    assert (found.key, found.problem) == (KEY, None) and CREDENTIAL_NAME in found.source


def test_system_units_load_the_key_file_as_a_credential(tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text(KEY)
    key_file.chmod(0o600)
    config = _config(tmp_path, 0o644, api_key_file=str(key_file))
    out = tmp_path / "units"
    proc = _run("render", "--scope", "system", "--out", str(out), "--systemd-version", "252", "--config", str(config), tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    service = (out / "memsched-toc_rollup_day.service").read_text()
    assert f"LoadCredential={CREDENTIAL_NAME}:{key_file}" in service, service
    assert KEY not in "".join(p.read_text() for p in out.iterdir())
    user = tmp_path / "user-units"
    assert _run("render", "--scope", "user", "--out", str(user), "--config", str(config), tmp=tmp_path).returncode == 0
    assert "LoadCredential" not in (user / "memsched-toc_rollup_day.service").read_text()  # a user's jobs read their own file


def test_run_wait_passes_the_key_variable_set_in_the_shell(systemd: SystemdTestEnv, tmp_path: Path) -> None:
    """`memsched run --wait` from a shell with the key in $VAR: the rollup's unit sees it (user scope)."""
    from memsched.ops.memory import ingest
    from memsched.store import open_store
    from memsched.store.sample import generate_events, to_jsonl

    from test_summarize_api_bounds import RawServer, answer, envelope

    variable = f"MEMSCHED_TEST_KEY_{os.getpid()}"
    server = RawServer().then(answer(envelope("openai")))
    try:
        with open_store(tmp_path / "memory.db") as store:
            ingest(store, iter(to_jsonl(generate_events(1_705_276_800_000, 2, seed=1))))
        config = write_config(
            tmp_path, {"roll": {"kind": "rollup", "level": "day", "cron": "0 0 1 1 *", "min_age": "1s"}},
            extra={"store": {"path": str(tmp_path / "memory.db")},
                   "summarizer": {"kind": "openai", "api_key_env": variable, "base_url": server.base + "/v1", "retries": 0}},
        )
        install(systemd, config)
        assert variable not in systemd.systemctl("show-environment").stdout
        proc = subprocess.run([*MEMSCHED, "run", "roll", "--wait", "--config", str(config)], capture_output=True, text=True,
                              timeout=180, env=dict(systemd.env, **{variable: KEY}))
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        assert f"passed ${variable}" in proc.stderr and KEY not in proc.stdout + proc.stderr, proc.stderr
        assert server.requests and server.requests[0][1].get("authorization") == f"Bearer {KEY}", server.requests[:1]
    finally:
        systemd.systemctl("unset-environment", variable, check=False)
        server.close()
