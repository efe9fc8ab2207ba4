"""Rollups: every closed period with children is summarised once, late children re-roll their ancestors."""

from __future__ import annotations

import hashlib
import io
import json
import random
from datetime import datetime, timezone
from pathlib import Path

import pytest

from memsched.errors import UsageError
from memsched.jobs.rollup import run_rollup
from memsched.ops.memory import ingest
from memsched.store import open_store
from memsched.store.models import PLACEHOLDER_TEXT
from memsched.store.periods import chain_for_day, period_of_node_id, utc_date
from memsched.store.sample import generate_events, to_jsonl, ulid
from memsched.summarize import LocalSummarizer

HOUR = 3_600_000
LEVELS = ("day", "week", "month", "year")


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


def toc(store) -> dict[str, tuple]:
    """Every live node's full latest state except write times."""
    return {
        n.node_id: (n.level, n.start_time, n.end_time, n.parent_id, n.title, n.summary_title, n.bullets, n.keywords, n.child_node_ids, n.version, n.status)
        for n in store.list_nodes()
    }


def roll_all(store, now: int, min_age: int = HOUR) -> dict[str, object]:
    results = {}
    for level in LEVELS:
        results[level] = run_rollup(store, level, now_ms=now, min_age_ms=min_age, summarizer=LocalSummarizer())
    return results


@pytest.fixture(scope="module")
def span_events() -> list[bytes]:
    # 2020-12-20 .. 2021-02-09: ISO week 2020-W53 crosses the year, 2021-W05 crosses Jan/Feb... no: W05 is Feb 1-7;
    # 2021-W04 (Jan 25-31) and 2020-W53 (Dec 28 - Jan 3) both cross a month boundary.
    return list(to_jsonl(generate_events(ms(2020, 12, 20), 52, seed=11, sessions_per_day=(2, 3), turns_per_session=(2, 4))))


@pytest.fixture
def store(tmp_path: Path):
    with open_store(tmp_path / "memory.db") as opened:
        yield opened


def test_full_rollup_gives_the_expected_tree_bounds_and_summaries(store, span_events) -> None:
    ingest(store, iter(span_events))
    now = ms(2021, 2, 10, 12)
    roll_all(store, now)
    nodes = toc(store)
    days = sorted(n for n in nodes if n.startswith("toc:day:"))
    assert days[0] == "toc:day:2020-12-20" and days[-1] == "toc:day:2021-02-09" and len(days) == 52
    for node_id, (level, start, end, parent, title, *_rest, status) in nodes.items():
        if level == "segment":
            assert parent is not None and parent.startswith("toc:day:") and nodes[parent][1] <= start <= end <= nodes[parent][2]
            continue
        period = period_of_node_id(node_id)
        assert (start, end, parent, title) == (period.start_ms, period.end_ms, period.parent_id, period.title)
        expected = "current" if end <= now - HOUR else "pending"
        assert status == expected, node_id
    # the week crossing the year boundary keeps ISO bounds and sits in December 2020
    w53 = nodes["toc:week:2020:W53"]
    assert (w53[1], w53[2], w53[3]) == (ms(2020, 12, 28), ms(2021, 1, 4) - 1, "toc:month:2020:12")
    assert "toc:day:2021-01-02" in w53[8] and "toc:week:2020:W53" in nodes["toc:month:2020:12"][8]
    # January 2021 holds the weeks whose Thursday is in January: W01..W04 (W04 = Jan 25..31)
    assert nodes["toc:month:2021:01"][8] == ("toc:week:2021:W01", "toc:week:2021:W02", "toc:week:2021:W03", "toc:week:2021:W04")
    assert nodes["toc:year:2020"][8] == ("toc:month:2020:12",)
    assert nodes["toc:year:2021"][10] == "pending" and nodes["toc:month:2021:02"][10] == "pending"
    for node_id in ("toc:day:2021-01-05", "toc:week:2021:W02", "toc:month:2021:01", "toc:year:2020"):
        level, *_, title, summary_title, bullets, keywords, children, version, status = nodes[node_id]
        assert version == 2 and status == "current" and summary_title
        assert 3 <= len(bullets) <= 5 and 3 <= len(keywords) <= 7
        assert all(b.text != PLACEHOLDER_TEXT for b in bullets)
    # bullets of a rolled day keep the grips of the segment bullets they came from
    day_bullets = nodes["toc:day:2021-01-05"][6]
    assert any(b.grip_ids for b in day_bullets)


def test_rerun_with_nothing_new_writes_no_versions(store, span_events) -> None:
    ingest(store, iter(span_events))
    now = ms(2021, 2, 10, 12)
    roll_all(store, now)
    before, versions = toc(store), store.count_versions()
    again = roll_all(store, now + 5 * HOUR)
    assert store.count_versions() == versions and toc(store) == before
    assert all(r.versions_written == 0 and r.nodes_rolled == 0 for r in again.values())


class DigestSummarizer(LocalSummarizer):
    """The local summarizer, titled with a digest of all its input: any change below changes every ancestor."""

    name = "digest"

    def summarize_children(self, summaries):
        summary = super().summarize_children(summaries)
        digest = hashlib.sha256(repr([(s.title, s.bullets, s.keywords) for s in summaries]).encode()).hexdigest()[:12]
        return type(summary)(f"digest {digest}", summary.bullets, summary.keywords)


def late_event(ts: int, text: str) -> io.BytesIO:
    item = {"event_id": ulid(ts, random.Random(ts)), "session_id": "late", "timestamp": ts, "event_type": "user_message", "role": "user", "text": text}
    return io.BytesIO(json.dumps(item).encode() + b"\n")


@pytest.mark.parametrize("summarizer", [LocalSummarizer(), DigestSummarizer()], ids=["local", "digest"])
def test_a_late_event_rerolls_its_closed_day_week_month_and_year(store, span_events, summarizer) -> None:
    ingest(store, iter(span_events))
    now = ms(2021, 2, 10, 12)
    for level in LEVELS:
        run_rollup(store, level, now_ms=now, min_age_ms=HOUR, summarizer=summarizer)
    before = toc(store)
    late_ts = ms(2020, 12, 30, 23, 59)
    ingest(store, late_event(late_ts, "Investigate the zeppelin hangar migration plan zeppelin zeppelin."))
    chain = [p.node_id for p in chain_for_day(utc_date(late_ts))]
    assert chain == ["toc:day:2020-12-30", "toc:week:2020:W53", "toc:month:2020:12", "toc:year:2020"]
    assert store.get_node(chain[0]).status == "stale"
    results = {level: run_rollup(store, level, now_ms=now + HOUR, min_age_ms=HOUR, summarizer=summarizer) for level in LEVELS}
    after = toc(store)
    # each ancestor is re-rolled exactly when the level below it wrote a new version (its input changed)
    for below, (level, node_id) in zip(chain, list(zip(LEVELS, chain))[1:]):
        assert results[level].rolled_by_level[level] == int(after[below][9] > before[below][9]), level
    assert results["day"].rolled_by_level["day"] == 1
    assert "zeppelin" in after["toc:day:2020-12-30"][7] and after["toc:day:2020-12-30"][9] == before["toc:day:2020-12-30"][9] + 1
    for node_id in chain:
        assert after[node_id][10] == "current"
        if isinstance(summarizer, DigestSummarizer):  # content changed all the way up: one new version each
            assert after[node_id][9] == before[node_id][9] + 1, node_id
    changed = {n for n in after if after[n] != before.get(n)}
    assert changed - set(chain) <= {n for n in after if n.startswith("toc:segment:2020-12-30")}
    assert sum(r.versions_written for r in results.values()) == sum(after[n][9] - before[n][9] for n in chain)


def test_the_month_that_just_ended_is_rolled_at_the_first_run_after_it_closes(store, span_events) -> None:
    ingest(store, iter(span_events))
    just_after = ms(2021, 2, 1, 3)  # the default month job: 03:00 on the 1st, min_age 1h
    result = run_rollup(store, "month", now_ms=just_after, min_age_ms=HOUR, summarizer=LocalSummarizer())
    january = store.get_node("toc:month:2021:01")
    assert january.status == "current" and january.version == 2
    assert result.rolled_by_level["month"] == 2  # December 2020 and January 2021
    assert store.get_node("toc:day:2021-01-31").status == "current"  # levels below were brought up to date first
    assert store.get_node("toc:week:2021:W04").status == "current"
    assert store.get_node("toc:day:2021-02-01").status == "pending"  # not closed yet


def test_only_closed_periods_are_rolled_and_min_age_is_respected(store, span_events) -> None:
    ingest(store, iter(span_events))
    run_rollup(store, "day", now_ms=ms(2021, 1, 6, 0, 30), min_age_ms=HOUR, summarizer=LocalSummarizer())
    assert store.get_node("toc:day:2021-01-04").status == "current"
    assert store.get_node("toc:day:2021-01-05").status == "pending"  # closed 30 min ago only
    assert store.get_node("toc:week:2021:W01").status == "pending"  # a day job does not roll weeks
    checkpoint = store.checkpoint("day")
    assert checkpoint.last_node_id == "toc:day:2021-01-04" and checkpoint.last_end_ms == ms(2021, 1, 5) - 1


def test_should_stop_interrupts_between_nodes_and_a_rerun_finishes_identically(tmp_path: Path, span_events) -> None:
    now = ms(2021, 2, 10, 12)
    with open_store(tmp_path / "reference.db") as reference:
        ingest(reference, iter(span_events))
        roll_all(reference, now)
        expected = toc(reference)
    with open_store(tmp_path / "interrupted.db") as store:
        ingest(store, iter(span_events))
        polls = []

        def stop_after_ten() -> bool:
            polls.append(1)
            return len(polls) > 10

        progress: list[tuple[int, int, str]] = []
        first = run_rollup(store, "year", now_ms=now, min_age_ms=HOUR, summarizer=LocalSummarizer(), should_stop=stop_after_ten, progress=lambda d, t, n: progress.append((d, t, n)))
        assert first.interrupted and first.nodes_rolled == 10
        assert first.as_metadata()["interrupted"] == "true"
        assert [p[0] for p in progress if p[2].startswith("toc:")] == list(range(1, 11))
        assert all(total >= done for done, total, _ in progress)
        rest = run_rollup(store, "year", now_ms=now, min_age_ms=HOUR, summarizer=LocalSummarizer())
        assert not rest.interrupted and rest.nodes_rolled > 0
        assert store.checkpoint("day").nodes_rolled == 52  # every closed day once, none twice
        roll_all(store, now)
        assert toc(store) == expected


def test_commit_rollup_refuses_a_generation_already_rolled(store, span_events) -> None:
    ingest(store, iter(span_events))
    [node] = [n for n in store.stale_nodes("day", ms(2020, 12, 21)) if n.node_id == "toc:day:2020-12-20"]
    from memsched.jobs.rollup import roll_node

    content = roll_node(store, node, LocalSummarizer())
    assert store.commit_rollup(node, content) is True
    assert store.commit_rollup(node, content) is None  # a second process with the same snapshot changes nothing
    assert store.get_node(node.node_id).version == 2


def test_unknown_level_is_a_usage_error(store) -> None:
    with pytest.raises(UsageError, match="level 'segment'"):
        run_rollup(store, "segment", now_ms=0, min_age_ms=0, summarizer=LocalSummarizer())


def test_metadata_is_a_string_map(store, span_events) -> None:
    ingest(store, iter(span_events))
    result = run_rollup(store, "week", now_ms=ms(2021, 2, 10), min_age_ms=HOUR, summarizer=LocalSummarizer())
    meta = result.as_metadata()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    assert meta["nodes_rolled"] == str(result.nodes_rolled) and int(meta["rolled_week"]) >= 7


def test_week_one_across_a_year_end_and_a_week_across_a_month_end(store) -> None:
    lines = list(to_jsonl(generate_events(ms(2024, 1, 27), 12, seed=31, sessions_per_day=(1, 2), turns_per_session=(1, 3))))
    lines += list(to_jsonl(generate_events(ms(2024, 12, 26), 14, seed=32, sessions_per_day=(1, 2), turns_per_session=(1, 3))))
    ingest(store, iter(lines))
    roll_all(store, ms(2025, 3, 1))
    nodes = toc(store)
    w05 = nodes["toc:week:2024:W05"]  # Mon Jan 29 .. Sun Feb 4 2024: Thursday Feb 1
    assert (w05[1], w05[2], w05[3]) == (ms(2024, 1, 29), ms(2024, 2, 5) - 1, "toc:month:2024:02")
    assert nodes["toc:month:2024:01"][8] == ("toc:week:2024:W04",)
    assert nodes["toc:month:2024:02"][8][0] == "toc:week:2024:W05"
    w01 = nodes["toc:week:2025:W01"]  # Mon Dec 30 2024 .. Sun Jan 5 2025: Thursday Jan 2
    assert (w01[1], w01[2], w01[3]) == (ms(2024, 12, 30), ms(2025, 1, 6) - 1, "toc:month:2025:01")
    assert w01[8][:2] == ("toc:day:2024-12-30", "toc:day:2024-12-31")
    assert nodes["toc:month:2024:12"][8] == ("toc:week:2024:W52",)
    assert nodes["toc:year:2025"][8] == ("toc:month:2025:01",) and nodes["toc:year:2025"][10] == "pending"  # 2025 not over
    for node_id in ("toc:week:2024:W05", "toc:week:2025:W01", "toc:month:2024:12", "toc:month:2025:01", "toc:year:2024"):
        assert nodes[node_id][10] == "current" and nodes[node_id][9] == 2, node_id
