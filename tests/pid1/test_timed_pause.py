"""A timed pause across a reboot, on systemd as PID 1 (issue 16): the transient timer that ends the
pause dies with the boot, the job's timer (left enabled) comes back, its slots before the end are
recorded as paused and not run, and the first slot after the end runs. Then `skip --next 2` on the
same machine: on 252 behind the ExecCondition= gate, on 257 with DeferReactivation= and no gate.
Last, a machine that is off when a timed pause ends: the pause is over at the next boot."""

from __future__ import annotations

import json
import time

import pytest

from harness import Machine, wait_for

CONFIG = "/etc/memsched/pause-test.toml"
TEXT = """
[jobs.tick]
kind = "command"
cron = "*/3 * * * * *"
command = ["/bin/true"]
accuracy = "1ms"
overlap = "skip"
"""
BUILTIN = ("toc_rollup_day", "toc_rollup_week", "toc_rollup_month", "toc_rollup_year", "compaction", "store_verify")


def _history(m: Machine) -> list[dict]:
    out = m.run(["memsched", "--system", "--config", CONFIG, "history", "tick", "-n", "500", "--json"], check=True)
    return json.loads(out.stdout)


def _runs(m: Machine) -> list[dict]:
    return [r for r in _history(m) if r["result"] not in ("skipped", "lost")]


@pytest.mark.parametrize("release", ["bookworm", "trixie"])
def test_a_timed_pause_ends_on_time_across_a_reboot(fresh_machine, release: str) -> None:
    m = fresh_machine(release)
    text = TEXT + "".join(f"\n[jobs.{name}]\nenabled = false\n" for name in BUILTIN)
    m.run(f"mkdir -p /etc/memsched && cat > {CONFIG}", input=text, check=True)
    m.run(["memsched", "--system", "--config", CONFIG, "install-units", "--json"], check=True, timeout=300)
    wait_for("a first run of tick", lambda: _runs(m), timeout=60)

    out = m.run(["memsched", "--system", "--config", CONFIG, "pause", "tick", "--for", "45s", "--json"], check=True)
    (answer,) = json.loads(out.stdout)
    until = answer["paused_until_ms"]
    assert answer["resume_unit"] == "memsched-resume.tick.timer"
    assert m.props("memsched-tick.timer", "ActiveState", "UnitFileState") == {"ActiveState": "inactive", "UnitFileState": "enabled"}
    wait_for("no run in progress", lambda: m.props("memsched-tick.service", "ActiveState")["ActiveState"] != "active", timeout=30)
    paused_at = int(time.time() * 1000)

    m.reboot()
    assert int(time.time() * 1000) < until - 10_000, "the reboot took too long for the pause to outlast it"
    assert m.props("memsched-resume.tick.timer", "LoadState")["LoadState"] == "not-found", "transient units die with the boot"
    wait_for("the job's timer back after the boot", lambda: m.props("memsched-tick.timer", "ActiveState")["ActiveState"] == "active", timeout=60)
    view = json.loads(m.run(["memsched", "--system", "--config", CONFIG, "status", "tick", "--json"], check=True).stdout)["jobs"][0]
    assert view["is_paused"] and view["paused_until_ms"] == until

    wait_for("a run after the pause ended", lambda: [r for r in _runs(m) if r["started_ms"] >= until], timeout=90)
    assert [r for r in _runs(m) if paused_at <= r["started_ms"] < until] == [], "no run while paused, reboot or not"
    paused = [r for r in _history(m) if r["result"] == "skipped" and r["reason_code"] == "paused"]
    assert paused and all(r["slot_ms"] < until and r["actor"] for r in paused), paused
    view = json.loads(m.run(["memsched", "--system", "--config", CONFIG, "status", "tick", "--json"], check=True).stdout)["jobs"][0]
    assert not view["is_paused"] and view["paused_until"] is None
    assert m.props("memsched-tick.timer", "ActiveState", "UnitFileState") == {"ActiveState": "active", "UnitFileState": "enabled"}

    out = m.run(["memsched", "--system", "--config", CONFIG, "skip", "tick", "--next", "2", "--json"], check=True)
    (asked,) = json.loads(out.stdout)
    slots = asked["slots_ms"]
    wait_for("a run after the skipped slots", lambda: [r for r in _runs(m) if r["started_ms"] >= slots[-1] + 3000], timeout=60)
    skipped = [r for r in _history(m) if r["result"] == "skipped" and r["reason_code"] == "manual-skip"]
    assert sorted(r["slot_ms"] for r in skipped) == slots and all(r["actor"] == asked["asked_by"] for r in skipped), (slots, skipped)
    assert [r for r in _runs(m) if slots[0] <= (r["slot_ms"] or r["started_ms"]) < slots[-1] + 3000] == []
    assert m.props("memsched-tick.timer", "ActiveState", "UnitFileState") == {"ActiveState": "active", "UnitFileState": "enabled"}

    # Off when the pause ends: it ends at the next boot, and the first start of that boot runs.
    out = m.run(["memsched", "--system", "--config", CONFIG, "pause", "tick", "--for", "10s", "--json"], check=True)
    until = json.loads(out.stdout)[0]["paused_until_ms"]
    m.poweroff()
    time.sleep(max(0.0, (until - time.time() * 1000) / 1000 + 2))  # the machine is off past the end
    m.boot()
    booted_at = int(time.time() * 1000)
    wait_for("a run in the boot after the end", lambda: [r for r in _runs(m) if r["started_ms"] >= until], timeout=60)
    view = json.loads(m.run(["memsched", "--system", "--config", CONFIG, "status", "tick", "--json"], check=True).stdout)["jobs"][0]
    assert not view["is_paused"] and booted_at > until
    assert not [r for r in _history(m) if r["result"] == "skipped" and r["reason_code"] == "paused" and r["slot_ms"] >= until]
