"""systemd's start rate limit (issue 11.4): a job on a 1-second calendar runs every slot under
every overlap policy, a slot lost to the limit all the same is counted (registry, status,
history, metrics, reason start-limit), and `validate` refuses a calendar the units cannot honour."""

from __future__ import annotations

import json
import time

import pytest

from memsched_testing import command_job, write_config
from systemd_env import SystemdTestEnv, wait_for
from test_runner import records
from test_units_install import install

POLICIES = ("skip", "queue", "concurrent")


def _start_limit_refusals(systemd: SystemdTestEnv, unit: str) -> list[dict[str, str]]:
    return [e for e in systemd.journal(f"USER_UNIT={unit}") if "Start request repeated too quickly" in str(e.get("MESSAGE", ""))] + [
        e for e in systemd.journal(f"UNIT={unit}") if "Start request repeated too quickly" in str(e.get("MESSAGE", ""))
    ]


def test_every_second_runs_every_slot_under_every_policy(systemd: SystemdTestEnv) -> None:
    # systemd's default is 5 starts in 10 s; a 1 s calendar (or the gate's re-fire on a 2 s one) passes it.
    jobs = {f"tick_{p}": command_job(["/bin/true"], overlap=p, accuracy="1s") for p in POLICIES}
    config = write_config(systemd.tmp, jobs)
    install(systemd, config)
    registry = systemd.tmp / "registry.db"
    for name in jobs:
        wait_for(lambda n=name: [r for r in records(registry) if r["job"] == n], 30, f"a first run of {name}")
    begun_ms = time.time() * 1000
    time.sleep(14)  # well past one start-limit window
    ended_ms = time.time() * 1000
    for name in jobs:
        systemd.systemctl("stop", f"memsched-{name}.timer")
    for name in jobs:
        for unit in (f"memsched-{name}.service",):
            systemd.wait_unit_state(unit, ("inactive", "failed"), timeout=30)
            assert systemd.show(unit, "Result")["Result"] != "start-limit-hit", unit
            assert not _start_limit_refusals(systemd, unit), f"{unit} hit systemd's start limit"
    wait_for(lambda: not [r for r in records(registry) if r["result"] == "running"], 30, "every run to end")
    for name in jobs:
        mine = [r for r in records(registry) if r["job"] == name]
        window = [r for r in mine if begun_ms <= (r["slot_ms"] or r["started_ms"]) < ended_ms - 1000]
        ran = [r for r in window if r["result"] == "success"]
        skipped = sum(r["slot_count"] for r in window if r["result"] == "skipped")
        lost = [r for r in mine if r["result"] == "lost"]
        assert not lost, (name, lost)
        slots = int((ended_ms - 1000) / 1000) - int(begun_ms / 1000)
        # every slot is a run or a recorded skip (a slow start on a busy machine may overlap the next slot)
        assert len(ran) + skipped >= slots - 1, (name, slots, len(ran), skipped)
        assert len(ran) >= slots // 2, (name, slots, len(ran))


def test_a_slot_lost_to_the_start_limit_is_counted(systemd: SystemdTestEnv) -> None:
    # An administrator's drop-in (or an old unit) can still impose a start limit: the slots it
    # refuses are never silent.
    textfile = systemd.tmp / "metrics.prom"
    # queue: no gate, so every start the limit counts is a slot (a skip gate's refused re-fire also
    # uses up the burst; that path is in the closing note of 2026-12-08, not proven here)
    config = write_config(systemd.tmp, {"limited": command_job(["/bin/true"], overlap="queue")}, extra={"metrics": {"textfile": str(textfile)}})
    dropin = systemd.unit_dir / "memsched-limited.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "limit.conf").write_text("[Unit]\nStartLimitIntervalSec=1h\nStartLimitBurst=2\n")
    install(systemd, config)
    registry = systemd.tmp / "registry.db"
    try:
        wait_for(
            lambda: sum(r["slot_count"] for r in records(registry) if r["result"] == "lost") >= 3,
            60,
            "three slots recorded as lost",
        )
    except AssertionError:
        units = ("memsched-limited.timer", "memsched-limited.service", "memsched-failure@limited.service")
        print(systemd.systemctl("status", *units, check=False).stdout, records(registry))
        raise
    systemd.systemctl("stop", "memsched-limited.timer")
    wait_for(
        lambda: all(systemd.show(u, "ActiveState")["ActiveState"] in ("inactive", "failed") for u in ("memsched-limited.service", "memsched-failure@limited.service")),
        30,
        "the service and its failure unit to finish",
    )
    rows = records(registry)
    lost_rows = [r for r in rows if r["result"] == "lost"]
    assert all(r["reason_code"] == "start-limit" and r["trigger"] == "timer" for r in lost_rows), lost_rows
    assert all(r["slot_ms"] % 1000 == 0 for r in lost_rows), "a lost slot is named by its calendar time"
    lost = sum(r["slot_count"] for r in lost_rows)
    ran = [r for r in rows if r["result"] == "success"]
    assert not [r for r in rows if r["result"] not in ("success", "lost")], rows
    # the timer goes on after a refusal (systemd 252 leaves it waiting on the failed service otherwise)
    assert max(r["started_ms"] for r in ran) > min(r["slot_ms"] for r in lost_rows), "no run after the first refusal"
    # every slot from the first run to the last record is a run or a lost slot, none counted twice
    covered = [r["slot_ms"] // 1000 for r in ran]
    for r in lost_rows:
        covered += list(range(r["slot_ms"] // 1000, r["slot_end_ms"] // 1000 + 1))
    assert len(covered) == len(set(covered)), sorted(covered)
    assert set(range(min(covered), max(covered) + 1)) - set(covered) == set(), sorted(covered)

    status = json.loads(systemd.memsched("--config", str(config), "status", "--json", "limited", check=True).stdout)
    (job,) = status["jobs"]
    assert job["lost_count"] == lost and job["run_count"] == len(ran)
    history = systemd.memsched("--config", str(config), "history", "limited", "--json", check=True)
    entries = json.loads(history.stdout)
    entries = entries.get("runs", entries) if isinstance(entries, dict) else entries
    assert any(e.get("result") == "lost" and e.get("reason_code", e.get("code")) == "start-limit" for e in entries), entries
    metrics = [line for line in textfile.read_text().splitlines() if line.startswith("memsched_job_lost_slots_total")]
    assert f'memsched_job_lost_slots_total{{job_name="limited",reason="start-limit"}} {lost}' in metrics, metrics


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"cron": "* * * * * *", "accuracy": "1s"}, None),
        ({"cron": "*/2 * * * * *", "accuracy": "1s", "jitter": "1s"}, None),
        ({"cron": "* * * * * *", "accuracy": "1s", "jitter": "1s"}, "jitter + accuracy"),
        ({"cron": "* * * * * *", "accuracy": "2s"}, "jitter + accuracy"),
        ({"cron": "0,5 * * * * *", "accuracy": "10s"}, "5s between slots"),
        ({"cron": "*/15 * * * *", "jitter": "14min"}, None),
        ({"cron": "*/15 * * * *", "jitter": "20min"}, "15min between slots"),
    ],
)
def test_validate_refuses_a_calendar_the_units_cannot_honour(systemd: SystemdTestEnv, keys: dict, expected: str | None) -> None:
    config = write_config(systemd.tmp, {"j": command_job(["/bin/true"], **keys)})
    proc = systemd.memsched("--config", str(config), "validate", "--json")
    report = json.loads(proc.stdout)
    problems = [p for j in report["jobs"] for p in j["problems"]] + report.get("problems", [])
    if expected is None:
        assert proc.returncode == 0 and report["ok"], problems
    else:
        assert proc.returncode != 0 and not report["ok"]
        assert any(p.startswith("jobs.j.") and expected in p for p in problems), problems
        assert "Traceback" not in proc.stderr


def test_shortest_gap_and_the_slots_a_refused_start_stood_for() -> None:
    from memsched.config.load import parse_config
    from memsched.cron.parse import parse_cron
    from memsched.cron.spacing import shortest_gap_in_day_s
    from memsched.ops.lost import refused_slots

    assert shortest_gap_in_day_s(parse_cron("* * * * * *")) == 1
    assert shortest_gap_in_day_s(parse_cron("0 0,30 * * * *")) == 1800
    assert shortest_gap_in_day_s(parse_cron("0 10 23 * * *")) == 86_400  # across midnight: every day fires
    assert shortest_gap_in_day_s(parse_cron("0 0 2 * * 1")) is None  # once a day on some days: a matter of dates
    assert shortest_gap_in_day_s(parse_cron("0 50 23,0 * * *")) == 3600
    job = parse_config({"jobs": {"j": {"kind": "command", "command": ["/bin/true"], "cron": "* * * * * *", "accuracy": 1}}}).jobs["j"]
    base = 1_796_688_000_000  # a whole second
    assert refused_slots(job, base + 5_300, base + 2_000) == [base + 3_000, base + 4_000, base + 5_000]
    assert refused_slots(job, base + 5_300, base + 5_000) == []  # already recorded: a manual start, or counted before
    assert refused_slots(job, base + 5_300, None) == list(range(base - 55_000, base + 5_001, 1000))  # accuracy and a minute of slack at most
    weekly = parse_config({"jobs": {"w": {"kind": "command", "command": ["/bin/true"], "cron": "0 0 2 * * 1", "jitter": "5min"}}}).jobs["w"]
    monday = 1_796_608_800_000  # Mon 2026-12-07 02:00:00 UTC
    assert refused_slots(weekly, monday + 200_000, monday - 7 * 86_400_000) == [monday]
