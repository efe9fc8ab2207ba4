"""Config: defaults reproduce the original jobs, discovery order, and every error names its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from memsched.config import schema
from memsched.config.docs import defaults_toml, reference_markdown
from memsched.config.durations import parse_duration_ms
from memsched.config.load import find_config, load_config, parse_config, resolve_scope
from memsched.errors import ConfigError, UsageError


def test_defaults_reproduce_the_original_jobs() -> None:
    config = parse_config({})
    jobs = config.jobs
    assert list(jobs) == ["toc_rollup_day", "toc_rollup_week", "toc_rollup_month", "toc_rollup_year", "compaction", "store_verify"]
    day = jobs["toc_rollup_day"]
    assert (day.kind, day.level, day.cron, day.timezone) == ("rollup", "day", "0 0 1 * * *", "UTC")
    assert (day.jitter, day.timeout, day.overlap, day.catch_up, day.enabled) == (300_000, 1_800_000, "skip", True, True)
    assert jobs["toc_rollup_week"].cron == "0 0 2 * * 1"  # Monday 02:00 (issue 11.8; the original had Sunday)
    assert jobs["toc_rollup_month"].cron == "0 0 3 1 * *"
    compaction = jobs["compaction"]
    assert (compaction.kind, compaction.cron, compaction.jitter, compaction.timeout) == ("compaction", "0 0 4 * * 0", 600_000, 3_600_000)
    assert (compaction.nice, compaction.io_class) == (10, "idle")
    verify = jobs["store_verify"]  # the whole store, monthly, with its own timeout (issue 17)
    assert (verify.kind, verify.cron, verify.timeout, verify.nice, verify.io_class) == ("verify", "0 0 6 1 * *", 14_400_000, 10, "idle")
    assert jobs["toc_rollup_year"].level == "year"
    # a month must be rolled at the first run after it closes (03:00 on the 1st), so min_age < 3h
    assert jobs["toc_rollup_month"].min_age is not None and jobs["toc_rollup_month"].min_age < 3 * 3_600_000
    assert all(j.overlap == "skip" and j.timezone == "UTC" for j in jobs.values())


def test_default_week_rollup_rolls_each_iso_week_two_hours_after_it_closes() -> None:
    """An ISO week ends Sunday 24:00 UTC; the default week rollup's next run (systemd's own
    calendar) after that instant is Monday 02:00, and by then the week is past its min_age,
    so the run rolls it. With the original Sunday 02:00 the week waited about six days."""
    from datetime import datetime, timedelta, timezone

    from memsched.store.periods import week_period
    from memsched.systemd.analyze import calendar_next

    week = parse_config({}).jobs["toc_rollup_week"]
    for iso_year, iso_week in ((2026, 49), (2026, 53), (2027, 13), (2027, 44)):  # incl. year and month crossings
        end_ms = week_period(iso_year, iso_week).end_ms
        closes = datetime.fromtimestamp((end_ms + 1) / 1000, timezone.utc)
        assert closes.weekday() == 0 and closes.hour == 0
        (first_run,) = calendar_next(list(week.on_calendar), closes - timedelta(seconds=1), 1)
        assert first_run - closes == timedelta(hours=2), (iso_year, iso_week, first_run)
        assert week.min_age is not None and end_ms <= first_run.timestamp() * 1000 - week.min_age


def test_file_overrides_default_job_key_by_key_and_adds_jobs(tmp_path: Path) -> None:
    path = tmp_path / "memsched.toml"
    path.write_text(
        """
[jobs.toc_rollup_day]
cron = "0 30 1 * * *"
timezone = "Europe/Berlin"
jitter = "1min"

[jobs.compaction]
enabled = false

[jobs.prune]
kind = "command"
cron = "*/5 * * * *"
command = ["/usr/bin/true", "--flag"]
overlap = "queue"
memory_max = "64M"
cpu_quota = "50%"
"""
    )
    config = load_config(path)
    day = config.jobs["toc_rollup_day"]
    assert (day.cron, day.timezone, day.jitter, day.level, day.timeout) == ("0 30 1 * * *", "Europe/Berlin", 60_000, "day", 1_800_000)
    assert day.on_calendar == ("*-*-* 01:30:00 Europe/Berlin",)
    assert not config.jobs["compaction"].enabled
    assert "compaction" not in config.enabled_jobs
    prune = config.jobs["prune"]
    assert prune.command == ("/usr/bin/true", "--flag")
    assert (prune.overlap, prune.memory_max, prune.cpu_quota, prune.nice) == ("queue", "64M", "50%", None)
    assert config.source == path


def _problems(raw: dict) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return info.value.problems


BAD = [
    ({"bogus": 1}, "bogus", "unknown key"),
    ({"jobs": 3}, "jobs", "expected a table of jobs"),
    ({"jobs": {"toc_rollup_day": {"cron": 5}}}, "jobs.toc_rollup_day.cron", "expected a string"),
    ({"jobs": {"toc_rollup_day": {"cron": "61 * * * *"}}}, "jobs.toc_rollup_day.cron", "out of range 0-59"),
    ({"jobs": {"toc_rollup_day": {"cron": "H * * * *"}}}, "jobs.toc_rollup_day.cron", "Jenkins 'H'"),
    ({"jobs": {"toc_rollup_day": {"timezone": "Mars/Base"}}}, "jobs.toc_rollup_day.timezone", "not an IANA time zone"),
    ({"jobs": {"toc_rollup_day": {"timezone": "EST5EDT,M3.2.0,M11.1.0"}}}, "jobs.toc_rollup_day.timezone", "not an IANA"),
    ({"jobs": {"toc_rollup_day": {"timezone": "localtime"}}}, "jobs.toc_rollup_day.timezone", "not an IANA"),
    ({"jobs": {"toc_rollup_day": {"timezone": "right/UTC"}}}, "jobs.toc_rollup_day.timezone", "not an IANA"),
    ({"jobs": {"toc_rollup_day": {"timezone": "../../etc/passwd"}}}, "jobs.toc_rollup_day.timezone", "not an IANA"),
    ({"jobs": {"toc_rollup_day": {"jitter": "soon"}}}, "jobs.toc_rollup_day.jitter", "not a duration"),
    ({"jobs": {"toc_rollup_day": {"jitter": -5}}}, "jobs.toc_rollup_day.jitter", "must not be negative"),
    ({"jobs": {"toc_rollup_day": {"jitter": True}}}, "jobs.toc_rollup_day.jitter", "expected seconds"),
    ({"jobs": {"toc_rollup_day": {"timeout": 0}}}, "jobs.toc_rollup_day.timeout", "longer than 0"),
    ({"jobs": {"toc_rollup_day": {"overlap": "maybe"}}}, "jobs.toc_rollup_day.overlap", "expected one of skip, queue, concurrent"),
    ({"jobs": {"toc_rollup_day": {"catch_up": "yes"}}}, "jobs.toc_rollup_day.catch_up", "expected true or false"),
    ({"jobs": {"toc_rollup_day": {"level": "decade"}}}, "jobs.toc_rollup_day.level", "expected one of day, week, month, year"),
    ({"jobs": {"toc_rollup_day": {"frob": 1}}}, "jobs.toc_rollup_day.frob", "unknown key"),
    ({"jobs": {"toc_rollup_day": {"command": ["/bin/true"]}}}, "jobs.toc_rollup_day.command", "only applies to kind = 'command'"),
    ({"jobs": {"toc_rollup_day": {"nice": 40}}}, "jobs.toc_rollup_day.nice", "from -20 to 19"),
    ({"jobs": {"toc_rollup_day": {"memory_max": "lots"}}}, "jobs.toc_rollup_day.memory_max", "expected bytes"),
    ({"jobs": {"toc_rollup_day": {"cpu_quota": "0.5"}}}, "jobs.toc_rollup_day.cpu_quota", "percentage"),
    ({"jobs": {"toc_rollup_day": {"description": "a\nExecStart=/bin/evil"}}}, "jobs.toc_rollup_day.description", "control characters"),
    ({"jobs": {"toc_rollup_day": "daily"}}, "jobs.toc_rollup_day", "expected a table"),
    ({"jobs": {"new": {"cron": "* * * * *"}}}, "jobs.new.kind", "missing"),
    ({"jobs": {"new": {"kind": "rollup", "cron": "* * * * *"}}}, "jobs.new.level", "missing (required)"),
    ({"jobs": {"new": {"kind": "command", "cron": "* * * * *"}}}, "jobs.new.command", "missing (required)"),
    ({"jobs": {"new": {"kind": "command", "level": "day"}}}, "jobs.new.cron", "missing (required)"),
    ({"jobs": {"new": {"kind": "command", "cron": "* * * * *", "command": []}}}, "jobs.new.command", "non-empty list"),
    ({"jobs": {"new": {"kind": "command", "cron": "* * * * *", "command": "echo hi"}}}, "jobs.new.command", "non-empty list"),
    ({"jobs": {"new": {"kind": "cleanup"}}}, "jobs.new.kind", "expected one of rollup, compaction, verify, command"),
    ({"jobs": {"bad name": {"kind": "compaction"}}}, 'jobs."bad name"', "can't be a unit name"),
    ({"jobs": {"a.b": {"kind": "compaction"}}}, 'jobs."a.b"', "can't be a unit name"),
    ({"jobs": {"x@y": {"kind": "compaction"}}}, 'jobs."x@y"', "can't be a unit name"),
    ({"jobs": {"-lead": {"kind": "compaction"}}}, "jobs.-lead", "can't be a unit name"),
    ({"jobs": {"a" * 65: {"kind": "compaction"}}}, "jobs." + "a" * 65, "can't be a unit name"),
    ({"jobs": {"ünï": {"kind": "compaction"}}}, 'jobs."ünï"', "can't be a unit name"),
]


@pytest.mark.parametrize("raw,path,message", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_values_name_their_key_path(raw: dict, path: str, message: str) -> None:
    problems = _problems(raw)
    assert any(p == path and message in m for p, m in problems), problems


def test_all_problems_are_reported_at_once() -> None:
    problems = _problems(
        {"jobs": {"toc_rollup_day": {"cron": "99 * * * *", "overlap": "x"}, "new": {"kind": "command", "cron": "* * * * *"}}}
    )
    assert {p for p, _ in problems} == {"jobs.toc_rollup_day.cron", "jobs.toc_rollup_day.overlap", "jobs.new.command"}


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[jobs\nx = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML.*line 1"):
        load_config(path)
    path.write_bytes(b"\xff\xfe[jobs]")
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_config(path)


def test_discovery_order(tmp_path: Path) -> None:
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("")
    from_env = tmp_path / "env.toml"
    from_env.write_text("")
    xdg = tmp_path / "xdg"
    (xdg / "memsched").mkdir(parents=True)
    user_file = xdg / "memsched" / "memsched.toml"
    user_file.write_text("")
    env = {"MEMSCHED_CONFIG": str(from_env), "XDG_CONFIG_HOME": str(xdg)}
    assert find_config(str(explicit), "user", env) == explicit.resolve()
    assert find_config(None, "user", env) == from_env.resolve()
    assert find_config(None, "user", {"XDG_CONFIG_HOME": str(xdg)}) == user_file
    assert find_config(None, "user", {"XDG_CONFIG_HOME": str(tmp_path / "none")}) is None
    with pytest.raises(UsageError, match="--config .*no such file"):
        find_config(str(tmp_path / "missing.toml"), "user", env)
    with pytest.raises(UsageError, match="MEMSCHED_CONFIG=.*no such file"):
        find_config(None, "user", {"MEMSCHED_CONFIG": str(tmp_path / "missing.toml")})


def test_scope_resolution() -> None:
    assert resolve_scope("system", {}) == "system"
    assert resolve_scope(None, {"MEMSCHED_SCOPE": "user"}) == "user"
    with pytest.raises(UsageError, match="MEMSCHED_SCOPE"):
        resolve_scope(None, {"MEMSCHED_SCOPE": "galaxy"})


@pytest.mark.parametrize(
    "text,ms",
    [(300, 300_000), (0.25, 250), ("300", 300_000), ("5min", 300_000), ("1h 30min", 5_400_000), ("250ms", 250), ("2d", 172_800_000), ("1.5s", 1500)],
)
def test_durations(text: object, ms: int) -> None:
    assert parse_duration_ms(text) == ms


def test_every_key_is_documented_with_a_default() -> None:
    text = defaults_toml()
    reference = reference_markdown()
    for option in schema.JOB_OPTIONS:
        assert option.description and (option.default is not None or option.default_doc), option.key
        assert f"#   {option.key}" in text
        assert f"| `{option.key}`" in reference
    for name in schema.DEFAULT_JOBS:
        assert f"[jobs.{name}]" in text
        assert f"| {name} |" in reference


def test_docs_config_reference_is_current() -> None:
    """docs/config.md is generated from the schema; regenerate with `memsched config reference > docs/config.md`."""
    path = Path(__file__).resolve().parent.parent / "docs" / "config.md"
    assert path.read_text() == reference_markdown(), "docs/config.md is stale: run `memsched config reference > docs/config.md`"
