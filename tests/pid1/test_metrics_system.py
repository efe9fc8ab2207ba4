"""Metrics in system scope, on systemd as PID 1 (issue 15): the hardened job units (ProtectSystem=strict,
User=memsched) rewrite the textfile atomically in its directory, which must therefore be writable to
them (ReadWritePaths= names the directory, not the file: a rename replaces the file)."""

from __future__ import annotations

from harness import Machine, wait_for

TEXTFILE = "/srv/metrics/memsched.prom"


def _metric(machine: Machine, name: str, job: str) -> str | None:
    text = machine.run(["cat", TEXTFILE], check=True).stdout
    prefix = f'{name}{{job_name="{job}"}} '
    return next((line[len(prefix):] for line in text.splitlines() if line.startswith(prefix)), None)


def test_hardened_jobs_rewrite_the_metrics_textfile(fresh_machine) -> None:
    m = fresh_machine("bookworm")
    # A directory the memsched user may write and node_exporter (another user) may read.
    m.run(["install", "-d", "-o", "memsched", "-g", "memsched", "-m", "0755", "/srv/metrics"], check=True)
    m.run(["sed", "-i", f's|^\\[metrics\\]$|[metrics]\\ntextfile = "{TEXTFILE}"|', "/etc/memsched/memsched.toml"], check=True)
    install = m.run(["memsched", "install-units"], timeout=300)
    assert install.returncode == 0, (install.stdout, install.stderr)
    assert _metric(m, "memsched_job_runs_total", "toc_rollup_day") == "0", "install-units writes the file"
    service = m.run(["systemctl", "cat", "memsched-toc_rollup_day.service"], check=True).stdout
    assert 'ReadWritePaths="/srv/metrics"' in service, service
    run = m.run(["memsched", "run", "toc_rollup_day", "--wait"], timeout=300)
    assert run.returncode == 0, (run.stdout, run.stderr)
    wait_for("the run's metrics", lambda: _metric(m, "memsched_job_runs_total", "toc_rollup_day") == "1", 60)
    owner = m.run(["stat", "-c", "%U %a", TEXTFILE], check=True).stdout.split()
    assert owner == ["memsched", "644"], "written by the job, as the memsched user, readable by node_exporter"
    warnings = m.run(["journalctl", "--no-pager", "-o", "cat", "-u", "memsched-toc_rollup_day.service"], check=True).stdout
    assert "cannot write metrics" not in warnings, warnings
