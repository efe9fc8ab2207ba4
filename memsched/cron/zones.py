"""A time zone's UTC-offset changes (daylight-saving transitions), found with zoneinfo alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

__all__ = ["Transition", "transitions"]


@dataclass(frozen=True)
class Transition:
    """A UTC-offset change of a zone: at ``at`` (UTC) the offset goes from ``before`` to ``after``."""

    at: datetime
    before: timedelta
    after: timedelta

    @property
    def kind(self) -> str:
        return "gap" if self.after > self.before else "fold"

    def wall_window(self) -> tuple[datetime, datetime]:
        """Return the naive wall-clock interval [start, end) that is skipped (gap) or repeated (fold)."""
        naive = self.at.replace(tzinfo=None)
        a, b = naive + self.before, naive + self.after
        return (a, b) if a < b else (b, a)


def transitions(zone_name: str, start: datetime, end: datetime, step: timedelta = timedelta(hours=6)) -> list[Transition]:
    """Return the zone's offset changes between two aware datetimes, to the second.

    The offset is sampled every ``step`` and each change found is bisected; two changes
    closer together than ``step`` that cancel out would be missed, so a coarse step is
    only for long windows (no zone changes its offset twice within a day).
    """
    zone = ZoneInfo(zone_name)
    found = []
    t = start.astimezone(timezone.utc)
    end = end.astimezone(timezone.utc)
    previous = t.astimezone(zone).utcoffset()
    while t < end:
        nxt = min(t + step, end)
        offset = nxt.astimezone(zone).utcoffset()
        if offset != previous:
            lo, hi = t, nxt
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(zone).utcoffset() == previous:
                    lo = mid
                else:
                    hi = mid
            at = hi.replace(microsecond=0)
            if at.astimezone(zone).utcoffset() != previous:
                found.append(Transition(at, previous, offset))
            previous = offset
        t = nxt
    return found
