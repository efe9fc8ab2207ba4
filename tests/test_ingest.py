"""Ingest: idempotent on event_id, every bad line reported by number, all-or-nothing by default."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from memsched.ops.memory import MAX_ERRORS_LISTED, IngestRejected, ingest, parse_event_line
from memsched.store import open_store
from memsched.store.sample import ulid

import random

T0 = 1_705_329_000_000  # 2024-01-15T14:30:00Z


def event(n: int, **over: object) -> dict:
    rng = random.Random(n)
    base = {
        "event_id": ulid(T0 + n * 1000, rng),
        "session_id": "s1",
        "timestamp": T0 + n * 1000,
        "event_type": "user_message",
        "role": "user",
        "text": f"message number {n} about sqlite checkpoints",
        "metadata": {"k": "v"},
        "agent": "claude",
    }
    base.update(over)
    return base


def jsonl(*items: object) -> bytes:
    out = []
    for item in items:
        out.append(item if isinstance(item, bytes) else json.dumps(item).encode())
    return b"\n".join(out) + b"\n"


@pytest.fixture
def store(tmp_path: Path):
    with open_store(tmp_path / "memory.db") as opened:
        yield opened


def test_ingest_stores_events_and_builds_the_toc(store) -> None:
    report = ingest(store, io.BytesIO(jsonl(*(event(i) for i in range(10)))))
    assert (report.lines, report.valid, report.inserted, report.invalid, report.committed) == (10, 10, 10, 0, True)
    assert store.count_events() == 10
    assert report.build is not None and report.build.days_built == 1
    assert [n.node_id for n in store.list_nodes("day")] == ["toc:day:2024-01-15"]


def test_ingest_is_idempotent_on_event_id(store) -> None:
    data = jsonl(*(event(i) for i in range(5)))
    ingest(store, io.BytesIO(data))
    versions = store.count_versions()
    again = ingest(store, io.BytesIO(data + jsonl(event(2))))
    assert (again.inserted, again.duplicates) == (0, 6)
    assert store.count_events() == 5
    assert store.count_versions() == versions  # nothing rebuilt into new versions


def test_ulids_are_case_insensitive(store) -> None:
    e = event(1)
    ingest(store, io.BytesIO(jsonl(e)))
    report = ingest(store, io.BytesIO(jsonl(dict(e, event_id=e["event_id"].lower()))))
    assert report.inserted == 0


BAD_LINES = [
    (b"{not json", "malformed JSON"),
    (b"[1, 2]", "expected a JSON object, got an array"),
    (json.dumps({k: v for k, v in event(1).items() if k not in ("role", "text")}).encode(), "missing fields: role, text"),
    (json.dumps(event(1, timestamp="2024-01-01")).encode(), "timestamp: expected milliseconds"),
    (json.dumps(event(1, timestamp=1.5)).encode(), "timestamp: expected milliseconds"),
    (json.dumps(event(1, timestamp=True)).encode(), "timestamp: expected milliseconds"),
    (json.dumps(event(1, timestamp=-5)).encode(), "timestamp: expected milliseconds"),
    (json.dumps(event(1, event_type="chat")).encode(), "event_type: expected one of session_start"),
    (json.dumps(event(1, event_type=["x"])).encode(), "event_type: expected one of"),
    (json.dumps(event(1, role="robot")).encode(), "role: expected one of user, assistant, system, tool"),
    (json.dumps(event(1, event_id="not-a-ulid")).encode(), "event_id: expected a ULID"),
    (json.dumps(event(1, session_id="")).encode(), "session_id: expected a non-empty string"),
    (json.dumps(event(1, text=None)).encode(), "text: expected a string, got null"),
    (json.dumps(event(1, metadata={"n": 1})).encode(), "metadata: expected an object whose values are strings"),
    (json.dumps(event(1, agent=7)).encode(), "agent: expected a string or null"),
    (json.dumps(event(1, text="lone \ud800 surrogate")).encode(), "text: contains an unpaired UTF-16 surrogate"),
    (b'{"event_id": "\xff\xfe"}', "invalid UTF-8 at byte 15"),
    # integers past Python's 4300-digit conversion limit are named with their field, not a crash
    (json.dumps(event(1, timestamp=0)).replace('"timestamp": 0', '"timestamp": ' + "9" * 4301).encode(), "timestamp: expected milliseconds since the epoch as an integer (0 to 253402300799999), got an integer of 4301 digits"),
    (json.dumps(event(1, timestamp=0)).replace('"timestamp": 0', '"timestamp": -' + "1" * 5000).encode(), "timestamp: expected milliseconds since the epoch as an integer (0 to 253402300799999), got an integer of 5000 digits"),
    (json.dumps(event(1, text="")).replace('"text": ""', '"text": ' + "7" * 4301).encode(), "text: expected a string, got an integer of 4301 digits"),
    (json.dumps(event(1, metadata={})).replace('"metadata": {}', '"metadata": {"n": ' + "7" * 4400 + "}").encode(), "metadata: expected an object whose values are strings"),
    (json.dumps(event(1, timestamp=253_402_300_800_000)).encode(), "timestamp: expected milliseconds since the epoch as an integer (0 to 253402300799999)"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_LINES, ids=[r for _, r in BAD_LINES])
def test_each_kind_of_bad_line_is_named(line: bytes, reason: str) -> None:
    parsed = parse_event_line(line)
    assert isinstance(parsed, str) and reason in parsed


def test_a_bad_line_rejects_the_whole_file_and_lists_every_bad_line(store) -> None:
    data = jsonl(event(0), b"{oops", event(2), event(3, role="robot"), event(4))
    with pytest.raises(IngestRejected) as caught:
        ingest(store, io.BytesIO(data), name="events.jsonl")
    report = caught.value.report
    assert [(e.line, e.reason.split(":")[0]) for e in report.errors] == [(2, "malformed JSON"), (4, "role")]
    assert not report.committed and caught.value.exit_code == 2
    assert "events.jsonl: 2 invalid lines; nothing was ingested" in str(caught.value)
    assert "line 2: malformed JSON" in str(caught.value) and "line 4: role" in str(caught.value)
    assert store.count_events() == 0
    assert store.pending_days() == [] and store.list_nodes() == []


def test_skip_invalid_commits_the_good_lines_only(store) -> None:
    data = jsonl(event(0), b"{oops", event(2), b"", event(4, role="robot"))
    report = ingest(store, io.BytesIO(data), skip_invalid=True)
    assert report.committed and report.inserted == 2
    assert [e.line for e in report.errors] == [2, 5]  # the blank line 4 is skipped, not an error
    assert store.count_events() == 2


def test_huge_line_is_refused_without_reading_it_whole(store) -> None:
    huge = json.dumps(event(1, text="x" * 5000)).encode()
    data = jsonl(event(0), huge, event(2))
    with pytest.raises(IngestRejected) as caught:
        ingest(store, io.BytesIO(data), max_line_bytes=1000)
    [error] = caught.value.report.errors
    assert error.line == 2 and error.reason == f"line too long: {len(huge)} bytes (limit 1000)"
    report = ingest(store, io.BytesIO(data), max_line_bytes=1000, skip_invalid=True)
    assert report.inserted == 2


def test_line_exactly_at_the_limit_is_accepted(store) -> None:
    line = json.dumps(event(1))
    data = (line + "\r\n").encode()
    report = ingest(store, io.BytesIO(data), max_line_bytes=len(line))
    assert report.inserted == 1


def test_error_listing_is_capped_but_counted(store) -> None:
    data = b"{bad\n" * (MAX_ERRORS_LISTED + 25)
    with pytest.raises(IngestRejected) as caught:
        ingest(store, io.BytesIO(data))
    report = caught.value.report
    assert report.invalid == MAX_ERRORS_LISTED + 25 and len(report.errors) == MAX_ERRORS_LISTED
    assert "... and 25 more" in str(caught.value)


def test_utf8_bom_and_unknown_fields_are_tolerated(store) -> None:
    data = b"\xef\xbb\xbf" + jsonl(dict(event(0), future_field={"x": 1}), dict(event(1), metadata=None, agent=None))
    report = ingest(store, io.BytesIO(data))
    assert report.inserted == 2


def test_a_batch_larger_than_one_insert_chunk_is_still_one_transaction(store) -> None:
    good = [event(i) for i in range(4500)]
    with pytest.raises(IngestRejected):
        ingest(store, io.BytesIO(jsonl(*good, b"{bad")), build=False)
    assert store.count_events() == 0


def test_the_valid_lines_spill_to_a_temporary_file_and_are_all_ingested(store, monkeypatch: pytest.MonkeyPatch) -> None:
    from memsched.ops import memory

    monkeypatch.setattr(memory, "SPOOL_MEMORY_BYTES", 4096)
    monkeypatch.setattr(memory, "BATCH_ROWS", 7)
    items = [event(i) for i in range(100)]
    report = ingest(store, io.BytesIO(jsonl(*items)))
    assert report.inserted == 100 and store.count_events() == 100


def test_a_spool_that_cannot_be_written_ingests_nothing_and_says_why(store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tempfile

    from memsched.errors import MemschedError
    from memsched.ops import memory

    monkeypatch.setattr(memory, "SPOOL_MEMORY_BYTES", 1024)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-directory"))
    with pytest.raises(MemschedError, match=r"cannot hold the valid lines until the input is read: .*no-such-directory.*TMPDIR.*nothing was ingested") as caught:
        ingest(store, io.BytesIO(jsonl(*(event(i) for i in range(100)))))
    assert caught.value.exit_code == 1 and store.count_events() == 0 and store.pending_days() == []


def _huge_timestamp_line(n: int, digits: int = 4301) -> bytes:
    return json.dumps(event(n, timestamp=0)).replace('"timestamp": 0', '"timestamp": ' + "1" * digits).encode()


def test_a_timestamp_of_thousands_of_digits_is_an_invalid_line_not_a_crash(store) -> None:
    data = jsonl(event(0), _huge_timestamp_line(1), event(2))
    with pytest.raises(IngestRejected) as caught:
        ingest(store, io.BytesIO(data), name="big.jsonl")
    assert caught.value.exit_code == 2
    [error] = caught.value.report.errors
    assert error.line == 2 and error.reason.startswith("timestamp: ") and "4301 digits" in error.reason
    assert store.count_events() == 0
    report = ingest(store, io.BytesIO(data), skip_invalid=True)
    assert (report.inserted, [e.line for e in report.errors]) == (2, [2])
    assert store.count_events() == 2 and store.pending_days() == []


def test_a_huge_integer_in_an_unknown_field_is_ignored_like_the_field(store) -> None:
    line = json.dumps(dict(event(0), future=0)).replace('"future": 0', '"future": ' + "5" * 6000).encode()
    report = ingest(store, io.BytesIO(jsonl(line)))
    assert report.inserted == 1 and report.invalid == 0


def test_events_at_the_first_and_last_timestamps_are_built_and_later_ingests_still_work(store) -> None:
    from memsched.ops.memory import MAX_TIMESTAMP_MS

    edges = [event(1, timestamp=MAX_TIMESTAMP_MS), event(2, timestamp=0), event(3, timestamp=MAX_TIMESTAMP_MS - 1)]
    report = ingest(store, io.BytesIO(jsonl(*edges)))
    assert report.inserted == 3 and report.build is not None and report.build.days_built == 2
    assert store.pending_days() == []
    ids = {n.node_id for n in store.list_nodes()}
    assert {"toc:day:9999-12-31", "toc:week:9999:W52", "toc:month:9999:12", "toc:year:9999"} <= ids
    assert {"toc:day:1970-01-01", "toc:week:1970:W01", "toc:month:1970:01", "toc:year:1970"} <= ids
    later = ingest(store, io.BytesIO(jsonl(*(event(i) for i in range(10, 15)))))  # an ordinary file afterwards
    assert later.inserted == 5 and store.pending_days() == []
    assert "toc:day:2024-01-15" in {n.node_id for n in store.list_nodes("day")}


_JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.text(max_size=5), st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**20), 10**20), st.sampled_from([0, 1, 253_402_300_799_999, 253_402_300_800_000, -1]),
)
_FIELD_VALUES = {
    "event_id": st.one_of(st.just(None), st.sampled_from(["01HM6X8Z3ZC0000000000000AA", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "01hm6x8z3zc0000000000000ab"]), _JSON_SCALARS),
    "session_id": st.one_of(st.sampled_from(["s", "", "\x00", "\u2028"]), _JSON_SCALARS),
    "timestamp": st.one_of(st.integers(0, 253_402_300_799_999), st.sampled_from([0, 253_402_300_799_999, 253_402_300_800_000, -1, 2**63, -(2**63) - 1]), _JSON_SCALARS),
    "event_type": st.one_of(st.sampled_from(["user_message", "tool_result", "session_end", "chat"]), _JSON_SCALARS),
    "role": st.one_of(st.sampled_from(["user", "assistant", "system", "tool", "robot"]), _JSON_SCALARS),
    "text": st.one_of(st.text(max_size=300), _JSON_SCALARS),
    "metadata": st.one_of(st.dictionaries(st.text(max_size=3), st.one_of(st.text(max_size=3), _JSON_SCALARS), max_size=2), _JSON_SCALARS),
    "agent": st.one_of(st.text(max_size=5), _JSON_SCALARS),
}


@st.composite
def _event_lines(draw) -> bytes:
    """One JSON Lines line: an event object with each field drawn valid, invalid, or left out."""
    obj = {name: draw(values) for name, values in _FIELD_VALUES.items() if draw(st.integers(0, 9))}
    line = json.dumps(obj, allow_nan=True)
    if draw(st.booleans()) and '"timestamp": ' in line:  # a timestamp past the integer conversion limit
        line = json.dumps(dict(obj, timestamp=0)).replace('"timestamp": 0', '"timestamp": ' + "3" * draw(st.integers(4290, 4400)))
    return line.encode()


@settings(
    max_examples=60,
    deadline=None,
    derandomize=os.environ.get("MEMSCHED_HYPOTHESIS_RANDOM") != "1",
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lines=st.lists(_event_lines(), min_size=1, max_size=6))
def test_whatever_ingest_accepts_or_rejects_never_wedges_a_later_ingest(tmp_path_factory, lines: list[bytes]) -> None:
    """Property: every line is either stored and built, or reported by number; the next ordinary ingest works."""
    with open_store(tmp_path_factory.mktemp("wedge") / "memory.db") as fresh:
        report = ingest(fresh, io.BytesIO(b"\n".join(lines) + b"\n"), skip_invalid=True)
        assert report.valid + report.invalid == len(lines)
        assert sorted(e.line for e in report.errors) == [i for i, line in enumerate(lines, 1) if isinstance(parse_event_line(line), str)]
        assert fresh.pending_days() == []  # everything committed was built
        later = ingest(fresh, io.BytesIO(jsonl(*(event(i) for i in range(100, 103)))))
        assert later.inserted == 3 and later.invalid == 0 and fresh.pending_days() == []
