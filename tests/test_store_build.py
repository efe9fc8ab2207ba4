"""Building: segmentation rules, parents with placeholders, grips, and incremental == from scratch."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from memsched.ops.memory import ingest
from memsched.store import open_store
from memsched.store.models import Event
from memsched.store.sample import ulid
from memsched.store.segment import split_segments

MIN = 60_000
T0 = 1_705_312_800_000  # 2024-01-15T10:00:00Z
_rng = random.Random(7)


def ev(ts: int, text: str = "hello there", event_type: str = "user_message", role: str = "user") -> dict:
    return {"event_id": ulid(ts, _rng), "session_id": "s1", "timestamp": ts, "event_type": event_type, "role": role, "text": text}


def as_event(item: dict) -> Event:
    from memsched.store.tokens import event_tokens

    return Event(item["event_id"], item["session_id"], item["timestamp"], item["event_type"], item["role"], item["text"], tokens=event_tokens(item["event_type"], item["text"]))


def lines(items: list[dict]) -> io.BytesIO:
    return io.BytesIO(b"".join(json.dumps(i).encode() + b"\n" for i in items))


def snapshot(store) -> list[tuple]:
    """The live TOC without version numbers or write times (what incremental and scratch builds must share)."""
    out = []
    for node in store.list_nodes():
        info = store.segment_info(node.node_id) if node.level == "segment" else None
        out.append((node.node_id, node.level, node.start_time, node.end_time, node.parent_id, node.title, node.summary_title, node.bullets, node.keywords, node.child_node_ids, node.status, info))
    return out


def test_gap_over_30_minutes_starts_a_segment() -> None:
    events = [as_event(ev(T0)), as_event(ev(T0 + 30 * MIN)), as_event(ev(T0 + 60 * MIN + 1))]
    segments = split_segments(events)
    assert [len(s.events) for s in segments] == [2, 1]


def test_token_budget_and_tool_results_cut_to_1000_chars() -> None:
    big = [as_event(ev(T0 + i * MIN, "x" * 4000)) for i in range(5)]  # 1000 tokens each
    assert [len(s.events) for s in split_segments(big)] == [4, 1]
    tools = [as_event(ev(T0 + i * MIN, "y" * 40_000, "tool_result", "tool")) for i in range(17)]  # 250 tokens each
    assert [len(s.events) for s in split_segments(tools)] == [16, 1]
    huge = [as_event(ev(T0, "z" * 40_000)), as_event(ev(T0 + MIN))]
    assert [len(s.events) for s in split_segments(huge)] == [1, 1]


def test_overlap_is_the_previous_tail_within_5_minutes_and_500_tokens() -> None:
    texts = ["a" * 1200, "b" * 1200, "c" * 800, "d" * 800]  # 300, 300, 200, 200 tokens
    first = [as_event(ev(T0 + i * 2 * MIN, t)) for i, t in enumerate(texts)]  # last three within 4 minutes of the end
    second = [as_event(ev(T0 + 60 * MIN, "next"))]
    segments = split_segments(first + second)
    assert len(segments) == 2 and segments[0].overlap == ()
    assert [e.text[0] for e in segments[1].overlap] == ["c", "d"]  # b would pass 500 tokens


def test_build_links_segments_to_placeholder_parents_with_grips(tmp_path: Path) -> None:
    items = [ev(T0 + i * MIN, f"Explain sqlite checkpoint number {i}. More text.") for i in range(6)] + [ev(T0 + 120 * MIN, "Later question about timers.")]
    with open_store(tmp_path / "m.db") as store:
        report = ingest(store, lines(items))
        assert report.build.days_built == 1
        day = store.get_node("toc:day:2024-01-15")
        assert day.status == "pending" and [b.text for b in day.bullets] == ["Summary pending..."]
        assert len(day.child_node_ids) == 2 and day.parent_id == "toc:week:2024:W03"
        assert store.get_node("toc:week:2024:W03").child_node_ids == ("toc:day:2024-01-15",)
        assert store.get_node("toc:month:2024:01").child_node_ids == ("toc:week:2024:W03",)
        assert store.get_node("toc:year:2024").child_node_ids == ("toc:month:2024:01",)
        segment = store.get_node(day.child_node_ids[0])
        assert segment.node_id == f"toc:segment:2024-01-15:{items[0]['event_id']}"
        assert segment.title == "January 15, 2024 at 10:00" and segment.summary_title.startswith("Explain sqlite checkpoint number 0")
        assert 3 <= len(segment.bullets) <= 5 and 3 <= len(segment.keywords) <= 7
        grips = {g.grip_id: g for g in store.grips_of(segment.node_id)}
        own = {i["event_id"] for i in items[:6]}
        for bullet in segment.bullets:
            [grip_id] = bullet.grip_ids
            grip = grips[grip_id]
            assert grip.event_id_start in own and grip.event_id_end in own and len(grip.excerpt) <= 200
            assert grip.toc_node_id == segment.node_id


def test_late_event_resegments_its_day_and_retires_what_no_longer_exists(tmp_path: Path) -> None:
    early = [ev(T0 + i * MIN, f"first burst {i}") for i in range(3)]
    later = [ev(T0 + 60 * MIN + i * MIN, f"second burst {i}") for i in range(3)]
    bridge = ev(T0 + 31 * MIN, "a late event that bridges the gap")
    with open_store(tmp_path / "m.db") as store:
        ingest(store, lines(early + later))
        day = store.get_node("toc:day:2024-01-15")
        assert len(day.child_node_ids) == 2
        second = day.child_node_ids[1]
        report = ingest(store, lines([bridge]))
        assert report.build.segments_retired == 1
        day = store.get_node("toc:day:2024-01-15")
        assert len(day.child_node_ids) == 1 and second not in day.child_node_ids
        assert store.get_node(second) is not None  # retired, versions kept
        assert store.get_node(day.child_node_ids[0]).version == 2
        with open_store(tmp_path / "scratch.db") as scratch:
            ingest(scratch, lines(early + later + [bridge]))
            assert snapshot(scratch) == snapshot(store)


DAY = 86_400_000


@st.composite
def ingest_plans(draw: st.DrawFn) -> tuple[list[dict], list[list[int]]]:
    count = draw(st.integers(5, 60))
    offsets = sorted(draw(st.lists(st.integers(0, 3 * DAY // MIN), min_size=count, max_size=count)))
    rng = random.Random(draw(st.integers(0, 1000)))
    items = []
    for i, offset in enumerate(offsets):
        kind = rng.choice(["user_message", "assistant_message", "tool_result"])
        role = {"user_message": "user", "assistant_message": "assistant", "tool_result": "tool"}[kind]
        text = " ".join(rng.choice(["sqlite", "timer", "rollup", "week", "cache", "deploy"]) for _ in range(rng.randint(1, 700)))
        items.append({"event_id": ulid(T0 + offset * MIN, rng), "session_id": "s", "timestamp": T0 + offset * MIN, "event_type": kind, "role": role, "text": text})
    order = draw(st.permutations(range(count)))
    cuts = sorted(set(draw(st.lists(st.integers(1, count - 1), max_size=4))))
    batches = [list(order[a:b]) for a, b in zip([0, *cuts], [*cuts, count])]
    return items, batches


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ingest_plans())
def test_incremental_building_in_any_order_equals_building_from_scratch(tmp_path_factory, plan) -> None:
    items, batches = plan
    base = tmp_path_factory.mktemp("incr")
    with open_store(base / "scratch.db") as scratch, open_store(base / "incremental.db") as incremental:
        ingest(scratch, lines(items))
        for batch in batches:
            ingest(incremental, lines([items[i] for i in batch]))
        assert snapshot(incremental) == snapshot(scratch)


def test_a_queue_generation_only_grows_even_after_the_row_was_deleted(tmp_path: Path) -> None:
    # Issue 12.1: a re-created queue row restarted at generation 1, so a builder holding the
    # old entry dequeued the new one. Generations now grow, and rebuild_day reads the entry
    # again under the lock: a stale entry neither dequeues nor mis-plans the new events.
    from memsched.store.build import plan_day as plan_with
    from memsched.summarize.local import SEGMENT_SUMMARIZER

    def plan_day(state):
        return plan_with(state, SEGMENT_SUMMARIZER)

    first = [ev(T0 + i * MIN, f"burst {i}") for i in range(3)]
    late = ev(T0 - 10 * MIN, "a late event before the first segment")
    with open_store(tmp_path / "m.db") as store:
        ingest(store, lines(first + [ev(T0 + 12 * MIN, "inside")]), build=False)
        [stale] = store.pending_days()
        assert store.rebuild_day(stale, plan_day).segments_written == 1
        ingest(store, lines([late]), build=False)
        [again] = store.pending_days()
        assert again.day == stale.day and again.generation > stale.generation
        store.connection.execute("DELETE FROM build_queue WHERE day = ? AND generation = ?", (stale.day, stale.generation))  # what an old builder did
        assert store.pending_days() == [again]
        change = store.rebuild_day(stale, plan_day)  # the stale entry (min_new_ts after the late event)
        assert change.segments_written == 1 and store.pending_days() == []
        assert store.rebuild_day(stale, plan_day).segments_written == 0  # no longer queued: nothing to do
        [segment] = store.list_nodes("segment")
        assert store.segment_info(segment.node_id).start_event_id == late["event_id"]


def test_the_rollup_checkpoint_stays_at_its_high_water_mark_when_an_older_day_is_rerolled(tmp_path: Path) -> None:
    from memsched.jobs.rollup import run_rollup
    from memsched.summarize import LocalSummarizer

    days = [ev(T0 + d * DAY, f"day {d}") for d in range(3)]
    now = T0 + 10 * DAY
    with open_store(tmp_path / "m.db") as store:
        ingest(store, lines(days))
        run_rollup(store, "day", now_ms=now, min_age_ms=0, summarizer=LocalSummarizer())
        assert store.checkpoint("day").last_node_id == "toc:day:2024-01-17"
        ingest(store, lines([ev(T0 + 5 * MIN, "a late event for the first day")]))
        assert run_rollup(store, "day", now_ms=now, min_age_ms=0, summarizer=LocalSummarizer()).nodes_rolled == 1
        checkpoint = store.checkpoint("day")
        assert checkpoint.last_node_id == "toc:day:2024-01-17" and checkpoint.last_end_ms == store.get_node("toc:day:2024-01-17").end_time
        assert checkpoint.nodes_rolled == 4


def test_building_summarises_segments_with_the_summarizer_it_is_given(tmp_path: Path) -> None:
    # The store does not reach up into memsched.summarize: its caller passes the summarizer in.
    from memsched.store.build import build_pending
    from memsched.store.models import Bullet
    from memsched.summarize.base import Summary

    class Marked:
        def __init__(self) -> None:
            self.calls = 0

        def summarize_events(self, events):
            self.calls += 1
            return Summary("marked title", (Bullet("marked bullet", (events[0].event_id, events[-1].event_id)),), ("marked",))

    marked = Marked()
    with open_store(tmp_path / "m.db") as store:
        ingest(store, lines([ev(T0 + i * MIN, f"event {i}") for i in range(3)]), build=False)
        result = build_pending(store, summarizer=marked)
        assert (result.days_built, result.segments_written, marked.calls) == (1, 1, 1)
        [segment] = store.list_nodes("segment")
        assert (segment.summary_title, [b.text for b in segment.bullets], segment.keywords) == ("marked title", ["marked bullet"], ("marked",))
        assert store.pending_days() == []
