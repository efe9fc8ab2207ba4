"""Cron expressions: parsing and translation to systemd calendars (pure; predictions, which ask systemd, are in memsched.systemd.predict and .dst)."""

from memsched.cron.calendar import to_on_calendar
from memsched.cron.parse import CronSpec, parse_cron

__all__ = ["CronSpec", "parse_cron", "to_on_calendar"]
