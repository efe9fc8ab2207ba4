"""What systemd reads back is what the config meant: the units memsched renders are loaded into the
real (private) manager and every kind of setting is compared, as the manager holds it over D-Bus,
with the config: durations, sizes, percentages, paths, names, descriptions and command lines."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from memsched.config.load import load_config
from memsched.ops.units import render
from memsched.systemd.render import memsched_command
from memsched_testing import command_job, write_config
from systemd_env import SystemdTestEnv

USEC = 1000  # per ms


def bus_path(unit: str) -> str:
    """The manager's object path of a unit (sd_bus_path_encode: every byte not [A-Za-z0-9] as _xx)."""
    return "/org/freedesktop/systemd1/unit/" + "".join(
        chr(b) if chr(b).isascii() and chr(b).isalnum() else f"_{b:02x}" for b in unit.encode()
    )


def props(systemd: SystemdTestEnv, unit: str, interface: str, *names: str) -> dict[str, object]:
    """Properties of a loaded unit, exactly as the manager holds them (busctl's JSON, no formatting)."""
    out = {}
    systemd.systemctl("show", unit, "-p", "Id")  # loads the unit object
    for name in names:
        proc = systemd.run(
            "busctl", "--user", "--json=short", "get-property", "org.freedesktop.systemd1", bus_path(unit), f"org.freedesktop.systemd1.{interface}", name, check=True
        )
        out[name] = json.loads(proc.stdout)["data"]
    return out


def physical_memory_scale(permyriad: int) -> int:
    """What systemd makes of a percentage of RAM: whole pages, rounded down (physical_memory_scale())."""
    page, pages = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_PHYS_PAGES")
    return page * pages if permyriad == 10_000 else pages * permyriad // 10_000 * page


def test_every_setting_kind_reads_back_as_configured(systemd: SystemdTestEnv) -> None:
    odd = systemd.tmp / "odd dir %h $HOME 'q' \"dq\" \\ ü"
    odd.mkdir()
    description = "50% of \"$HOME\" ; 'single' \\n ünïcødé ✓ " + "é" * 990  # 2044 bytes: near the limit
    jobs = {
        "durations": command_job(["/bin/true"], cron="0 0 * * *", jitter="1h 30min", accuracy="250ms", timeout=0.001),
        "long": command_job(["/bin/true"], cron="0 0 * * *", jitter="1y", accuracy="1w 1d", timeout="1month", memory_max="0.5K", cpu_quota="0.01%"),
        "sizes": command_job(["/bin/true"], cron="0 0 * * *", memory_max="1.5G", cpu_quota="12.34%", description=description),
        "huge": command_job(["/bin/true"], cron="0 0 * * *", memory_max="18446744073709551614", cpu_quota="250%"),
        "ram": command_job(["/bin/true"], cron="0 0 * * *", memory_max="12.34%", overlap="queue"),
        "all": command_job(["/bin/true"], cron="0 0 * * *", memory_max="100%"),
        "inf": command_job(["/bin/true"], cron="0 0 * * *", memory_max="infinity", nice=-5, io_class="best-effort"),
    }
    config_path = write_config(odd, jobs, extra={"facade": {"enabled": True, "group": "adm", "watchdog": "1500ms", "drain_timeout": "2.5s"}})
    proc = systemd.memsched("install-units", "--config", str(config_path), "--json")
    assert proc.returncode == 0, proc.stderr

    def timer(job: str) -> dict[str, object]:
        return props(systemd, f"memsched-{job}.timer", "Timer", "RandomizedDelayUSec", "AccuracyUSec")

    def service(job: str) -> dict[str, object]:
        return props(systemd, f"memsched-{job}.service", "Service", "TimeoutStartUSec", "MemoryMax", "CPUQuotaPerSecUSec", "ExecStart", "Nice")

    # durations
    assert timer("durations") == {"RandomizedDelayUSec": 5_400_000 * USEC, "AccuracyUSec": 250 * USEC}
    assert service("durations")["TimeoutStartUSec"] == 1 * USEC
    assert timer("long") == {"RandomizedDelayUSec": 31_557_600_000 * USEC, "AccuracyUSec": 691_200_000 * USEC}
    assert service("long")["TimeoutStartUSec"] == 2_629_800_000 * USEC
    # systemd 252 reports a service's watchdog only while it runs: start the facade (a real server)
    systemd.systemctl("start", "memsched-grpc.service")
    try:
        grpc = props(systemd, "memsched-grpc.service", "Service", "WatchdogUSec", "TimeoutStopUSec")
    finally:
        systemd.systemctl("stop", "memsched-grpc.service")
    assert grpc == {"WatchdogUSec": 1500 * USEC, "TimeoutStopUSec": (2500 + 15_000) * USEC}
    # sizes and percentages
    assert service("sizes")["MemoryMax"] == 1_610_612_736 and service("sizes")["CPUQuotaPerSecUSec"] == 123_400
    assert service("long")["MemoryMax"] == 512 and service("long")["CPUQuotaPerSecUSec"] == 100
    assert service("huge")["MemoryMax"] == 2**64 - 2 and service("huge")["CPUQuotaPerSecUSec"] == 2_500_000
    assert service("ram")["MemoryMax"] == physical_memory_scale(1234)
    assert service("all")["MemoryMax"] == physical_memory_scale(10_000)
    assert service("inf")["MemoryMax"] == 2**64 - 1 and service("inf")["Nice"] == -5
    # names and descriptions
    shown = props(systemd, "memsched-sizes.service", "Unit", "Description", "Id")
    assert shown == {"Description": description, "Id": "memsched-sizes.service"}
    assert props(systemd, "memsched-sizes.timer", "Unit", "Description")["Description"] == description
    assert props(systemd, "memsched-grpc.socket", "Socket", "SocketGroup")["SocketGroup"] == "adm"
    assert props(systemd, "memsched-sizes.service", "Service", "SyslogIdentifier")["SyslogIdentifier"] == "memsched-sizes"
    # the command line: every argument as it was meant, the config path with %, $, quotes, a backslash
    path, argv, *_ = service("durations")["ExecStart"][0]  # type: ignore[index,misc]
    expected = [*memsched_command(), "--user", "--config", str(config_path), "exec", "durations"]
    # The manager keeps arguments unexpanded and turns $$ into $ when it runs them (the run in
    # test_units_install.test_values_arrive_in_systemd_exactly finds its config through this path);
    # the program gets no $ expansion at all, so it is stored as it is.
    assert path == expected[0] and argv == [expected[0], *(a.replace("$", "$$") for a in expected[1:])]
    assert props(systemd, "memsched-ram.service", "Service", "ExecCondition")["ExecCondition"] == []  # queue: no gate


def test_system_scope_paths_read_back_as_configured(systemd: SystemdTestEnv, tmp_path: Path) -> None:
    """ReadWritePaths= of the store's and the metrics file's directories, with spaces, quotes, % and a
    backslash: the system-scope units are loaded into the private manager (not started: only parsed)."""
    store_dir = "/srv/my data/it's \"q\" 50% $x \\ ü"
    metrics_dir = "/var/tmp/prom dir"
    config_path = write_config(
        tmp_path,
        {"one": command_job(["/bin/true"], cron="0 0 * * *")},
        extra={"store": {"path": store_dir + "/sub/../memory.db"}, "metrics": {"textfile": metrics_dir + "/memsched.prom"}},
    )
    units = {u.name: u for u in render(load_config(config_path), "system")}
    unit = units["memsched-one.service"]
    systemd.write_unit("memsched-one.service", unit.content)
    systemd.systemctl("daemon-reload")
    paths = props(systemd, "memsched-one.service", "Service", "ReadWritePaths", "User", "ExecStart")
    assert sorted(paths["ReadWritePaths"]) == sorted([store_dir, metrics_dir, str(tmp_path)])  # type: ignore[arg-type]
    assert paths["User"] == "memsched"
    assert paths["ExecStart"][0][1][-1] == "one"  # type: ignore[index]


def test_the_program_path_is_written_exactly(systemd: SystemdTestEnv, tmp_path: Path) -> None:
    """`render --memsched-path` with a $ and a %: systemd substitutes no variables in the program, so
    `$` is written as it is (issue 13: `b$$x` was "not executable"); paths systemd cannot run are refused."""
    config_path = write_config(tmp_path, {"one": command_job(["/bin/true"], cron="0 0 * * *")})
    program = "/opt/b$x/50% ü/memsched"
    out = tmp_path / "units"
    proc = systemd.memsched("render", "--config", str(config_path), "--memsched-path", program, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    systemd.write_unit("memsched-one.service", (out / "memsched-one.service").read_text())
    systemd.systemctl("daemon-reload")
    path, argv, *_ = props(systemd, "memsched-one.service", "Service", "ExecStart")["ExecStart"][0]  # type: ignore[index,misc]
    assert path == program and argv[0] == program
    for bad in ('/opt/"q"/memsched', "/opt/it's/memsched", "/opt/back\\slash/memsched", "/opt//memsched"):
        refused = systemd.memsched("render", "--config", str(config_path), "--memsched-path", bad)
        assert refused.returncode == 2 and "--memsched-path" in refused.stderr and "Traceback" not in refused.stderr, (bad, refused.stderr)
    assert sys.executable  # the suite's own interpreter ran every command above
