"""Cron expressions: parsing, translation to systemd calendars, prediction."""

from memsched.cron.calendar import to_on_calendar
from memsched.cron.parse import CronSpec, parse_cron

__all__ = ["CronSpec", "parse_cron", "to_on_calendar"]
