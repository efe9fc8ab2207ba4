"""Rendered units: systemd-analyze verify clean, security <= 2.0 in system scope, escaping that cannot be escaped."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from memsched.config.load import load_config, parse_config
from memsched.errors import ConfigError
from memsched.systemd.render import (
    RenderContext,
    RenderError,
    exec_arg,
    local_systemd_version,
    memsched_command,
    render_all,
    unit_text,
)
from memsched.systemd.names import job_of_unit
from memsched_testing import command_job, write_config

EVERY_OPTION = {
    "toc_rollup_day": {"timezone": "Europe/Berlin", "fixed_random_delay": True, "memory_max": "512M", "cpu_quota": "50%"},
    "compaction": {"overlap": "queue", "catch_up": False},
    "prune": command_job(
        ["/bin/echo", "100%", "$HOME", "a b"],
        cron="*/5 * * * *",
        jitter="30s",
        timeout="10min",
        nice=5,
        io_class="best-effort",
        description="prune the index",
    ),
    "burst": command_job(["/bin/true"], overlap="concurrent", memory_max="10%"),
    "quartz": command_job(["/bin/true"], cron="0 0 12 LW * ?", overlap="skip"),
}


def _render(config_path: Path | None, raw: dict | None, scope: str, version: int = 252) -> list:
    config = load_config(config_path) if config_path else parse_config(raw or {})
    return render_all(config, RenderContext(scope, memsched_command(), config.source, version))


def _write(units: list, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for unit in units:
        path = directory / unit.name
        path.write_text(unit.content)
        paths.append(path)
    return paths


def _verify(paths: list[Path], scope: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    args = ["systemd-analyze", "--man=no"]
    if scope == "user":
        args.append("--user")
    # Only concrete units are verified; a template (foo@.service) is checked through an instance of it.
    targets = []
    for p in paths:
        if p.name.endswith("@.service"):
            instance = p.with_name(p.name.replace("@.", "@verify."))
            if not instance.exists():
                instance.symlink_to(p.name)
            targets.append(str(instance))
        else:
            targets.append(str(p))
    env = {"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(tmp_path), "SYSTEMD_LOG_LEVEL": "notice"}
    return subprocess.run([*args, "verify", *targets], capture_output=True, text=True, env=env, cwd=paths[0].parent)


@pytest.mark.parametrize("scope", ["user", "system"])
def test_default_config_units_verify_without_warnings(scope: str, tmp_path: Path) -> None:
    paths = _write(_render(None, {}, scope), tmp_path / "units")
    assert {p.name for p in paths} >= {"memsched-toc_rollup_day.timer", "memsched-compaction.service", "memsched-failure@.service"}
    proc = _verify(paths, scope, tmp_path)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stderr


@pytest.mark.parametrize("scope", ["user", "system"])
@pytest.mark.parametrize("version", [252, 257])
def test_every_option_units_verify_without_warnings(scope: str, version: int, tmp_path: Path) -> None:
    config = write_config(tmp_path, EVERY_OPTION, defaults=True)
    units = _render(config, None, scope, version)
    names = {u.name for u in units}
    assert {"memsched-burst.service", "memsched-burst@.service", "memsched-quartz.timer"} <= names
    paths = _write(units, tmp_path / "units")
    if version <= local_systemd_version():
        proc = _verify(paths, scope, tmp_path)
        assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stderr
    # else: rendered for a newer systemd than this machine's (252); the text is checked below instead
    texts = {u.name: u.content for u in units}
    day_timer = texts["memsched-toc_rollup_day.timer"]
    assert "OnCalendar=*-*-* 01:00:00 Europe/Berlin" in day_timer
    assert "RandomizedDelaySec=300s" in day_timer and "FixedRandomDelay=yes" in day_timer
    assert "AccuracySec=1s" in day_timer and "Persistent=yes" in day_timer and "WantedBy=timers.target" in day_timer
    assert "Persistent=no" in texts["memsched-compaction.timer"]
    quartz = texts["memsched-quartz.timer"]
    assert quartz.count("OnCalendar=") == 2  # LW needs two lines
    day = texts["memsched-toc_rollup_day.service"]
    for line in ("Type=oneshot", "TimeoutStartSec=1800s", "NotifyAccess=main", "SyslogIdentifier=memsched-toc_rollup_day",
                 "LogExtraFields=MEMSCHED_JOB=toc_rollup_day", "OnFailure=memsched-failure@toc_rollup_day.service",
                 "MemoryMax=512M", "CPUQuota=50%"):
        assert line in day, line
    compaction = texts["memsched-compaction.service"]
    assert "Nice=10" in compaction and "IOSchedulingClass=idle" in compaction
    # skip: an ExecCondition gate before 257, DeferReactivation= from 257 on
    if version >= 257:
        assert "DeferReactivation=yes" in day_timer and "ExecCondition=" not in day
    else:
        assert "DeferReactivation" not in day_timer and '"exec" "--gate" "toc_rollup_day"' in day
    assert "ExecCondition=" not in compaction  # queue: systemd's own behaviour
    burst = texts["memsched-burst.service"]
    assert '"exec" "--spawn" "burst"' in burst
    assert '"exec" "burst" "--instance" "%i"' in texts["memsched-burst@.service"]
    if scope == "system":
        assert "User=memsched" in day and "StateDirectory=memsched" in day and "ProtectSystem=strict" in day
    else:
        assert "User=" not in day


def test_system_services_score_2_or_lower(tmp_path: Path) -> None:
    config = write_config(tmp_path, EVERY_OPTION, defaults=True)
    paths = _write(_render(config, None, "system"), tmp_path / "units")
    services = [p for p in paths if p.name.endswith(".service")]
    assert len(services) >= 8
    for path in services:
        proc = subprocess.run(
            ["systemd-analyze", "security", "--offline=true", "--threshold=20", "--no-pager", str(path)],
            capture_output=True, text=True, cwd=path.parent,
        )
        last = proc.stdout.strip().splitlines()[-1]
        score = float(last.split("level for")[1].split(":")[1].split()[0])
        assert proc.returncode == 0 and score <= 2.0, (path.name, last)


def test_job_names_map_back_to_jobs() -> None:
    assert job_of_unit("memsched-toc_rollup_day.timer") == "toc_rollup_day"
    assert job_of_unit("memsched-burst@t-2026.service") == "burst"
    assert job_of_unit("memsched-failure@x.service") is None
    assert job_of_unit("other.service") is None


@pytest.mark.parametrize(
    "value,expected",
    [
        ("plain", '"plain"'),
        ("100%", '"100%%"'),
        ("$HOME", '"$$HOME"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("a;b", '"a;b"'),
        ("ünïcødé ✓", '"ünïcødé ✓"'),
        ("it's", '"it\'s"'),
    ],
)
def test_exec_arguments_are_quoted_and_escaped(value: str, expected: str) -> None:
    assert exec_arg(value) == expected


@pytest.mark.parametrize("value", ["a\nExecStart=/bin/evil", "tab\there", "nul\x00", "esc\x1b[0m", "del\x7f"])
def test_control_characters_never_reach_a_unit(value: str) -> None:
    with pytest.raises(RenderError):
        exec_arg(value)
    with pytest.raises(RenderError):
        unit_text(value)


def test_trailing_backslash_cannot_continue_a_line() -> None:
    with pytest.raises(RenderError, match="backslash"):
        unit_text("text\\")
    assert unit_text("50% done") == "50%% done"


def test_config_values_that_would_inject_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="jobs.x.description"):
        parse_config({"jobs": {"x": command_job(["/bin/true"], description="ok\n[Service]\nExecStartPre=/bin/evil")}})
    with pytest.raises(ConfigError, match="jobs.x.command"):
        parse_config({"jobs": {"x": command_job(["/bin/true", "arg\nExecStart=/bin/evil"])}})
    with pytest.raises(ConfigError, match="jobs.x.memory_max"):
        parse_config({"jobs": {"x": command_job(["/bin/true"], memory_max="1G\nExecStart=/bin/evil")}})
    bad_dir = tmp_path / "new\nline"
    bad_dir.mkdir()
    config_path = bad_dir / "memsched.toml"
    config_path.write_text("")
    with pytest.raises(RenderError, match="control character"):
        _render(config_path, None, "user")


def test_description_with_specials_renders_literally(tmp_path: Path) -> None:
    units = _render(None, {"jobs": {"x": command_job(["/bin/true"], description='50% of "$HOME" ; ünï')}}, "user")
    service = next(u for u in units if u.name == "memsched-x.service").content
    assert 'Description=50%% of "$HOME" ; ünï' in service
