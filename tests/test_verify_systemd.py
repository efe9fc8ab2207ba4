"""The verify job through a real systemd user manager: run, recorded, shown by status and doctor, failing loudly."""

from __future__ import annotations

import json
from pathlib import Path

from memsched_testing import write_config
from systemd_env import SystemdTestEnv
from test_compaction import hide_new_rows_from_index
from test_units_install import install

from memsched.store.sample import generate_events, to_jsonl

JAN_15_2024 = 1_705_276_800_000


def last_run(systemd: SystemdTestEnv, config: Path, job: str) -> dict:
    return json.loads(systemd.memsched("history", job, "--json", "--config", str(config)).stdout)[0]


def test_verify_job_result_is_shown_by_status_and_doctor_and_a_failure_is_loud(systemd: SystemdTestEnv) -> None:
    store = systemd.tmp / "store" / "memory.db"
    config = write_config(systemd.tmp, {"store_verify": {"enabled": True}, "compaction": {"enabled": True}}, extra={"store": {"path": str(store)}})
    events = systemd.tmp / "events.jsonl"
    events.write_bytes(b"".join(to_jsonl(generate_events(JAN_15_2024, 2, seed=3))))
    assert systemd.memsched("ingest", str(events), "--config", str(config)).returncode == 0
    before = systemd.memsched("doctor", "--config", str(config))
    assert f"store {store}: never fully verified" in before.stdout, before.stdout + before.stderr
    install(systemd, config)

    ran = systemd.memsched("run", "store_verify", "--wait", "--json", "--config", str(config))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert json.loads(ran.stdout)["result"] == "success"
    record = last_run(systemd, config, "store_verify")
    assert record["metadata"]["pass_complete"] == "true" and record["metadata"]["integrity"] == "ok"
    shown = json.loads(systemd.memsched("status", "--json", "--config", str(config)).stdout)["store_verification"]
    assert shown["store"] == str(store) and shown["last_result"] == "ok" and shown["last_full_verification_ms"] > 0
    assert shown["verify_jobs"] == ["store_verify"] and shown["pass_in_progress"] is None
    text = systemd.memsched("status", "--config", str(config)).stdout
    assert f"store {store}: last fully verified " in text and ": ok (" in text, text
    doctor = systemd.memsched("doctor", "--config", str(config))
    assert doctor.returncode == 0 and "last fully verified" in doctor.stdout and ": ok (" in doctor.stdout, doctor.stdout
    weekly = systemd.memsched("run", "compaction", "--wait", "--json", "--config", str(config))
    assert weekly.returncode == 0 and last_run(systemd, config, "compaction")["metadata"]["rows_checked"] == "0"  # the full pass covered them

    hide_new_rows_from_index(store)
    weekly = systemd.memsched("run", "compaction", "--wait", "--json", "--config", str(config))
    assert weekly.returncode == 1 and json.loads(weekly.stdout)["result"] == "failed", weekly.stdout
    failed = systemd.memsched("run", "store_verify", "--wait", "--json", "--config", str(config))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    record = last_run(systemd, config, "store_verify")
    assert record["result"] == "failed" and "integrity_check failed" in record["reason"] and "missing from index" in record["reason"]
    assert systemd.show("memsched-store_verify.service", "ActiveState")["ActiveState"] == "failed"
    doctor = systemd.memsched("doctor", "--json", "--config", str(config))
    assert doctor.returncode == 1
    found = json.loads(doctor.stdout)
    assert any("last full verification" in f["problem"] and "found problems: events: " in f["problem"] for f in found["findings"]), found
    assert found["store_verification"]["last_result"].startswith("events: ")
    text = systemd.memsched("status", "--config", str(config)).stdout
    assert ": FAILED: events: " in text, text
