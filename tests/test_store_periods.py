"""Periods: node ids, titles and UTC bounds come from the period itself; weeks go to their Thursday's month."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st

from memsched.errors import UsageError
from memsched.store.periods import (
    chain_for_day,
    check_node_id,
    day_period,
    month_period,
    period_of_node_id,
    segment_title,
    week_period,
    year_period,
)


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


def test_ids_titles_and_bounds_of_each_level() -> None:
    day = day_period(date(2024, 1, 15))
    assert (day.node_id, day.title, day.parent_id) == ("toc:day:2024-01-15", "Monday, January 15, 2024", "toc:week:2024:W03")
    assert (day.start_ms, day.end_ms) == (ms(2024, 1, 15), ms(2024, 1, 16) - 1)
    week = week_period(2024, 3)
    assert (week.node_id, week.title, week.parent_id) == ("toc:week:2024:W03", "Week 3 of 2024", "toc:month:2024:01")
    assert (week.start_ms, week.end_ms) == (ms(2024, 1, 15), ms(2024, 1, 22) - 1)
    month = month_period(2024, 2)
    assert (month.node_id, month.title, month.parent_id) == ("toc:month:2024:02", "February 2024", "toc:year:2024")
    assert (month.start_ms, month.end_ms) == (ms(2024, 2, 1), ms(2024, 3, 1) - 1)
    year = year_period(2024)
    assert (year.node_id, year.title, year.parent_id, year.start_ms, year.end_ms) == ("toc:year:2024", "2024", None, ms(2024, 1, 1), ms(2025, 1, 1) - 1)
    assert segment_title(ms(2024, 1, 15, 14, 30, 59)) == "January 15, 2024 at 14:30"


def test_week_crossing_a_month_keeps_its_own_bounds_and_goes_to_its_thursdays_month() -> None:
    week = week_period(2024, 5)  # Mon Jan 29 .. Sun Feb 4, Thursday Feb 1
    assert (week.start_ms, week.end_ms) == (ms(2024, 1, 29), ms(2024, 2, 5) - 1)
    assert week.parent_id == "toc:month:2024:02"
    assert [p.node_id for p in chain_for_day(date(2024, 1, 31))] == ["toc:day:2024-01-31", "toc:week:2024:W05", "toc:month:2024:02", "toc:year:2024"]
    assert week_period(2024, 9).parent_id == "toc:month:2024:02"  # Feb 26 .. Mar 3, Thursday Feb 29 (leap day)


def test_iso_week_53_and_week_1_across_year_boundaries() -> None:
    w53 = week_period(2020, 53)  # Mon Dec 28 2020 .. Sun Jan 3 2021, Thursday Dec 31
    assert (w53.start_ms, w53.end_ms, w53.parent_id) == (ms(2020, 12, 28), ms(2021, 1, 4) - 1, "toc:month:2020:12")
    assert [p.node_id for p in chain_for_day(date(2021, 1, 2))] == ["toc:day:2021-01-02", "toc:week:2020:W53", "toc:month:2020:12", "toc:year:2020"]
    w1 = week_period(2025, 1)  # Mon Dec 30 2024 .. Sun Jan 5 2025, Thursday Jan 2
    assert (w1.start_ms, w1.parent_id) == (ms(2024, 12, 30), "toc:month:2025:01")
    assert [p.node_id for p in chain_for_day(date(2024, 12, 31))] == ["toc:day:2024-12-31", "toc:week:2025:W01", "toc:month:2025:01", "toc:year:2025"]


@given(st.dates(min_value=date(1970, 1, 1), max_value=date(9999, 12, 31)))  # every day an event may name
def test_every_day_lies_inside_its_week_and_periods_tile(day: date) -> None:
    chain = chain_for_day(day)
    d, w, m, y = chain
    assert w.start_ms <= d.start_ms and d.end_ms <= w.end_ms
    assert m.start_ms <= w.start_ms + 3 * 86_400_000 <= m.end_ms  # the Thursday
    assert y.start_ms <= m.start_ms and m.end_ms <= y.end_ms
    if day < date.max:
        assert day_period(day + timedelta(days=1)).start_ms == d.end_ms + 1
    for period in chain:
        assert period_of_node_id(period.node_id) == period


MAX_TIMESTAMP_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the largest timestamp ingest accepts


def test_the_last_periods_an_event_can_name_exist_and_end_at_the_last_timestamp() -> None:
    # December 9999 and the year 9999 end where no datetime.date can follow them
    chain = chain_for_day(date(9999, 12, 31))
    assert [p.node_id for p in chain] == ["toc:day:9999-12-31", "toc:week:9999:W52", "toc:month:9999:12", "toc:year:9999"]
    d, w, m, y = chain
    assert d.end_ms == m.end_ms == y.end_ms == MAX_TIMESTAMP_MS
    assert (m.start_ms, y.start_ms) == (ms(9999, 12, 1), ms(9999, 1, 1))
    assert (w.start_ms, w.end_ms) == (ms(9999, 12, 27), MAX_TIMESTAMP_MS)  # its ISO Sunday is in year 10000, which nothing can name
    for period in chain:
        assert period_of_node_id(period.node_id) == period
    first = chain_for_day(date(1970, 1, 1))  # a Thursday: 1970-W01
    assert [p.node_id for p in first] == ["toc:day:1970-01-01", "toc:week:1970:W01", "toc:month:1970:01", "toc:year:1970"]
    assert first[0].start_ms == first[2].start_ms == first[3].start_ms == 0


@pytest.mark.parametrize("bad", ["toc:week:2021:W53", "toc:day:2024-02-30", "toc:month:2024:13", "day:2024-01-01", "toc:week:2024:3"])
def test_impossible_or_malformed_ids_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError):
        period_of_node_id(bad)


def test_check_node_id_accepts_segments() -> None:
    assert check_node_id("toc:segment:2024-01-15:01HM6X8Z3ZC0000000000000AA") == "segment"
    with pytest.raises(UsageError, match="is not a TOC node id"):
        check_node_id("toc:segment:2024-01-15:nope")
