"""Installing units into a real systemd user manager: plan, idempotence, changes, removal, uninstall,
overlap policies observed on 1-second calendars, and values that must arrive unmangled."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path


from memsched_testing import command_job, write_config
from systemd_env import SystemdTestEnv, wait_for

LIST_TIMERS_LINE = re.compile(r"^(?P<next>\w{3} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \w+)\s.*?(?P<unit>memsched-\S+\.timer)")


def installed_timers(systemd: SystemdTestEnv) -> dict[str, datetime | None]:
    """Return memsched timers listed by `systemctl --user list-timers --all` with their NEXT column."""
    out = systemd.systemctl("list-timers", "--all", "--no-legend").stdout
    timers: dict[str, datetime | None] = {}
    for line in out.splitlines():
        unit = next((w for w in line.split() if w.startswith("memsched-") and w.endswith(".timer")), None)
        if unit is None:
            continue
        match = LIST_TIMERS_LINE.match(line.strip())
        timers[unit] = (
            datetime.strptime(match.group("next"), "%a %Y-%m-%d %H:%M:%S %Z").replace(tzinfo=timezone.utc) if match else None
        )
    return timers


def install(systemd: SystemdTestEnv, config: Path, *extra: str) -> dict:
    proc = systemd.memsched("install-units", "--config", str(config), "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_install_reinstall_change_remove_uninstall(systemd: SystemdTestEnv) -> None:
    jobs = {
        "alpha": command_job(["/bin/true"], cron="0 * * * *"),
        "beta": command_job(["/bin/true"], cron="30 4 * * *"),
    }
    config = write_config(systemd.tmp, jobs)
    dry = systemd.memsched("install-units", "--config", str(config), "--dry-run")
    assert dry.returncode == 0 and "+OnCalendar=*-*-* *:00:00 UTC" in dry.stdout and "dry run" in dry.stdout
    assert not (systemd.unit_dir / "memsched-alpha.timer").exists()

    first = install(systemd, config)
    assert first["summary"]["add"] == 5 and first["changes"] == 5  # 2 timers, 2 services, the failure unit
    assert set(first["started"]) == {"memsched-alpha.timer", "memsched-beta.timer"}
    assert set(installed_timers(systemd)) == {"memsched-alpha.timer", "memsched-beta.timer"}
    text = (systemd.unit_dir / "memsched-alpha.timer").read_text()
    assert text.startswith("# Managed by memsched")
    mtimes = {p.name: p.stat().st_mtime_ns for p in systemd.unit_dir.glob("memsched-*")}

    again = install(systemd, config)
    assert again["changes"] == 0 and again["summary"]["unchanged"] == 5
    assert not again["started"] and not again["restarted"] and not again["enabled"]
    assert {p.name: p.stat().st_mtime_ns for p in systemd.unit_dir.glob("memsched-*")} == mtimes

    jobs["alpha"]["cron"] = "15 * * * *"
    config = write_config(systemd.tmp, jobs)
    changed = install(systemd, config)
    assert changed["changes"] == 1 and changed["restarted"] == ["memsched-alpha.timer"]
    assert systemd.show("memsched-alpha.timer", "TimersCalendar")["TimersCalendar"].startswith("{ OnCalendar=*-*-* *:15:00 UTC")

    del jobs["beta"]
    config = write_config(systemd.tmp, jobs)
    removed = install(systemd, config)
    assert removed["summary"]["delete"] == 2 and "memsched-beta.timer" in removed["stopped"]
    assert set(installed_timers(systemd)) == {"memsched-alpha.timer"}
    assert not (systemd.unit_dir / "memsched-beta.timer").exists()
    assert systemd.show("memsched-beta.timer", "LoadState")["LoadState"] == "not-found"

    foreign = systemd.write_unit("memsched-foreign.service", "[Service]\nExecStart=/bin/true\n")
    jobs["foreign"] = command_job(["/bin/true"], cron="0 0 * * *")
    conflict = systemd.memsched("install-units", "--config", str(write_config(systemd.tmp, jobs)))
    assert conflict.returncode == 2 and "does not own" in conflict.stderr and "Traceback" not in conflict.stderr
    assert foreign.read_text() == "[Service]\nExecStart=/bin/true\n"
    assert not (systemd.unit_dir / "memsched-foreign.timer").exists(), "nothing is applied when there is a conflict"

    gone = systemd.memsched("uninstall-units", "--config", str(config), "--json")
    assert gone.returncode == 0, gone.stderr
    report = json.loads(gone.stdout)
    assert report["summary"]["delete"] == 3
    assert not list(systemd.unit_dir.glob("memsched-*.timer"))
    assert foreign.exists(), "uninstall never touches files memsched does not own"
    assert installed_timers(systemd) == {}


def test_hand_edited_unit_is_noticed_and_restored(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, {"alpha": command_job(["/bin/true"], cron="0 * * * *")})
    install(systemd, config)
    path = systemd.unit_dir / "memsched-alpha.service"
    original = path.read_text()
    path.write_text(original.replace("TimeoutStartSec=1800s", "TimeoutStartSec=5s"))
    report = install(systemd, config)
    entry = next(u for u in report["units"] if u["name"] == "memsched-alpha.service")
    assert entry["action"] == "update" and "edited by hand" in entry["note"]
    assert path.read_text() == original


def test_default_config_shows_six_timers_at_the_predicted_times(systemd: SystemdTestEnv) -> None:
    config = write_config(systemd.tmp, {}, defaults=True)
    install(systemd, config)
    timers = installed_timers(systemd)
    jobs = ["toc_rollup_day", "toc_rollup_week", "toc_rollup_month", "toc_rollup_year", "compaction", "store_verify"]
    assert set(timers) == {f"memsched-{j}.timer" for j in jobs}
    for job in jobs:
        predicted = json.loads(systemd.memsched("next", job, "-n", "1", "--json", "--config", str(config)).stdout)
        slot = datetime.fromisoformat(predicted["times"][0]["at"])
        jitter = timedelta(seconds=600 if job in ("compaction", "store_verify") else 300)
        listed = timers[f"memsched-{job}.timer"]
        assert listed is not None and slot <= listed <= slot + jitter, (job, slot, listed)


def _runs(registry: Path, result: str | None = None) -> list[sqlite3.Row]:
    db = sqlite3.connect(registry)
    db.row_factory = sqlite3.Row
    where = "WHERE result = ?" if result else "WHERE result != 'skipped'"
    rows = db.execute(f"SELECT * FROM runs {where} ORDER BY started_ms", (result,) if result else ()).fetchall()
    db.close()
    return rows


def _observe(systemd: SystemdTestEnv, overlap: str, seconds: float, min_runs: int) -> Path:
    job = command_job(["/bin/sleep", "2.5"], overlap=overlap)
    config = write_config(systemd.tmp, {"slow": job})
    install(systemd, config)
    registry = systemd.tmp / "registry.db"
    wait_for(lambda: registry.exists() and len([r for r in _runs(registry) if r["ended_ms"]]) >= min_runs, seconds, f"{min_runs} finished runs")
    systemd.systemctl("stop", "memsched-slow.timer")
    return registry


def test_overlap_skip_starts_only_at_slots_when_idle(systemd: SystemdTestEnv) -> None:
    registry = _observe(systemd, "skip", 20, 3)
    runs = [r for r in _runs(registry) if r["ended_ms"]]
    for previous, current in zip(runs, runs[1:]):
        assert current["started_ms"] >= previous["ended_ms"], "no overlap"
        next_slot = (previous["ended_ms"] // 1000 + 1) * 1000
        # the next run starts at the first slot after the previous ended (process start-up aside), never right away
        assert next_slot <= current["started_ms"] < next_slot + 900, (previous["ended_ms"], current["started_ms"])
    skips = _runs(registry, "skipped")
    assert len(skips) >= 2 * (len(runs) - 1)
    assert all("elapsed while the previous run" in s["reason"] for s in skips)
    # Each skipped slot lies inside a run: after that run's own slot (the timer's trigger, which the
    # skip accounting counts from) and at or before its end. The run still going when the timer was
    # stopped counts too: its skipped slots are recorded, though it is not among the finished runs.
    every = _runs(registry)
    now = int(time.time() * 1000)
    for skip in skips:
        assert any((r["slot_ms"] or r["started_ms"]) < skip["slot_ms"] <= (r["ended_ms"] or now) for r in every), dict(skip)


def test_overlap_queue_runs_back_to_back(systemd: SystemdTestEnv) -> None:
    registry = _observe(systemd, "queue", 20, 3)
    runs = [r for r in _runs(registry) if r["ended_ms"]]
    gaps = [b["started_ms"] - a["ended_ms"] for a, b in zip(runs, runs[1:])]
    assert gaps and all(0 <= g < 800 for g in gaps), gaps  # the queued run follows at once
    assert not _runs(registry, "skipped")


def test_overlap_concurrent_runs_overlap_in_separate_units(systemd: SystemdTestEnv) -> None:
    registry = _observe(systemd, "concurrent", 20, 3)
    runs = [r for r in _runs(registry) if r["ended_ms"]]
    overlapping = [(a, b) for a, b in zip(runs, runs[1:]) if b["started_ms"] < a["ended_ms"]]
    assert overlapping, "runs overlap"
    assert len({r["instance"] for r in runs}) == len(runs) and all(r["instance"] for r in runs)
    invocations = {r["invocation_id"] for r in runs}
    assert len(invocations) == len(runs), "each run is its own unit invocation (own journal and accounting)"
    first = runs[0]
    entries = systemd.journal(f"_SYSTEMD_USER_UNIT=memsched-slow@{first['instance']}.service")
    assert entries, "each instance has its own journal stream"


def test_values_arrive_in_systemd_exactly(systemd: SystemdTestEnv) -> None:
    odd_dir = systemd.tmp / "odd dir %h $HOME 'q' \"dq\" ü"
    odd_dir.mkdir()
    description = '50% of "$HOME" ; \'single\' ünïcødé ✓ \\n'
    config = write_config(odd_dir, {"odd": command_job(["/bin/true"], cron="0 0 * * *", description=description)})
    install(systemd, config)
    shown = systemd.show("memsched-odd.service", "Description")
    assert shown["Description"] == description
    # The service finds its config only if the path reached the process exactly (%, $, quotes, spaces, UTF-8).
    systemd.systemctl("start", "memsched-odd.service")
    runs = wait_for(lambda: (odd_dir / "registry.db").exists() and _runs(odd_dir / "registry.db"), 20, "the run's record")
    assert runs[0]["result"] == "success" and runs[0]["trigger"] == "manual"


def test_install_without_manager_says_what_to_do(systemd: SystemdTestEnv, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"alpha": command_job(["/bin/true"], cron="0 * * * *")})
    empty = tmp_path / "runtime"
    empty.mkdir()
    systemd.env["XDG_RUNTIME_DIR"] = str(empty)
    proc = systemd.memsched("install-units", "--config", str(config))
    assert proc.returncode == 3
    assert "no systemd user manager is reachable" in proc.stderr and "memsched sandbox start" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_render_out_and_install_into_a_staging_directory(systemd: SystemdTestEnv, tmp_path: Path) -> None:
    config = write_config(systemd.tmp, {"alpha": command_job(["/bin/true"], cron="0 * * * *")})
    out = tmp_path / "rendered"
    rendered = systemd.memsched("render", "--config", str(config), "--out", str(out))
    assert rendered.returncode == 0 and sorted(p.name for p in out.iterdir()) == [
        "memsched-alpha.service",
        "memsched-alpha.timer",
        "memsched-failure@.service",
    ]
    staging = tmp_path / "staging"
    report = install(systemd, config, "--unit-dir", str(staging))
    assert report["summary"]["add"] == 3 and not report["started"]
    assert any("no manager loaded them" in note for note in report["notes"])
    assert (staging / "memsched-alpha.timer").read_text() == (out / "memsched-alpha.timer").read_text()
    assert systemd.show("memsched-alpha.timer", "LoadState")["LoadState"] == "not-found", "the manager was not touched"
    again = install(systemd, config, "--unit-dir", str(staging))
    assert again["changes"] == 0
    gone = systemd.memsched("uninstall-units", "--config", str(config), "--unit-dir", str(staging))
    assert gone.returncode == 0 and not list(staging.glob("memsched-*"))
