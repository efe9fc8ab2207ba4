"""The Debian package on systemd as PID 1 (252 and 257): every built-in job runs as the `memsched`
user under the full hardening and succeeds; `systemd-analyze security` (online) scores every
service we ship at 2.0 or lower; after install-units, pause and resume no unit is left
NeedDaemonReload, and doctor reports one that is."""

from __future__ import annotations

import json
import re

from harness import Machine

BUILTIN = ("toc_rollup_day", "toc_rollup_week", "toc_rollup_month", "toc_rollup_year", "compaction", "store_verify")

# What `systemctl show` must report for each job's service: the hardening as loaded by PID 1.
HARDENING = {
    "User": "memsched",
    "Group": "memsched",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "PrivateUsers": "yes",
    "PrivateNetwork": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictSUIDSGID": "yes",
    "RestrictRealtime": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictNamespaces": "yes",
    "CapabilityBoundingSet": "",
}


def _uid(machine: Machine, user: str) -> int:
    return int(machine.run(["id", "-u", user], check=True).stdout)


def _journal_entries(machine: Machine, *match: str) -> list[dict[str, str]]:
    out = machine.run(["journalctl", "-b", "--no-pager", "-o", "json", *match], check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_every_builtin_job_runs_as_memsched_under_the_full_hardening(machine: Machine) -> None:
    memsched_uid = _uid(machine, "memsched")
    # Every job of the package's config (the built-in ones), not a list kept here.
    jobs = [j["job_name"] for j in machine.run(["memsched", "status", "--json"], check=True).json()["jobs"]]  # type: ignore[index]
    assert set(BUILTIN) <= set(jobs), jobs
    for job in jobs:
        unit = f"memsched-{job}.service"
        run = machine.run(["memsched", "run", job, "--wait"], timeout=300)
        assert run.returncode == 0, f"{job}: {run.stdout}{run.stderr}"
        props = machine.props(unit, "Result", "ExecMainStatus", "FragmentPath", "LoadState", "IPAddressDeny", *HARDENING)
        # The package's unit, where the package puts it (bookworm's 252 finds it through /lib -> /usr/lib).
        assert props["LoadState"] == "loaded" and props["FragmentPath"] in (f"/usr/lib/systemd/system/{unit}", f"/lib/systemd/system/{unit}"), props
        assert props["Result"] == "success" and props["ExecMainStatus"] == "0", (job, props)
        wrong = {k: (props.get(k), v) for k, v in HARDENING.items() if props.get(k) != v}
        if set(props["IPAddressDeny"].split()) != {"0.0.0.0/0", "::/0"}:
            wrong["IPAddressDeny"] = (props["IPAddressDeny"], "any")
        assert not wrong, f"{unit}: hardening as loaded differs (got, wanted): {wrong}"
        # The job's own log lines come from a process of uid memsched, not from root.
        lines = [e for e in _journal_entries(machine, f"SYSLOG_IDENTIFIER=memsched-{job}") if e.get("_PID") != "1"]
        assert lines, f"{job} logged nothing"
        assert {e["_UID"] for e in lines} == {str(memsched_uid)}, {e["_UID"] for e in lines}
        assert any(re.search(rf"run \d+ of {job} success", e["MESSAGE"]) for e in lines), [e["MESSAGE"] for e in lines]
    # The run registry recorded each run, and it belongs to the memsched user.
    status = machine.run(["memsched", "status", "--json"], check=True).json()
    counts = {j["job_name"]: (j["run_count"], j["last_result"]) for j in status["jobs"]}  # type: ignore[index]
    for job in jobs:
        assert counts[job][0] >= 1 and counts[job][1] == "success", counts
    owner = machine.run(["stat", "-c", "%U:%G %a", "/var/lib/memsched/registry.db"], check=True).stdout.split()
    assert owner[0] == "memsched:memsched", owner


def test_systemd_analyze_security_scores_every_shipped_service_2_or_lower(machine: Machine) -> None:
    shipped = sorted(p.name for p in (machine.root / "usr/lib/systemd/system").glob("memsched*.service"))
    assert f"memsched-{BUILTIN[0]}.service" in shipped and "memsched-failure@.service" in shipped, shipped
    for name in shipped:
        # A template is scored through an instance (what OnFailure= starts).
        unit = name.replace("@.service", "@compaction.service")
        out = machine.run(["systemd-analyze", "security", "--no-pager", unit])
        assert out.returncode == 0, out.stderr
        score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
        assert score, out.stdout[-500:]
        assert float(score.group(1)) <= 2.0, f"{unit}: {score.group(0)}"


TIMERS = [f"memsched-{job}.timer" for job in BUILTIN]
UNITS = [*TIMERS, *(f"memsched-{job}.service" for job in BUILTIN), "memsched-failure@compaction.service"]


def _needing_reload(machine: Machine) -> list[str]:
    """Return the units of the built-in jobs the manager reports NeedDaemonReload=yes for."""
    out = machine.run(["systemctl", "show", "--property=Id", "--property=NeedDaemonReload", *UNITS], check=True).stdout
    units = [dict(line.split("=", 1) for line in block.splitlines() if "=" in line) for block in out.split("\n\n")]
    assert sorted(u["Id"] for u in units) == sorted(UNITS), out
    return sorted(u["Id"] for u in units if u["NeedDaemonReload"] == "yes")


def test_no_unit_needs_daemon_reload_after_install_units_pause_and_resume(machine: Machine) -> None:
    assert _needing_reload(machine) == [], "right after boot"
    config = "/etc/memsched/memsched.toml"
    original = machine.run(["cat", config], check=True).stdout
    changed = '[jobs.toc_rollup_week]\ncron = "0 30 2 * * 0"\n'
    steps = [
        (changed, ["memsched", "install-units", "--system", "--json"]),  # writes an override of the package's timer
        (None, ["memsched", "pause", "toc_rollup_week"]),
        (None, ["memsched", "resume", "toc_rollup_week"]),
        (original, ["memsched", "install-units", "--system", "--json"]),  # and back
    ]
    try:
        for new_config, step in steps:
            if new_config is not None:
                machine.run(["sh", "-c", f"cat > {config}"], input=new_config, check=True)
            out = machine.run(step, timeout=300)
            assert out.returncode == 0, f"{step}: {out.stdout}{out.stderr}"
            assert _needing_reload(machine) == [], f"after {' '.join(step[1:])}"
            status = machine.run(["systemctl", "status", "--no-pager", "memsched-toc_rollup_week.timer"])
            assert "changed on disk" not in status.stdout + status.stderr
        assert (machine.root / "etc/systemd/system/memsched-toc_rollup_week.timer").exists(), "install-units did write"
        doctor = machine.run(["memsched", "doctor", "--json"])
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        # And if one ever is (the package's unit file changed behind the manager's back), doctor says so.
        machine.run("touch -d tomorrow /usr/lib/systemd/system/memsched-toc_rollup_month.timer", check=True)
        assert _needing_reload(machine) == ["memsched-toc_rollup_month.timer"]
        doctor = machine.run(["memsched", "doctor", "--json"])
        assert doctor.returncode == 1
        findings = json.loads(doctor.stdout)["findings"]
        assert [f["job"] for f in findings] == ["toc_rollup_month"], findings
        assert "memsched-toc_rollup_month.timer" in findings[0]["problem"] and "NeedDaemonReload" in findings[0]["problem"], findings
    finally:
        # Back to the package's units, enabled as the package leaves them.
        machine.run(["sh", "-c", f"cat > {config}"], input=original, check=True)
        machine.run(["memsched", "resume", "toc_rollup_week"], timeout=300)
        machine.run("rm -f /etc/systemd/system/memsched-toc_rollup_week.* && systemctl daemon-reload", check=True)
        machine.run(["systemctl", "enable", "--now", *TIMERS], check=True)
    assert _needing_reload(machine) == []
