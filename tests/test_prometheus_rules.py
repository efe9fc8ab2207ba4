"""The shipped Prometheus rules, checked and unit-tested with Debian's promtool; the textfile linted by it too."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from memsched.config.load import load_config
from memsched.metrics import _HELP, render
from memsched.registry import Registry
from memsched_testing import command_job, write_config

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus" / "memsched.rules.yml"
RULE_TESTS = ROOT / "tests" / "prometheus" / "memsched.rules.test.yml"


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: scripts/bootstrap installs Debian's prometheus package"
    return path


def alert_names() -> list[str]:
    return re.findall(r"^\s*- alert: (\w+)$", RULES.read_text(), re.M)


def test_promtool_check_rules_accepts_the_shipped_file() -> None:
    proc = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in proc.stdout
    assert alert_names() == [
        "MemschedJobFailed", "MemschedJobLate", "MemschedJobPausedTooLong", "MemschedJobLostSlots",
        "MemschedJobSkippedSlots", "MemschedMetricsStale",
    ]


def test_promtool_unit_tests_of_every_rule_pass() -> None:
    proc = subprocess.run([promtool(), "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_rule_has_firing_and_not_firing_cases() -> None:
    text = RULE_TESTS.read_text()
    cases = re.findall(r"alertname: (\w+)\n\s+exp_alerts:( \[\])?", text)
    for name in alert_names():
        outcomes = {bool(empty) for alert, empty in cases if alert == name}
        assert outcomes == {True, False}, f"{name}: promtool cases that fire and that do not fire are both needed"


def test_the_unit_tests_fail_when_a_rule_is_wrong(tmp_path: Path) -> None:
    # The promtool cases are strict enough to catch a rule that lost one of its conditions.
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "tests" / "prometheus").mkdir(parents=True)
    shutil.copy(RULE_TESTS, tmp_path / "tests" / "prometheus")
    mutants = [
        ("unless memsched_job_paused == 1", ""),
        ("unless memsched_job_last_success_timestamp_seconds", ""),
        ("[1d]", "[30d]"),
        ('reason=~"overlap|coalesced"', 'reason=~".+"'),
        ("> memsched_job_pause_alert_after_seconds", "> 0"),
        ('{result="failed"} == 1', "== 1"),
        ("> memsched_textfile_stale_after_seconds", "> 0"),
    ]
    for old, new in mutants:
        assert old in RULES.read_text()
        (tmp_path / "prometheus" / RULES.name).write_text(RULES.read_text().replace(old, new))
        proc = subprocess.run([promtool(), "test", "rules", RULE_TESTS.name], cwd=tmp_path / "tests" / "prometheus", capture_output=True, text=True)
        assert proc.returncode != 0, f"the promtool cases did not notice {old!r} -> {new!r}"


def test_the_rules_read_only_metrics_memsched_writes_and_promtool_lints_the_textfile(tmp_path: Path) -> None:
    used = set(re.findall(r"\b(memsched_[a-z_]+)\b", "\n".join(line for line in RULES.read_text().splitlines() if "expr" in line or line.startswith(" " * 12))))
    assert used, "the rules name memsched metrics"
    assert used <= set(_HELP), f"the rules read metrics memsched does not write: {sorted(used - set(_HELP))}"
    config = load_config(write_config(tmp_path, {"j": command_job(["/bin/true"], cron="0 3 * * *")}))
    with Registry(tmp_path / "registry.db").open() as registry:
        for started, result in ((1_000, "success"), (3_000, "failed")):
            run = registry.start_run("j", trigger="manual", started_ms=started)
            registry.finish_run(run, result=result, exit_code=0 if result == "success" else 1, metadata={}, ended_ms=started + 1_000)
        registry.pause("j", "tester")
        text = render(registry, list(config.enabled_jobs.values()), config)
    written = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert used <= written, f"metrics the rules need are missing from the textfile: {sorted(used - written)}"
    proc = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True)
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr
