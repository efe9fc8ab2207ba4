"""When a timed pause or a skip ends: ``--for DURATION`` and ``--until TIME`` turned into an instant. Returns data, never prints."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from memsched.config.load import JobConfig, is_valid_timezone
from memsched.errors import UsageError
from memsched.registry import now_ms


def parse_for(text: str, option: str = "--for") -> int:
    """Return a positive duration in ms from a systemd time span (``2h``, ``90min``, ``1h 30min``).

    Raises :class:`UsageError` naming ``option`` when it does not parse or is not positive.
    """
    from memsched.config.durations import parse_duration_ms

    try:
        ms = parse_duration_ms(text)
    except ValueError as exc:
        raise UsageError(f"{option} {text!r}: {exc}") from None
    if ms <= 0:
        raise UsageError(f"{option} {text!r}: must be longer than 0")
    return ms


def parse_until(text: str, job: JobConfig, option: str = "--until", now: int | None = None) -> int:
    """Return the instant (ms) ``text`` names for ``job`` (a time without a zone is in the job's); see :func:`parse_instant`."""
    return parse_instant(text, job.timezone, option, now)


def parse_instant(text: str, default_zone: str | None, option: str = "--until", now: int | None = None) -> int:
    """Return the instant (ms) ``text`` names; it must be in the future.

    ``text`` is ISO 8601 (``2026-12-24T08:00``, a space instead of ``T`` too), with an
    offset or ``Z``, or followed by an IANA zone name (``2026-12-24T08:00 Europe/Berlin``);
    without either it is in ``default_zone`` (None: a zone is required). Raises
    :class:`UsageError` naming ``option``.
    """
    raw = text.strip()
    zone_name = default_zone
    head, _, tail = raw.rpartition(" ")
    if head and tail and not tail[:1].isdigit():
        if not is_valid_timezone(tail):
            raise UsageError(f"{option} {text!r}: {tail!r} is not an IANA time zone name (e.g. UTC, Europe/Berlin)")
        raw, zone_name = head.strip(), tail
    try:
        when = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: expected an ISO 8601 time such as 2026-12-24T08:00, 2026-12-24T08:00+01:00 or 2026-12-24T08:00 Europe/Berlin"
        ) from None
    if when.tzinfo is None:
        if zone_name is None:
            raise UsageError(f"{option} {text!r}: give an offset (+01:00, Z) or a zone name: the job's own zone is not known here")
        when = when.replace(tzinfo=ZoneInfo(zone_name))
    ms = int(when.timestamp() * 1000)
    current = now_ms() if now is None else now
    if ms <= current:
        shown = datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        raise UsageError(f"{option} {text!r}: {shown}Z is not in the future")
    return ms


def check_future(ms: int, option: str, now: int | None = None) -> int:
    """Return ``ms`` when it is in the future; raise :class:`UsageError` naming ``option`` otherwise."""
    if ms <= (now_ms() if now is None else now):
        raise UsageError(f"{option} {ms}: not in the future")
    return ms


def iso(ms: int) -> str:
    """Return ms since the epoch as ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds")
