"""A job's expected interval (from its calendar, checked against systemd's own elapses) and when it is late."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from memsched.config.load import load_config
from memsched.cron import interval as iv
from memsched.cron.calendar import to_on_calendar
from memsched.cron.parse import parse_cron
from memsched.late import late_after_ms, lateness
from memsched.systemd.analyze import calendar_next
from memsched_testing import command_job, write_config
from systemd_env import SystemdTestEnv, wait_for
from test_units_install import install

TODAY = date(2026, 12, 8).toordinal()

# (expression, zone, short window): daily and denser calendars are compared over a shorter window,
# since systemd-analyze takes about a millisecond per elapse.
CALENDARS = [
    ("30 2 * * *", "Europe/Berlin", True),  # inside the spring-forward gap: systemd skips that day
    ("0 3 * * *", "Europe/Berlin", True),  # the fall-back fold makes one day 25 hours
    ("15 1 * * *", "America/New_York", True),
    ("0,30 1,2 * * *", "Europe/London", True),
    ("0 */6 * * *", "Australia/Lord_Howe", True),  # a 30-minute DST shift
    ("0 0 * * 1-5", "UTC", True),
    ("0 0 1,2 * *", "UTC", False),
    ("0 0 L * *", "UTC", False),
    ("0 0 LW * *", "UTC", False),
    ("0 0 15W * *", "UTC", False),
    ("0 0 1W * *", "America/New_York", False),
    ("0 0 * * 5L", "UTC", False),
    ("0 0 * * 1#2", "UTC", False),
    ("0 0 31 * *", "UTC", False),
    ("0 12 29 2 *", "UTC", False),  # leap days: four years
    ("@yearly", "UTC", False),
]


@pytest.mark.parametrize("expression,zone,short", CALENDARS)
def test_expected_interval_is_the_longest_gap_between_systemds_elapses(
    expression: str, zone: str, short: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if short:
        monkeypatch.setattr(iv, "_BEFORE_DAYS", 40)
        monkeypatch.setattr(iv, "_AFTER_DAYS", 400)
    iv._interval_s.cache_clear()
    spec = parse_cron(expression)
    ours = iv._interval_s(spec, zone, TODAY)
    iv._interval_s.cache_clear()
    tz = ZoneInfo(zone)
    start = datetime.combine(date.fromordinal(TODAY - iv._BEFORE_DAYS), datetime.min.time(), tz) - timedelta(seconds=1)
    end = datetime.combine(date.fromordinal(TODAY + iv._AFTER_DAYS + 1), datetime.min.time(), tz)
    elapses = [at for at in calendar_next(to_on_calendar(spec, zone), start, 2000) if at < end]
    assert len(elapses) >= 2
    assert ours == max(int((b - a).total_seconds()) for a, b in zip(elapses, elapses[1:]))


def test_dense_calendars_are_computed_without_walking_every_second() -> None:
    at = datetime(2026, 12, 8, 12, 0)
    assert iv.expected_interval_ms("* * * * * *", "UTC", at) == 1_000
    # Every 20 s of working hours on weekdays: the weekend, Friday 17:59:40 to Monday 09:00:00.
    assert iv.expected_interval_ms("*/20 * 9-17 * * 1-5", "UTC", at) == ((2 * 24 + 15) * 3600 + 20) * 1000


def test_a_calendar_that_has_run_out_has_no_interval() -> None:
    assert iv.expected_interval_ms("0 0 0 1 1 * 2027", "UTC", datetime(2026, 12, 8)) is None


def test_late_counts_from_the_last_success_else_from_first_known_and_never_while_paused(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, {"d": command_job(["/bin/true"], cron="0 3 * * *", jitter="5m", timeout="10m")}))
    job = config.jobs["d"]
    now = int(datetime(2026, 12, 8, 12).timestamp() * 1000)
    after = late_after_ms(job, 60_000, now)
    # A day, the random delay, the accuracy (1 ms), the longest run (a command: its timeout), the grace.
    assert after == 86_400_000 + 300_000 + 1 + 600_000 + 60_000
    assert not lateness(job, 60_000, now, now - after, None, False).late
    assert lateness(job, 60_000, now, now - after - 1, None, False).late
    assert lateness(job, 60_000, now, None, now - after - 1, False).late
    assert not lateness(job, 60_000, now, now - 1000, now - after - 1, False).late, "a success counts over first known"
    assert not lateness(job, 60_000, now, now - after - 1, None, True).late, "paused"
    assert not lateness(job, 60_000, now, None, None, False).late, "nothing known"


def test_status_shows_a_job_late_by_the_rules_definition_until_a_good_run(systemd: SystemdTestEnv) -> None:
    # Every 2 s, no jitter, 1 ms accuracy, 2 s timeout, 1 s grace: late 5.001 s after its last success.
    jobs = {
        "stalled": command_job(["/bin/true"], cron="*/2 * * * * *", timeout="2s", overlap="queue"),
        "yearly": command_job(["/bin/true"], cron="0 0 1 1 *", timeout="2s"),
    }
    config = write_config(systemd.tmp, jobs, extra={"alerts": {"late_grace": "1s"}})
    install(systemd, config)
    systemd.systemctl("stop", "memsched-stalled.timer")  # a timer stopped by hand: the job quietly stops running

    def status() -> dict[str, dict]:
        proc = systemd.memsched("status", "--json", "--config", str(config))
        assert proc.returncode == 0, proc.stderr
        return {j["job_name"]: j for j in json.loads(proc.stdout)["jobs"]}

    first = status()
    assert first["stalled"]["expected_interval_ms"] == 2_000 and first["stalled"]["late_after_ms"] == 5_001
    assert first["yearly"]["expected_interval_ms"] >= 365 * 86_400_000
    late = wait_for(lambda: (s := status()) and s["stalled"]["late"] and s, 30, "the stopped job to become late")
    assert late["yearly"]["late"] is False, "a yearly job is not late after seconds"
    table = systemd.memsched("status", "--config", str(config)).stdout.splitlines()
    assert table[0].split()[-1] == "LATE"
    assert {line.split()[0]: line.split()[-1] for line in table[1:]} == {"stalled": "late", "yearly": "-"}
    proc = systemd.memsched("run", "stalled", "--wait", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert status()["stalled"]["late"] is False, "a good run ends the lateness"


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("late_grace", "soon", "alerts.late_grace: 'soon' is not a duration"),
        ("paused_after", -5, "alerts.paused_after"),
        ("lost_slots", -1, "alerts.lost_slots: expected an integer from 0 to 1000000, got -1"),
        ("skipped_slots", "many", "alerts.skipped_slots"),
    ],
)
def test_bad_alert_thresholds_are_refused_naming_the_key(tmp_path: Path, key: str, value: object, message: str) -> None:
    import subprocess
    import sys

    config = write_config(tmp_path, {}, extra={"alerts": {key: value}})
    before = config.read_text()
    proc = subprocess.run([sys.executable, "-m", "memsched", "--config", str(config), "config", "show"], capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert config.read_text() == before and not (tmp_path / "registry.db").exists(), "nothing changed"
