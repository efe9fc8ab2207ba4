"""The package's units in /usr/lib/systemd/system are installed units: doctor and install-units see
them (no "not installed", no second copy in /etc/systemd/system) while they are what the config
renders; once the config changes, doctor says they are stale and install-units overrides them in
/etc/systemd/system."""

from __future__ import annotations

import json

from harness import Machine

BUILTIN = ("toc_rollup_day", "toc_rollup_week", "toc_rollup_month", "toc_rollup_year", "compaction")
CONFIG = "/etc/memsched/memsched.toml"


def _doctor(machine: Machine) -> tuple[int, list[dict[str, str]]]:
    out = machine.run(["memsched", "doctor", "--json"])
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)["findings"]


def test_doctor_and_install_units_see_the_units_the_package_ships(machine: Machine) -> None:
    code, findings = _doctor(machine)
    assert (code, findings) == (0, []), findings
    plan = machine.run(["memsched", "install-units", "--system", "--dry-run", "--json"], check=True).json()
    assert plan["changes"] == 0 and plan["summary"]["add"] == 0, plan  # type: ignore[index]
    status = machine.run(["memsched", "status", "--json"], check=True).json()
    assert all(j["installed"] for j in status["jobs"]), status  # type: ignore[index]
    assert not list((machine.root / "etc/systemd/system").glob("memsched-*")), "nothing was copied to /etc"

    original = machine.run(["cat", CONFIG], check=True).stdout
    timer = "memsched-toc_rollup_day.timer"
    try:
        machine.run(["sh", "-c", f"cat > {CONFIG}"], input='[jobs.toc_rollup_day]\ncron = "0 30 2 * * *"\n', check=True)
        code, findings = _doctor(machine)
        assert code == 1
        assert [(f["job"], f["problem"]) for f in findings] == [("toc_rollup_day", f"/usr/lib/systemd/system/{timer} (the package's) is stale against the config")], findings
        assert f"/etc/systemd/system/{timer}" in findings[0]["fix"]
        report = machine.run(["memsched", "install-units", "--system", "--json"], check=True).json()
        assert [(u["name"], u["action"]) for u in report["units"] if u["action"] != "unchanged"] == [(timer, "add")], report  # type: ignore[index]
        props = machine.props(timer, "FragmentPath", "TimersCalendar", "ActiveState", "NeedDaemonReload")
        assert props["FragmentPath"] == f"/etc/systemd/system/{timer}" and "02:30:00" in props["TimersCalendar"], props
        assert props["ActiveState"] == "active" and props["NeedDaemonReload"] == "no", props
        assert _doctor(machine) == (0, [])
    finally:
        machine.run(["sh", "-c", f"cat > {CONFIG}"], input=original, check=True)
        machine.run(f"rm -f /etc/systemd/system/{timer} && systemctl daemon-reload && systemctl restart {timer}", check=True)
    assert _doctor(machine) == (0, [])
