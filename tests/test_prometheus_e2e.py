"""End to end: Debian's node exporter reads memsched's textfile, a Prometheus server scrapes it with the
shipped rules loaded, and alerts about jobs in the private systemd manager fire and resolve.

Both servers are started by the test on loopback (ports chosen free), with a 1 s scrape and
evaluation interval, and stopped after it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from memsched_testing import command_job, write_config
from systemd_env import SystemdTestEnv, wait_for
from test_units_install import install

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus" / "memsched.rules.yml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: scripts/bootstrap installs Debian's {name} package"
    return path


class Stack:
    """node exporter + Prometheus on loopback; ``alerts()`` reads Prometheus' HTTP API."""

    def __init__(self, base: Path, textfile_dir: Path):
        self.base = base
        self.textfile_dir = textfile_dir
        self.procs: list[subprocess.Popen] = []
        self.exporter_port, self.prometheus_port = _free_port(), _free_port()

    def start(self) -> None:
        exporter_log = (self.base / "node-exporter.log").open("w")
        self.procs.append(subprocess.Popen(
            [
                _binary("prometheus-node-exporter"), f"--web.listen-address=127.0.0.1:{self.exporter_port}",
                "--collector.disable-defaults", "--collector.textfile", f"--collector.textfile.directory={self.textfile_dir}",
            ],
            stdout=exporter_log, stderr=subprocess.STDOUT,
        ))
        config = self.base / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "node", "static_configs": [{"targets": [f"127.0.0.1:{self.exporter_port}"]}]}],
        }))
        prometheus_log = (self.base / "prometheus.log").open("w")
        self.procs.append(subprocess.Popen(
            [
                _binary("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={self.base / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
            ],
            stdout=prometheus_log, stderr=subprocess.STDOUT,
        ))
        wait_for(lambda: self._ready(), 90, f"Prometheus to be ready (log: {self.base / 'prometheus.log'})", interval=0.5)
        wait_for(lambda: self._target_up(), 60, "Prometheus to scrape the node exporter", interval=0.5)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.prometheus_port}{path}", timeout=10) as answer:
            return json.loads(answer.read())

    def _ready(self) -> bool:
        for proc in self.procs:
            assert proc.poll() is None, f"{proc.args[0]} exited: {(self.base / 'prometheus.log').read_text()[-2000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.prometheus_port}/-/ready", timeout=5) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _target_up(self) -> bool:
        targets = self._get("/api/v1/targets")["data"]["activeTargets"]
        return any(t["health"] == "up" for t in targets)

    def query(self, expr: str) -> list[dict]:
        return self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))["data"]["result"]

    def alerts(self) -> set[tuple[str, str, str]]:
        """Return the active alerts as (alertname, job_name, state)."""
        answer = self._get("/api/v1/alerts")["data"]["alerts"]
        return {(a["labels"]["alertname"], a["labels"].get("job_name", ""), a["state"]) for a in answer}

    def rules_loaded(self) -> set[str]:
        groups = self._get("/api/v1/rules")["data"]["groups"]
        return {rule["name"] for group in groups for rule in group["rules"] if rule.get("health") != "err"}


@pytest.fixture
def stack(systemd: SystemdTestEnv) -> Iterator[Stack]:
    textfile_dir = systemd.tmp / "textfile"
    textfile_dir.mkdir()
    servers = Stack(systemd.tmp, textfile_dir)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


def test_a_failing_and_a_late_job_fire_in_prometheus_and_resolve_after_good_runs(systemd: SystemdTestEnv, stack: Stack) -> None:
    broken = systemd.tmp / "broken"
    broken.touch()
    jobs = {
        # Fails while the flag file exists; runs only when asked (a yearly calendar).
        "breaks": command_job(["/bin/sh", "-c", f"test ! -e '{broken}'"], cron="0 0 1 1 *", timeout="10s"),
        # Every 2 s: late_after = 2 s + 1 ms accuracy + 2 s timeout + 5 s grace.
        "stalls": command_job(["/bin/true"], cron="*/2 * * * * *", timeout="2s"),
        # Paused, and left paused longer than [alerts] paused_after.
        "held": command_job(["/bin/true"], cron="0 0 1 1 *"),
    }
    textfile = stack.textfile_dir / "memsched.prom"
    config = write_config(
        systemd.tmp, jobs, extra={"metrics": {"textfile": str(textfile)}, "alerts": {"late_grace": "5s", "paused_after": "2s"}}
    )
    assert stack.rules_loaded() >= {"MemschedJobFailed", "MemschedJobLate", "MemschedMetricsStale"}
    install(systemd, config)

    def stalls_runs() -> float:
        result = stack.query('memsched_job_runs_total{job_name="stalls"}')
        return float(result[0]["value"][1]) if result else 0.0

    wait_for(lambda: stalls_runs() >= 1, 60, "a timer run of stalls to reach Prometheus", interval=0.5)
    (series,) = stack.query('memsched_job_late_after_seconds{job_name="stalls"}')
    assert series["metric"]["job"] == "node", "job_name is memsched's; the scrape keeps its own job label"
    assert float(series["value"][1]) == pytest.approx(9.001)

    # A job made to fail.
    assert systemd.memsched("run", "breaks", "--wait", "--config", str(config)).returncode != 0
    wait_for(lambda: ("MemschedJobFailed", "breaks", "firing") in stack.alerts(), 60, "MemschedJobFailed for breaks", interval=0.5)

    # A job made late: its timer stopped by hand, as an operator might and forget.
    systemd.systemctl("stop", "memsched-stalls.timer")
    wait_for(lambda: ("MemschedJobLate", "stalls", "firing") in stack.alerts(), 60, "MemschedJobLate for stalls", interval=0.5)

    # A pause left in place (the pause rewrites the metrics: no run is needed for the alert to see it).
    assert systemd.memsched("pause", "held", "--config", str(config)).returncode == 0
    wait_for(lambda: ("MemschedJobPausedTooLong", "held", "firing") in stack.alerts(), 60, "MemschedJobPausedTooLong for held", interval=0.5)
    assert stack.alerts() == {
        ("MemschedJobFailed", "breaks", "firing"), ("MemschedJobLate", "stalls", "firing"), ("MemschedJobPausedTooLong", "held", "firing"),
    }, "nothing else fires: breaks and held are yearly (not late), nothing is lost or skipped, the file is fresh"
    status = json.loads(systemd.memsched("status", "--json", "--config", str(config)).stdout)
    assert {j["job_name"]: j["late"] for j in status["jobs"]} == {"breaks": False, "stalls": True, "held": False}, "status agrees with the rule"

    # Good runs, and the resume, resolve them all.
    broken.unlink()
    assert systemd.memsched("run", "breaks", "--wait", "--config", str(config)).returncode == 0
    wait_for(lambda: not any(a[0] == "MemschedJobFailed" for a in stack.alerts()), 60, "MemschedJobFailed to resolve", interval=0.5)
    assert systemd.memsched("run", "stalls", "--wait", "--config", str(config)).returncode == 0
    systemd.systemctl("start", "memsched-stalls.timer")  # the operator notices; the timer's runs keep it on time
    wait_for(lambda: not any(a[0] == "MemschedJobLate" for a in stack.alerts()), 60, "MemschedJobLate to resolve", interval=0.5)
    assert systemd.memsched("resume", "held", "--config", str(config)).returncode == 0
    wait_for(lambda: not stack.alerts(), 60, "MemschedJobPausedTooLong to resolve", interval=0.5)


def test_lost_and_skipped_slots_and_a_stale_file_fire_in_prometheus(systemd: SystemdTestEnv, stack: Stack) -> None:
    jobs = {
        # Per second, but systemd refuses all starts after two an hour: the slots are lost (start-limit).
        "limited": command_job(["/bin/true"], timeout="2s"),
        # Per second, each run takes 3 s: overlap = skip skips the slots in between.
        "slow": command_job(["/bin/sleep", "3"], timeout="5s", overlap="skip"),
    }
    textfile = stack.textfile_dir / "memsched.prom"
    config = write_config(
        systemd.tmp, jobs,
        extra={"metrics": {"textfile": str(textfile)}, "alerts": {"late_grace": "3s", "lost_slots": 0, "skipped_slots": 0}},
    )
    dropin = systemd.unit_dir / "memsched-limited.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "limit.conf").write_text("[Unit]\nStartLimitIntervalSec=1h\nStartLimitBurst=2\n")
    install(systemd, config)
    wait_for(lambda: ("MemschedJobLostSlots", "limited", "firing") in stack.alerts(), 90, "MemschedJobLostSlots for limited", interval=0.5)
    wait_for(lambda: ("MemschedJobSkippedSlots", "slow", "firing") in stack.alerts(), 90, "MemschedJobSkippedSlots for slow", interval=0.5)
    assert not {a for a in stack.alerts() if a[1] != "limited" and a[0] != "MemschedJobSkippedSlots"}, "slow is on time"

    # memsched stops running its jobs: nothing rewrites the file; stale after the longest late_after (slow's: 1 s + 1 ms + 5 s + 3 s).
    (stale_after,) = stack.query("memsched_textfile_stale_after_seconds")
    assert float(stale_after["value"][1]) == pytest.approx(9.001)
    for timer in ("memsched-limited.timer", "memsched-slow.timer"):
        systemd.systemctl("stop", timer)
    wait_for(lambda: ("MemschedMetricsStale", "", "firing") in stack.alerts(), 90, "MemschedMetricsStale", interval=0.5)
    assert ("MemschedJobLate", "slow", "firing") in stack.alerts()

    # slow runs again: the file is fresh, slow on time.
    systemd.systemctl("start", "memsched-slow.timer")
    wait_for(
        lambda: not {a for a in stack.alerts() if a[0] == "MemschedMetricsStale" or a[:2] == ("MemschedJobLate", "slow")},
        90, "MemschedMetricsStale and slow's lateness to resolve", interval=0.5,
    )
