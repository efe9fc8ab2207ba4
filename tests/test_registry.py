"""The run registry's contract: records of slots not run (with reason codes), counting, slot accounting,
run requests, migration of an older file, and the errors of a file that is not a registry."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from memsched.errors import MemschedError
from memsched.registry import LOST_CODES, SKIP_CODES, Registry
from memsched.registry.schema import MIGRATIONS


def open_at(path: Path) -> Registry:
    return Registry(path).open()


def test_skip_and_lost_records_carry_a_code_and_count_their_slots(tmp_path: Path) -> None:
    with open_at(tmp_path / "r.db") as reg:
        run = reg.start_run("j", trigger="timer", slot_ms=1_000, started_ms=1_010)
        reg.finish_run(run, result="success", exit_code=0, ended_ms=5_000)
        reg.record_skip("j", code="overlap", reason="came during run 1", slot_ms=2_000, slot_end_ms=4_000, count=3)
        reg.record_skip("j", code="manual-skip", reason="asked", slot_ms=6_000, actor="ann@host (uid 1000)")
        reg.record_lost("j", code="start-limit", reason="systemd refused", slot_ms=7_000, slot_end_ms=9_000, count=2)
        counts = reg.counts()["j"]
        assert (counts.runs, counts.skips, counts.lost, counts.errors) == (1, 4, 2, 0)
        assert reg.slot_counts()["j"] == {("skipped", "overlap"): 3, ("skipped", "manual-skip"): 1, ("lost", "start-limit"): 2}
        history = reg.history("j")
        assert [r.result for r in history] == ["lost", "skipped", "skipped", "success"]
        lost, manual, overlap, _ = history
        assert (lost.reason_code, lost.slot_ms, lost.slot_end_ms, lost.slot_count) == ("start-limit", 7_000, 9_000, 2)
        assert manual.actor == "ann@host (uid 1000)" and manual.slot_end_ms == 6_000 and manual.slot_count == 1
        assert reg.last_skips()["j"].id == lost.id, "the latest slot not run, skipped or lost"
        assert reg.last_runs()["j"].id == run and reg.last_finished("j").id == run
        assert [r.id for r in reg.history("j", include_skips=False)] == [run]


def test_unknown_codes_and_empty_counts_are_refused(tmp_path: Path) -> None:
    with open_at(tmp_path / "r.db") as reg:
        with pytest.raises(ValueError, match="unknown skip code 'start-limit'"):
            reg.record_skip("j", code="start-limit", reason="x")
        with pytest.raises(ValueError, match="unknown lost-slot code 'overlap'"):
            reg.record_lost("j", code="overlap", reason="x")
        with pytest.raises(ValueError, match="at least one slot"):
            reg.record_skip("j", code="overlap", reason="x", count=0)
        with pytest.raises(ValueError, match="unknown run result 'skipped'"):
            reg.finish_run(reg.start_run("j", trigger="manual"), result="skipped", exit_code=0)
        assert not reg.counts().get("j") or reg.counts()["j"].skips == 0
    assert set(SKIP_CODES) == {"overlap", "coalesced", "paused", "manual-skip"}
    assert set(LOST_CODES) == {"start-limit", "start-failed", "missed"}


def test_accounting_never_moves_back_and_a_refire_is_taken_once_inside_its_window(tmp_path: Path) -> None:
    with open_at(tmp_path / "r.db") as reg:
        assert reg.slot_state("j").accounted_ms is None
        reg.mark_accounted("j", 5_000)
        reg.mark_accounted("j", 3_000)
        assert reg.slot_state("j").accounted_ms == 5_000
        reg.expect_refire("j", after_ms=10_000, before_ms=12_000)
        assert not reg.take_refire("j", 9_999), "before the run ended: not the re-fire"
        assert not reg.take_refire("j", 12_000), "at the next slot: a slot's own start"
        assert reg.take_refire("j", 10_500)
        assert not reg.take_refire("j", 10_600), "a re-fire is refused once; the next start is someone else's"
        assert reg.slot_state("j").accounted_ms == 5_000, "expecting a re-fire keeps the accounting"
        reg.expect_refire("j", after_ms=20_000, before_ms=None)
        assert not reg.take_refire("j", 20_001)


def test_two_connections_race_for_one_refire(tmp_path: Path) -> None:
    first, second = open_at(tmp_path / "r.db"), open_at(tmp_path / "r.db")
    first.expect_refire("j", after_ms=0, before_ms=100)
    assert [first.take_refire("j", 50), second.take_refire("j", 50)].count(True) == 1
    first.close()
    second.close()


def test_requests_are_claimed_by_the_run_that_starts_after_them_or_resolved(tmp_path: Path) -> None:
    with open_at(tmp_path / "r.db") as reg:
        early = reg.add_request("j", "ann", at_ms=1_000)
        late = reg.add_request("j", "bob", at_ms=3_000)
        other = reg.add_request("k", "ann", at_ms=1_000)
        run = reg.start_run("j", trigger="manual", started_ms=2_000)
        assert reg.claim_requests("j", run, before_ms=2_000) == [early]
        assert reg.get_request(early).state == "claimed" and reg.get_request(early).run_id == run
        assert [r.id for r in reg.pending_requests("j")] == [late]
        assert reg.resolve_requests([late], "refused", "a run is in progress") == 1
        assert reg.resolve_requests([late], "lost", "again") == 0, "a resolved request stays resolved"
        refused = reg.get_request(late)
        assert (refused.state, refused.reason, refused.run_id) == ("refused", "a run is in progress", None)
        assert reg.get_request(other).state == "pending"
        with pytest.raises(ValueError):
            reg.resolve_requests([other], "claimed", "no")


def _version_1_file(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO runs (job, trigger, slot_ms, started_ms, ended_ms, duration_ms, result, reason) "
        "VALUES ('j', 'timer', 5, 5, 5, 0, 'skipped', 'old skip')"
    )
    db.execute("INSERT INTO runs (job, trigger, started_ms, result) VALUES ('j', 'timer', 1, 'success')")
    db.commit()
    db.close()


def test_a_version_1_registry_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _version_1_file(path)
    with open_at(path) as reg:
        assert reg.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        skip = next(r for r in reg.history("j") if r.result == "skipped")
        assert skip.reason_code == "overlap" and skip.slot_count == 1 and skip.reason == "old skip"
        assert reg.counts()["j"].skips == 1 and reg.counts()["j"].runs == 1


@pytest.mark.parametrize("content", [b"this is not a database, it is text " * 200, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_file_that_is_not_a_registry_is_a_one_line_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "registry.db"
    path.write_bytes(content)
    with pytest.raises(MemschedError) as caught:
        Registry(path).open()
    assert str(path) in caught.value.message and "\n" not in caught.value.message


def test_a_registry_from_a_newer_memsched_is_refused_not_downgraded(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    Registry(path).open().close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.commit()
    db.close()
    with pytest.raises(MemschedError, match="newer memsched"):
        Registry(path).open()


def test_lost_and_skipped_slots_reach_status_and_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from memsched.metrics import render
    from memsched.ops.status import job_status_dict, read_status
    from memsched_testing import command_job, write_config

    from memsched.config.load import load_config

    config = load_config(write_config(tmp_path, {"j": command_job(["/bin/true"])}))
    with open_at(tmp_path / "registry.db") as reg:
        reg.record_skip("j", code="overlap", reason="during a run", slot_ms=1_000, slot_end_ms=2_000, count=2)
        reg.record_lost("j", code="start-limit", reason="refused by systemd", slot_ms=3_000, slot_end_ms=5_000, count=3)
        text = render(reg, ["j"])
    assert 'memsched_job_lost_slots_total{job_name="j",reason="start-limit"} 3' in text
    assert 'memsched_job_skips_total{job_name="j"} 2' in text
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "no-manager"))
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    (job,) = read_status(config, "user", ["j"]).jobs
    view = job_status_dict(job)
    assert (view["skip_count"], view["lost_count"]) == (2, 3)
    assert (view["last_skip_result"], view["last_skip_code"], view["last_skip_reason"]) == ("lost", "start-limit", "refused by systemd")
