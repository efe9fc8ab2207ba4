"""`memsched ingest`, `memsched toc` and `memsched toc show`, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memsched.store.sample import generate_events, to_jsonl

MEMSCHED = [sys.executable, "-m", "memsched"]
JAN_15_2024 = 1_705_276_800_000


def run(*args: str, home: Path, stdin: bytes | None = None, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MEMSCHED_SCOPE="user", XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"), HOME=str(home))
    env.pop("MEMSCHED_CONFIG", None)
    if config is not None:
        env["MEMSCHED_CONFIG"] = str(config)
    proc = subprocess.run([*MEMSCHED, *args], capture_output=True, input=stdin, env=env, timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def assert_clean(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "database is locked" not in proc.stdout + proc.stderr
    for needle in needles:
        assert needle in proc.stderr + proc.stdout, (needle, proc.stderr, proc.stdout)


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(to_jsonl(generate_events(JAN_15_2024, 3, seed=5))))
    return path


def test_ingest_then_toc_uses_the_xdg_data_store(tmp_path: Path, events_file: Path) -> None:
    proc = run("ingest", str(events_file), "--json", home=tmp_path)
    assert_clean(proc, 0)
    report = json.loads(proc.stdout)
    assert report["committed"] and report["inserted"] > 100 and report["build"]["days_built"] == 3
    assert (tmp_path / "data" / "memsched" / "memory.db").is_file()

    again = run("ingest", str(events_file), home=tmp_path)
    assert_clean(again, 0, "0 events ingested", f"{report['inserted']} already stored")

    toc = run("toc", home=tmp_path)
    assert_clean(toc, 0)
    lines = toc.stdout.splitlines()
    assert lines[0].split() == ["NODE", "TITLE", "STATUS", "VERSION", "CHILDREN", "TOPIC"]
    assert lines[1].startswith("toc:year:2024 ") and "pending" in lines[1]
    assert any(line.startswith("    toc:week:2024:W03") for line in lines)
    assert any(line.startswith("      toc:day:2024-01-15  Monday, January 15, 2024") for line in lines)

    days = json.loads(run("toc", "--level", "day", "--json", home=tmp_path).stdout)
    assert [d["node_id"] for d in days] == ["toc:day:2024-01-15", "toc:day:2024-01-16", "toc:day:2024-01-17"]
    assert days[0]["bullets"] == [{"text": "Summary pending...", "grip_ids": []}]

    segment_id = days[0]["child_node_ids"][0]
    shown = run("toc", "show", segment_id, home=tmp_path)
    assert_clean(shown, 0, "level segment", "grips:", "January 15, 2024 at ")
    detail = json.loads(run("toc", "show", segment_id, "--json", home=tmp_path).stdout)
    assert detail["parent_id"] == "toc:day:2024-01-15" and len(detail["grips"]) >= 3
    assert all(len(g["excerpt"]) <= 200 for g in detail["grips"])


def test_ingest_from_stdin_and_explicit_store(tmp_path: Path, events_file: Path) -> None:
    store = tmp_path / "elsewhere" / "m.db"
    proc = run("ingest", "-", "--store", str(store), home=tmp_path, stdin=events_file.read_bytes())
    assert_clean(proc, 0, "<stdin>:")
    assert store.is_file()
    listing = run("toc", "--store", str(store), "--level", "month", home=tmp_path)
    assert_clean(listing, 0, "toc:month:2024:01")


def test_store_path_from_config(tmp_path: Path, events_file: Path) -> None:
    config = tmp_path / "memsched.toml"
    config.write_text('[store]\npath = "stores/mine.db"\nbusy_timeout = "5s"\n')
    assert_clean(run("ingest", str(events_file), home=tmp_path, config=config), 0)
    assert (tmp_path / "stores" / "mine.db").is_file()


def test_bad_lines_exit_2_with_line_numbers_and_nothing_stored(tmp_path: Path) -> None:
    lines = list(to_jsonl(generate_events(JAN_15_2024, 1, seed=2)))
    bad = lines[:3] + [b"{broken\n", b'{"event_id": 1}\n', b"\xff\xfe\n"] + lines[3:6]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"".join(bad))
    proc = run("ingest", str(path), home=tmp_path)
    assert_clean(proc, 2, "3 invalid lines; nothing was ingested", "line 4: malformed JSON", "line 5: missing fields", "line 6: invalid UTF-8")
    assert "--skip-invalid" in proc.stderr
    count = json.loads(run("toc", "--json", home=tmp_path).stdout)
    assert count == []

    as_json = run("ingest", str(path), "--json", home=tmp_path)
    assert as_json.returncode == 2 and json.loads(as_json.stdout)["invalid"] == 3

    skipped = run("ingest", str(path), "--skip-invalid", home=tmp_path)
    assert_clean(skipped, 0, "6 events ingested", "3 invalid lines skipped", "warning: ", "line 5: missing fields")


def test_usage_errors_name_the_argument(tmp_path: Path) -> None:
    assert_clean(run("ingest", str(tmp_path / "missing.jsonl"), home=tmp_path), 2, "FILE", "no such file")
    assert_clean(run("ingest", str(tmp_path), home=tmp_path), 2, "is a directory")
    assert_clean(run("toc", "--level", "decade", home=tmp_path), 2, "--level 'decade': expected one of year, month, week, day, segment")
    assert_clean(run("toc", "show", "toc:week:2024:3", home=tmp_path), 2, "is not a TOC node id")
    assert_clean(run("toc", "show", "toc:day:2024-01-15", home=tmp_path), 2, "NODE_ID 'toc:day:2024-01-15': no such node")
    assert_clean(run("toc", "show", "toc:day:2024-01-15", "--version", "0", home=tmp_path), 2, "--version 0")
    config = tmp_path / "bad.toml"
    config.write_text('[store]\nbusy_timeout = "soon"\n[summarizer]\nkind = "gpt"\n')
    assert_clean(run("toc", home=tmp_path, config=config), 2, "store.busy_timeout", "summarizer.kind")


def test_a_store_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    assert_clean(run("toc", "--store", str(junk), home=tmp_path), 1, str(junk), "not an SQLite database")


def test_a_slow_stdin_holds_no_lock_so_a_rollup_runs_meanwhile(tmp_path: Path) -> None:
    # Issue 12.8: `memsched ingest -` fed slowly held the write lock from its first batch
    # to the end of the input, and a rollup beside it failed with StoreBusyError. Now the
    # input is read and validated first: while it stalls, other writers commit at once.
    from memsched.jobs.rollup import run_rollup
    from memsched.store import open_store
    from memsched.summarize import LocalSummarizer

    lines = list(to_jsonl(generate_events(JAN_15_2024, 20, seed=3)))
    assert len(lines) > 2 * 2000  # more than one insert batch arrives before the stall
    db = tmp_path / "memory.db"
    with open_store(db) as store:
        from memsched.ops.memory import ingest

        ingest(store, iter(to_jsonl(generate_events(JAN_15_2024 - 10 * 86_400_000, 3, seed=4))))
    env = dict(os.environ, MEMSCHED_SCOPE="user", XDG_CONFIG_HOME=str(tmp_path / "config"), HOME=str(tmp_path))
    env.pop("MEMSCHED_CONFIG", None)
    proc = subprocess.Popen([*MEMSCHED, "ingest", "-", "--store", str(db), "--json"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    half = len(lines) // 2
    proc.stdin.write(b"".join(lines[:half]))
    proc.stdin.flush()
    probes, failures = 0, []
    deadline = time.monotonic() + 4.0  # the input stalls this long; the first half is read within it
    with open_store(db, busy_timeout_ms=500) as other:
        while time.monotonic() < deadline:
            try:
                run_rollup(other, "day", now_ms=JAN_15_2024, min_age_ms=0, summarizer=LocalSummarizer())
                with other.write("probe"):
                    pass
            except Exception as exc:  # noqa: BLE001 - the probe reports what went wrong
                failures.append(repr(exc))
            probes += 1
            time.sleep(0.1)
    out, err = proc.communicate(b"".join(lines[half:]), timeout=120)
    assert proc.returncode == 0, err.decode()
    assert failures == [] and probes > 5, failures[:3]
    report = json.loads(out)
    assert report["committed"] and report["inserted"] == len(lines)


def test_ingest_never_crashes_or_wedges_on_extreme_timestamps(tmp_path: Path) -> None:
    """Issue 13: a 4301-digit timestamp is an invalid line (exit 2, or skipped); December 9999 builds and wedges nothing."""
    line = '{"event_id":"01HM6X8Z3ZC0000000000000%s","session_id":"s","timestamp":%s,"event_type":"user_message","role":"user","text":"hi"}\n'
    big = tmp_path / "big.jsonl"
    big.write_text(line % ("AA", 1_705_329_000_000) + line % ("AB", "1" * 4301))
    assert_clean(run("ingest", str(big), home=tmp_path), 2, "1 invalid line; nothing was ingested", "line 2: timestamp: ", "4301 digits")
    assert_clean(run("ingest", str(big), "--skip-invalid", home=tmp_path), 0, "1 event ingested", "line 2: timestamp: ")
    last = tmp_path / "last.jsonl"
    last.write_text(line % ("AC", 253_402_300_799_999))
    assert_clean(run("ingest", str(last), home=tmp_path), 0, "1 event ingested")
    ordinary = tmp_path / "ordinary.jsonl"
    ordinary.write_text(line % ("AD", 1_705_329_060_000))
    assert_clean(run("ingest", str(ordinary), home=tmp_path), 0, "1 event ingested")
    toc = json.loads(run("toc", "--json", home=tmp_path).stdout)
    assert "toc:year:9999" in json.dumps(toc) and "toc:year:2024" in json.dumps(toc)
    for node in ("toc:month:9999:12", "toc:week:9999:W52", "toc:year:9999"):
        assert_clean(run("toc", "show", node, home=tmp_path), 0, "9999-12-31 23:59:59.999Z")
        assert json.loads(run("toc", "show", node, "--json", home=tmp_path).stdout)["end_time"] == 253_402_300_799_999
    assert_clean(run("toc", home=tmp_path), 0, "toc:day:9999-12-31")
