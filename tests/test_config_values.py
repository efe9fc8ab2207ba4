"""The rule of each kind of value (memsched.config.values, memsched.config.durations): the values
issue 13 found accepted by `validate` but ignored, rejected or read differently by systemd, each
refused with its key; and what is accepted reads as systemd reads it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from memsched.config import values
from memsched.config.durations import parse_duration_ms
from memsched.config.load import load_config, parse_config
from memsched.errors import ConfigError
from memsched_testing import command_job, write_config

MEMSCHED = [sys.executable, "-m", "memsched"]
CMD = command_job(["/bin/true"], cron="0 0 * * *")


def refused(raw: dict, key: str) -> str:
    """Assert that ``raw`` is refused with a problem at ``key``; return that problem's message."""
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    problems = dict(caught.value.problems)
    assert key in problems, caught.value.problems
    return problems[key]


def job(**keys: object) -> dict:
    return {"jobs": {"x": {**CMD, **keys}}}


@pytest.mark.parametrize("key", ["jitter", "accuracy", "timeout"])
@pytest.mark.parametrize(
    "value,why",
    [
        (float("inf"), "finite"),
        (float("nan"), "finite"),
        (1e300, "maximum"),
        ("99999999999999999999 weeks", "maximum"),
        ("1M", "month"),
        ("5MIN", "unknown unit"),
        ("1.5ms", "fraction of a millisecond"),
        (0.0005, "fraction of a millisecond"),
        ("250us", "finer"),
        ("٣s", "not a duration"),
        (-1, "negative"),
        (10**5000, "maximum"),
    ],
    ids=lambda v: repr(v)[:30] if not isinstance(v, int) or v < 10**30 else "huge-int",
)
def test_bad_job_durations_are_refused_naming_the_key(key: str, value: object, why: str) -> None:
    assert why in refused(job(**{key: value}), f"jobs.x.{key}")


@pytest.mark.parametrize(
    "section,key", [("store", "busy_timeout"), ("summarizer", "timeout"), ("alerts", "timeout"), ("facade", "idle_timeout"), ("facade", "watchdog"), ("facade", "drain_timeout")]
)
def test_bad_global_durations_are_refused_naming_the_key(section: str, key: str) -> None:
    for value in (float("inf"), float("nan"), "1M", 1e300):
        refused({section: {key: value}}, f"{section}.{key}")


def test_busy_timeout_stays_within_what_sqlite_takes() -> None:
    # SQLite's busy timeout is an int of milliseconds: 25 days would wrap to "do not wait".
    assert "maximum" in refused({"store": {"busy_timeout": "25d"}}, "store.busy_timeout")
    assert parse_config({"store": {"busy_timeout": "1d"}}).settings["store"]["busy_timeout"] == 86_400_000


@pytest.mark.parametrize(
    "text,ms",
    [(300, 300_000), (0.001, 1), ("5min", 300_000), ("5 min", 300_000), ("1h 30min", 5_400_000), ("1h30min", 5_400_000),
     ("250ms", 250), ("2m", 120_000), ("1y", 31_557_600_000), ("1month", 2_629_800_000), ("1w 1d", 691_200_000), ("90", 90_000)],
)
def test_durations_read_as_systemd_reads_them(text: object, ms: int) -> None:
    assert parse_duration_ms(text) == ms


def test_durations_agree_with_systemd_analyze_timespan() -> None:
    """systemd-analyze timespan is systemd's own parse_time(): every text form we accept means the same there."""
    for text in ("5min", "1h 30min", "250ms", "2m", "1month", "1y", "1w 1d", "1.5s", "90"):
        out = subprocess.run(["systemd-analyze", "timespan", text], capture_output=True, text=True, check=True).stdout
        usec = next(line.split(":", 1)[1].strip() for line in out.splitlines() if "μs:" in line)
        assert int(usec) == parse_duration_ms(text) * 1000, (text, out)


@pytest.mark.parametrize(
    "value", ["0", "0%", "101%", "0.001%", "18446744073709551615", "99999999999999999999999T", "١٢", "1e3", "0.0001K", "512m", "-1", ""]
)
def test_memory_max_values_systemd_ignores_are_refused(value: str) -> None:
    refused(job(memory_max=value), "jobs.x.memory_max")


@pytest.mark.parametrize("value", ["0%", "0.001%", "٥٠%", "50", "-5%", "1.5.5%"])
def test_cpu_quota_values_systemd_ignores_are_refused(value: str) -> None:
    refused(job(cpu_quota=value), "jobs.x.cpu_quota")


def test_sizes_count_bytes_as_systemd_does() -> None:
    assert values.size_bytes("1.5G") == 1_610_612_736
    assert values.size_bytes("0.5K") == 512
    assert values.size_bytes("18446744073709551614") == 2**64 - 2
    assert values.permyriad("12.34%") == 1234 and values.permyriad("0.01%") == 1 and values.permyriad("5.5%") == 550
    for ok in ("1", "512M", "1.5G", "100%", "0.01%", "infinity", "18446744073709551614"):
        assert parse_config(job(memory_max=ok)).jobs["x"].memory_max == ok


def test_job_name_with_a_final_newline_is_refused() -> None:
    assert "unit name" in refused({"jobs": {"x\n": CMD}}, '"jobs"."x\\n"'.replace('"jobs".', "jobs."))


@pytest.mark.parametrize(
    "description", ["ends with a backslash\\", " leading", "trailing ", "x" * 2049, "é" * 1025, "x" * 1_000_000], ids=lambda v: repr(v)[:20]
)
def test_descriptions_systemd_would_change_are_refused(description: str) -> None:
    refused(job(description=description), "jobs.x.description")


def test_a_long_description_within_the_limit_is_kept() -> None:
    text = "ü" * 1024  # 2048 bytes
    assert parse_config(job(description=text)).jobs["x"].description == text


@pytest.mark.parametrize("group", ["-", "a;b", "$(x)", "a\\", "a:b", "a b", "65535", "4294967295", "007", "x" * 32, "Ä"])
def test_facade_groups_systemd_refuses_or_warns_about_are_refused(group: str) -> None:
    refused({"facade": {"group": group}}, "facade.group")


@pytest.mark.parametrize("group", ["adm", "_memsched", "systemd-journal", "0", "1000"])
def test_valid_facade_groups(group: str) -> None:
    assert parse_config({"facade": {"group": group}}).settings["facade"]["group"] == group


@pytest.mark.parametrize(
    "listen,why",
    [("http://x", "expected unix:PATH"), ("tcp:localhost:50051", "no host names"), ("tcp:127.1:50051", "IPv4"),
     ("tcp:[fe80::1%lo]:5", "zone"), ("unix:relative.sock", "must be absolute"), ("unix:/run//x.sock", "normalized"),
     ("unix:/run/" + "a" * 110, "108 bytes"), ("tcp:127.0.0.1:0", "port")],
)
def test_listen_addresses_systemd_cannot_listen_on_are_refused(listen: str, why: str) -> None:
    assert why in refused({"facade": {"listen": listen, "token_file": "/etc/memsched/token"}}, "facade.listen")


def test_facade_rules_that_need_two_keys_are_config_problems() -> None:
    assert "token_file" in refused({"facade": {"listen": "tcp:127.0.0.1:50051"}}, "facade.listen")
    assert "allow_remote" in refused({"facade": {"listen": "tcp:0.0.0.0:50051", "token_file": "/t"}}, "facade.listen")
    assert "clash" in refused({"facade": {"enabled": True}, "jobs": {"grpc": CMD}}, "jobs.grpc")
    parse_config({"facade": {"enabled": False}, "jobs": {"grpc": CMD}})  # no facade: the name is free


def test_the_documented_empty_alert_command_is_accepted() -> None:
    assert parse_config({"alerts": {"on_failure": []}}).settings["alerts"]["on_failure"] == ()
    refused(job(command=[]), "jobs.x.command")


@pytest.mark.parametrize(
    "section,key,value",
    [("registry", "path", "relative.db"), ("metrics", "textfile", "out.prom"), ("facade", "token_file", "token"),
     ("store", "path", "/srv/" + "x" * 256 + "/m.db"), ("summarizer", "base_url", "ftp://x"), ("summarizer", "api_key_env", "1BAD")],
)
def test_paths_and_names_the_jobs_cannot_use_are_refused(section: str, key: str, value: str) -> None:
    refused({section: {key: value}}, f"{section}.{key}")


def test_store_path_may_be_relative() -> None:
    assert parse_config({"store": {"path": "data/../memory.db"}}).settings["store"]["path"] == "data/../memory.db"


def test_program_paths_systemd_cannot_run() -> None:
    for bad in ('/x/"q"/memsched', "/x/it's/memsched", "/x/back\\slash/m", "relative/memsched", "/x//memsched", "/x/dir/"):
        with pytest.raises(ValueError):
            values.check_program_path(bad)
    assert values.check_program_path("/x/b$x/50%/ü memsched") == "/x/b$x/50%/ü memsched"


@pytest.mark.parametrize(
    "document",
    ["a = " + "[" * 1000 + "]" * 1000, "[jobs.x]\njitter = " + "1" * 5000, "[jobs.x]\njitter = 1e400", "x = {" + "a = {" * 600 + "}" * 601],
    ids=["deep-arrays", "5000-digits", "1e400", "deep-tables"],
)
def test_hostile_toml_is_a_config_error_not_a_crash(document: str, tmp_path: Path) -> None:
    path = tmp_path / "memsched.toml"
    path.write_text(document)
    with pytest.raises(ConfigError):
        load_config(path)
    proc = subprocess.run([*MEMSCHED, "validate", "--config", str(path)], capture_output=True, text=True, env=dict(os.environ, MEMSCHED_SCOPE="user"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr


def _venv_in(directory: Path) -> Path:
    """A Python environment like the suite's own, living in ``directory``; return its python."""
    real = Path(sys.prefix)
    (directory / "bin").mkdir(parents=True)
    (directory / "pyvenv.cfg").write_text((real / "pyvenv.cfg").read_text())
    (directory / "lib").symlink_to(real / "lib")
    python = directory / "bin" / "python"
    python.symlink_to(Path(sys.base_prefix) / "bin" / Path(sys.executable).name)
    return python


def test_validate_refuses_what_render_refuses(tmp_path: Path) -> None:
    """A unit value only render can judge (memsched installed under a path with a quote, which systemd
    refuses in a program) is refused by validate too, exit 2."""
    python = _venv_in(tmp_path / "it's")
    config = write_config(tmp_path, {"x": CMD})
    env = dict(os.environ, MEMSCHED_SCOPE="user", XDG_RUNTIME_DIR=str(tmp_path), PATH="/usr/bin:/bin")
    validate = subprocess.run([str(python), "-m", "memsched", "validate", "--config", str(config)], capture_output=True, text=True, env=env)
    render = subprocess.run([str(python), "-m", "memsched", "render", "--config", str(config)], capture_output=True, text=True, env=env)
    assert render.returncode == 2 and "the program" in render.stderr, render.stderr
    assert validate.returncode == 2 and "the program" in validate.stdout, (validate.stdout, validate.stderr)


def test_validate_refuses_an_api_summarizer_without_a_key(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"x": CMD}, extra={"summarizer": {"kind": "openai", "api_key_env": "MEMSCHED_TEST_NO_SUCH_KEY"}})
    env = dict(os.environ, MEMSCHED_SCOPE="user", XDG_RUNTIME_DIR=str(tmp_path))
    env.pop("MEMSCHED_TEST_NO_SUCH_KEY", None)
    proc = subprocess.run([*MEMSCHED, "validate", "--config", str(config)], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "summarizer.api_key" in proc.stdout and "MEMSCHED_TEST_NO_SUCH_KEY" in proc.stdout, proc.stdout
    # exec of a rollup with that config: exit 2 (an invalid config), as docs/exit-codes.md says, not 1 (a failed run)
    rollup = subprocess.run([*MEMSCHED, "exec", "toc_rollup_day", "--config", str(config)], capture_output=True, text=True, env=env)
    assert rollup.returncode == 2 and "summarizer.api_key" in rollup.stderr, (rollup.returncode, rollup.stderr)
    keyed = dict(env, MEMSCHED_TEST_NO_SUCH_KEY="k")
    assert subprocess.run([*MEMSCHED, "validate", "--config", str(config)], capture_output=True, text=True, env=keyed).returncode == 0
