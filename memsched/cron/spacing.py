"""How close together a calendar's slots can come: what a timer's delays must stay within.

systemd computes a calendar timer's next elapse from the moment it last fired. A start
that comes later than the next slot (random delay plus accuracy) therefore loses the
slots in between, silently. ``validate`` compares a job's jitter + accuracy with the
shortest gap found here.
"""

from __future__ import annotations

from memsched.cron.parse import CronSpec

DAY_S = 86_400


def shortest_gap_in_day_s(spec: CronSpec) -> int | None:
    """Return the shortest gap (seconds) between two slots of one day, across midnight too when every day fires.

    Wall-clock seconds; a daylight-saving change only removes or merges slots, it
    never brings two closer. None when the calendar fires once a day and its days
    are restricted (the gaps between days are then a matter of dates: ask systemd).
    """
    times = sorted(h * 3600 + m * 60 + s for h in spec.hours for m in spec.minutes for s in spec.seconds)
    gaps = [b - a for a, b in zip(times, times[1:])]
    if spec.dom is None and spec.dow is None:
        gaps.append(DAY_S - times[-1] + times[0])
    return min(gaps) if gaps else None
