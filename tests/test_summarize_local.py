"""The local extractive summarizer: always 3-5 bullets and 3-7 keywords, drawn from its input, deterministic."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from memsched.store.models import PLACEHOLDER_TEXT, Bullet, Event
from memsched.summarize import LocalSummarizer, Summary, Summarizer
from memsched.summarize.base import checked_summary

TYPES = ["session_start", "user_message", "assistant_message", "tool_result", "assistant_stop", "subagent_start", "subagent_stop", "session_end"]
ROLE = {"user_message": "user", "assistant_message": "assistant", "tool_result": "tool"}

events_strategy = st.lists(
    st.builds(
        lambda i, kind, text: Event(f"01HM6X8Z3ZC00000000000{i:04d}", "s", 1_705_329_000_000 + i * 1000, kind, ROLE.get(kind, "system"), text),
        st.integers(0, 9999),
        st.sampled_from(TYPES),
        st.text(max_size=300),
    ),
    min_size=1,
    max_size=30,
).map(lambda evs: sorted({e.event_id: e for e in evs}.values(), key=lambda e: e.event_id))


def check_shape(summary: Summary) -> None:
    assert summary.title.strip()
    assert 3 <= len(summary.bullets) <= 5 and all(b.text.strip() for b in summary.bullets)
    assert 3 <= len(summary.keywords) <= 7 and len(set(summary.keywords)) == len(summary.keywords)


@settings(max_examples=200, deadline=None)
@given(events_strategy)
def test_any_events_give_a_well_formed_deterministic_summary(events: list[Event]) -> None:
    local = LocalSummarizer()
    summary = local.summarize_events(events)
    check_shape(summary)
    assert summary == local.summarize_events(list(events))
    ids = {e.event_id for e in events}
    assert all(b.source_events and set(b.source_events) <= ids for b in summary.bullets)


@settings(max_examples=100, deadline=None)
@given(st.lists(events_strategy, min_size=1, max_size=8))
def test_children_summaries_are_well_formed_and_keep_grips(groups: list[list[Event]]) -> None:
    local = LocalSummarizer()
    children = []
    for n, group in enumerate(groups):
        s = local.summarize_events(group)
        children.append(Summary(s.title, tuple(Bullet(b.text, (f"grip:{n}:{i}",)) for i, b in enumerate(s.bullets)), s.keywords, label=f"child {n}"))
    summary = local.summarize_children(children)
    check_shape(summary)
    known = {g for c in children for b in c.bullets for g in b.grip_ids}
    texts = {b.text for c in children for b in c.bullets}
    for bullet in summary.bullets:
        assert set(bullet.grip_ids) <= known
        assert bullet.text in texts or not bullet.grip_ids


def test_extracts_real_content() -> None:
    events = [
        Event("01HM6X8Z3ZC0000000000000A1", "s", 1, "user_message", "user", "How do I tune the sqlite checkpoint interval? The WAL keeps growing."),
        Event("01HM6X8Z3ZC0000000000000A2", "s", 2, "tool_result", "tool", "INFO checkpoint took 40ms\nWARN wal size 900MB"),
        Event("01HM6X8Z3ZC0000000000000A3", "s", 3, "assistant_message", "assistant", "Run a TRUNCATE checkpoint after the sqlite batch. Then the WAL shrinks."),
        Event("01HM6X8Z3ZC0000000000000A4", "s", 4, "user_message", "user", "Great, and should the checkpoint run nightly?"),
    ]
    summary = LocalSummarizer().summarize_events(events)
    assert summary.title == "How do I tune the sqlite checkpoint interval?"
    assert summary.keywords[:3] == ("checkpoint", "wal", "sqlite")  # user words count 3x, assistant 2x, tool 1x
    assert summary.bullets[0].text == "User: How do I tune the sqlite checkpoint interval?"
    assert [b.source_events[0] for b in summary.bullets] == [e.event_id for e in events]


def test_placeholders_are_never_summarised_into_parents() -> None:
    pending = Summary(PLACEHOLDER_TEXT, (Bullet(PLACEHOLDER_TEXT),), (), label="Tuesday, January 16, 2024")
    real = Summary("Timer work", (Bullet("Fixed the timer", ("grip:a",)),), ("timer", "systemd", "unit"), label="Monday, January 15, 2024")
    summary = LocalSummarizer().summarize_children([real, pending])
    check_shape(summary)
    assert all(PLACEHOLDER_TEXT not in b.text for b in summary.bullets) and summary.title == "Timer work"


def test_local_summarizer_satisfies_the_protocol() -> None:
    assert isinstance(LocalSummarizer(), Summarizer)


def test_checked_summary_names_what_is_wrong() -> None:
    import pytest

    with pytest.raises(ValueError, match="expected 3 to 5 bullets, got 6"):
        checked_summary("t", ["a"] * 6, ["x", "y", "z"])
    with pytest.raises(ValueError, match="expected 3 to 7 distinct keywords, got 2"):
        checked_summary("t", ["a", "b", "c"], ["x", "X", "y"])
    with pytest.raises(ValueError, match="title must be a non-empty string"):
        checked_summary(None, ["a", "b", "c"], ["x", "y", "z"])
    assert checked_summary(" T ", [{"text": "a"}, "b", "c"], ["X", "y", "z"]).keywords == ("x", "y", "z")
