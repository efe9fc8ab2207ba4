"""The calendar/next/validate/config commands, run as a user runs them (the installed `memsched` script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MEMSCHED = [sys.executable, "-m", "memsched"]


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, MEMSCHED_SCOPE="user", XDG_CONFIG_HOME="/nonexistent-memsched-test")
    full_env.pop("MEMSCHED_CONFIG", None)
    full_env.update(env or {})
    return subprocess.run([*MEMSCHED, *args], capture_output=True, text=True, env=full_env, input=stdin, timeout=60)


def assert_clean_failure(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def test_calendar_prints_one_value_per_line() -> None:
    proc = run("calendar", "0 0 1-7 * 1")
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == ["*-*-01..07 00:00:00 UTC", "Mon *-*-* 00:00:00 UTC"]


def test_calendar_json() -> None:
    proc = run("calendar", "*/15 9-17 * * MON-FRI", "--tz", "Europe/Berlin", "--json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {
        "expr": "*/15 9-17 * * MON-FRI",
        "timezone": "Europe/Berlin",
        "on_calendar": ["Mon..Fri *-*-* 09..17:00..45/15:00 Europe/Berlin"],
    }


def test_next_for_a_default_job_json() -> None:
    proc = run("next", "toc_rollup_day", "-n", "3", "--after", "2027-01-01T00:00", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [t["at"] for t in data["times"]] == [
        "2027-01-01T01:00:00+00:00",
        "2027-01-02T01:00:00+00:00",
        "2027-01-03T01:00:00+00:00",
    ]
    assert data["times"][0]["at_ms"] == 1_798_765_200_000
    assert data["checked_against_croniter"] is True and data["disagreements"] == 0


def test_next_marks_and_explains_dst_instants() -> None:
    proc = run("next", "--cron", "30 2 * * *", "--tz", "Europe/Berlin", "--after", "2027-03-27T00:00", "-n", "3")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    gap = [line for line in lines if "DST gap" in line]
    assert len(gap) == 1 and gap[0].startswith("-") and "systemd skips it" in gap[0]
    assert sum(1 for line in lines[1:] if line[0].isdigit()) == 3
    fold = run("next", "--cron", "30 2 * * *", "--tz", "Europe/Berlin", "--after", "2027-10-30T00:00", "-n", "3", "--json")
    data = json.loads(fold.stdout)
    assert [t["dst"] for t in data["times"]].count("fold") == 1
    assert data["disagreements"] == 0


def test_next_marks_a_repeated_wall_time_when_after_falls_inside_a_fold() -> None:
    # Berlin falls back at 01:00Z on 2027-10-31 (03:00 CEST -> 02:00 CET). From 01:15Z, inside the
    # second pass, systemd lists 02:30 CET: a wall time that already happened at 00:30Z (02:30 CEST).
    proc = run("next", "--cron", "*/30 * * * *", "--tz", "Europe/Berlin", "--after", "2027-10-31T01:15Z", "-n", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    first = data["times"][0]
    assert (first["at"], first["systemd"], first["dst"]) == ("2027-10-31T01:30:00+00:00", True, "fold")
    assert "02:30:00" in first["note"] and "00:30:00Z" in first["note"] and "already" in first["note"]
    assert [t["dst"] for t in data["times"][1:]] == [None, None] and data["disagreements"] == 0
    text = run("next", "--cron", "*/30 * * * *", "--tz", "Europe/Berlin", "--after", "2027-10-31T01:15Z", "-n", "3")
    (row,) = [line for line in text.stdout.splitlines() if line.startswith("1 ")]
    assert "DST fold" in row and "00:30:00Z" in row
    # From before the fold the first pass is listed and the repeat is not: nothing to mark there.
    before = json.loads(run("next", "--cron", "*/30 * * * *", "--tz", "Europe/Berlin", "--after", "2027-10-31T00:15Z", "-n", "3", "--json").stdout)
    assert [t["at"][11:16] for t in before["times"] if t["systemd"]] == ["00:30", "02:00", "02:30"]


def test_next_marks_a_wall_time_that_a_gap_removes() -> None:
    # Berlin springs forward at 01:00Z on 2027-03-28 (02:00 CET -> 03:00 CEST): 02:00 does not exist.
    proc = run("next", "--cron", "0 1-3 * * *", "--tz", "Europe/Berlin", "--after", "2027-03-27T23:00Z", "-n", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [t["at"] for t in data["times"] if t["systemd"]] == [
        "2027-03-28T00:00:00+00:00", "2027-03-28T01:00:00+00:00", "2027-03-28T23:00:00+00:00",
    ]
    (gap,) = [t for t in data["times"] if t["dst"] == "gap"]
    assert gap["systemd"] is False and gap["wall"] == "2027-03-28T02:00:00"
    assert "02:00:00" in gap["note"] and "does not exist" in gap["note"] and "systemd skips it" in gap["note"]
    assert data["disagreements"] == 0
    text = run("next", "--cron", "0 1-3 * * *", "--tz", "Europe/Berlin", "--after", "2027-03-27T23:00Z", "-n", "3")
    (row,) = [line for line in text.stdout.splitlines() if "DST gap" in line]
    assert row.startswith("-") and "02:00:00" in row
    assert sum(1 for line in text.stdout.splitlines()[1:] if line[0].isdigit()) == 3


def test_next_without_croniter_support_says_so() -> None:
    proc = run("next", "--cron", "0 0 LW * *", "-n", "2")
    assert proc.returncode == 0
    assert "not checked against croniter" in proc.stdout


def test_validate_defaults_ok_and_warns_about_dst(tmp_path: Path) -> None:
    assert run("validate").returncode == 0
    config = tmp_path / "c.toml"
    config.write_text('[jobs.toc_rollup_day]\ncron = "0 30 2 * * *"\ntimezone = "Europe/Berlin"\n')
    proc = run("--config", str(config), "validate", "--json")
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    day = next(j for j in data["jobs"] if j["job"] == "toc_rollup_day")
    assert any("gap" in w for w in day["warnings"]) and any("fold" in w for w in day["warnings"])


def test_validate_reports_a_job_that_never_fires_again(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[jobs.old]\nkind = "compaction"\ncron = "0 0 0 1 1 ? 2020"\n')
    proc = run("validate", "--config", str(config))
    assert_clean_failure(proc, 2)
    assert "jobs.old.cron" in proc.stdout and "never fires again" in proc.stdout


def test_config_show_and_defaults(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[jobs.compaction]\njitter = "15min"\n')
    proc = run("config", "show", "--config", str(config), "--json")
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    assert data["source"] == str(config) and data["jobs"]["compaction"]["jitter"] == 900 and data["durations"] == "seconds"
    assert data["settings"]["store"]["busy_timeout"] == 30 and data["settings"]["summarizer"]["timeout"] == 60
    shown = run("config", "show", "--config", str(config))
    assert "jitter = 900" in shown.stdout and "busy_timeout = 30\n" in shown.stdout
    # Both load back as the same config (they did not: section durations were milliseconds).
    import tomli_w

    from memsched.config.load import load_config

    original = load_config(config)
    as_toml = tmp_path / "shown.toml"
    as_toml.write_text(shown.stdout)
    as_json = tmp_path / "shown-json.toml"
    document = {k: {kk: vv for kk, vv in v.items() if vv is not None} for k, v in data["settings"].items()}
    document["jobs"] = {n: {kk: vv for kk, vv in j.items() if vv is not None} for n, j in data["jobs"].items()}
    as_json.write_text(tomli_w.dumps(document))
    for again in (load_config(as_toml), load_config(as_json)):
        assert again.settings == original.settings
        assert {n: j.as_dict() for n, j in again.jobs.items()} == {n: j.as_dict() for n, j in original.jobs.items()}
    defaults = run("config", "defaults")
    assert defaults.returncode == 0 and "[jobs.toc_rollup_day]" in defaults.stdout


@pytest.mark.parametrize(
    "args,needles",
    [
        (["calendar", "H * * * *"], ["Jenkins 'H'"]),
        (["calendar", "@reboot"], ["'@reboot' is not a calendar"]),
        (["calendar", "0 0 * * *", "--tz", "Not/AZone"], ["--tz 'Not/AZone'"]),
        (["next"], ["give either a JOB or --cron"]),
        (["next", "nosuchjob"], ["unknown job 'nosuchjob'", "toc_rollup_day"]),
        (["next", "toc_rollup_day", "--tz", "UTC"], ["--tz only applies with --cron"]),
        (["next", "--cron", "* * * * *", "-n", "0"], ["-n 0"]),
        (["next", "--cron", "* * * * *", "--after", "yesterday"], ["--after 'yesterday'"]),
        (["next", "--cron", "* * * * *", "-n", "x"], ["'x' is not a valid integer"]),
        (["--config", "/nonexistent.toml", "validate"], ["--config /nonexistent.toml: no such file"]),
        (["frobnicate"], ["No such command"]),
    ],
)
def test_bad_input_exits_2_without_traceback(args: list[str], needles: list[str]) -> None:
    assert_clean_failure(run(*args), 2, *needles)


def test_bad_config_file_exits_2_with_key_paths(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[jobs.toc_rollup_day]\ncron = "0 0 31 2 *"\nfoo = 1\n[jobs.x]\nkind = "command"\n')
    proc = run("validate", "--config", str(config))
    assert_clean_failure(
        proc, 2, "jobs.toc_rollup_day.cron: '0 0 31 2 *' never fires", "jobs.toc_rollup_day.foo: unknown key", "jobs.x.cron: missing"
    )
    env_proc = run("validate", env={"MEMSCHED_CONFIG": str(config)})
    assert_clean_failure(env_proc, 2, "jobs.toc_rollup_day.foo")
