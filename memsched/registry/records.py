"""The registry's record types."""

from __future__ import annotations

class _Record:
    """A plain record class: fields from ``__slots__``, defaults from ``_defaults``.

    Not a dataclass: importing dataclasses (inspect, re, ...) costs the exec
    hot path more than all of its own work.
    """

    __slots__: tuple[str, ...] = ()
    _defaults: dict[str, object] = {}

    def __init__(self, *args: object, **kwargs: object):
        names = self.__slots__
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes at most {len(names)} fields")
        values = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names:
                raise TypeError(f"{type(self).__name__} has no field {key!r}")
            values[key] = value
        for name in names:
            if name not in values:
                if name not in self._defaults:
                    raise TypeError(f"{type(self).__name__} needs the field {name!r}")
                default = self._defaults[name]
                values[name] = default() if callable(default) else default
            object.__setattr__(self, name, values[name])

    def as_dict(self) -> dict[str, object]:
        """Return the fields as a dict."""
        return {name: getattr(self, name) for name in self.__slots__}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.as_dict() == other.as_dict()  # type: ignore[union-attr]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.as_dict().items())})"


class RunRecord(_Record):
    """One run, or one record of skipped or lost slots, of a job."""

    __slots__ = (
        "id", "job", "instance", "invocation_id", "trigger", "slot_ms", "started_ms", "ended_ms", "duration_ms",
        "result", "reason", "exit_code", "pid", "metadata", "reason_code", "slot_end_ms", "slot_count", "actor",
    )
    _defaults = {"metadata": dict, "reason_code": None, "slot_end_ms": None, "slot_count": 1, "actor": None}
    id: int
    job: str
    instance: str | None
    invocation_id: str | None
    trigger: str
    slot_ms: int | None
    started_ms: int
    ended_ms: int | None
    duration_ms: int | None
    result: str
    reason: str | None
    exit_code: int | None
    pid: int | None
    metadata: dict[str, str]
    reason_code: str | None
    slot_end_ms: int | None
    slot_count: int
    actor: str | None


class JobCounts(_Record):
    """Per-job counters: successful runs, failed runs, skipped slots, lost slots, interrupted runs."""

    __slots__ = ("runs", "errors", "skips", "interrupted", "lost")
    _defaults = {"runs": 0, "errors": 0, "skips": 0, "interrupted": 0, "lost": 0}
    runs: int
    errors: int
    skips: int
    interrupted: int
    lost: int


class PauseRecord(_Record):
    """A job's pause: who paused it, when, why; ``until_ms`` is when a timed pause ends by itself (None: until resumed)."""

    __slots__ = ("job", "paused_ms", "paused_by", "reason", "until_ms")
    _defaults = {"until_ms": None}
    job: str
    paused_ms: int
    paused_by: str
    reason: str | None
    until_ms: int | None

    def active(self, at_ms: int) -> bool:
        """Return whether the job is paused at ``at_ms`` (a timed pause has ended at its ``until_ms``)."""
        return self.until_ms is None or at_ms < self.until_ms


class SkipWindow(_Record):
    """A manual skip: every slot of ``job`` after ``asked_ms`` and at or before ``through_ms`` does not run.

    ``next_n`` is N when it was asked as "the next N slots" (``through_ms`` is then the Nth slot), else None.
    """

    __slots__ = ("job", "asked_ms", "through_ms", "next_n", "actor", "reason")
    _defaults = {"next_n": None, "reason": None}
    job: str
    asked_ms: int
    through_ms: int
    next_n: int | None
    actor: str
    reason: str | None


class InstalledUnit(_Record):
    __slots__ = ("unit_dir", "name", "job", "sha256", "scope", "config", "installed_ms")
    unit_dir: str
    name: str
    job: str | None
    sha256: str
    scope: str
    config: str | None
    installed_ms: int


class RunRequest(_Record):
    """A manual run asked through memsched: ``state`` is pending, claimed (``run_id`` serves it), refused or lost."""

    __slots__ = ("id", "job", "requested_ms", "actor", "state", "run_id", "resolved_ms", "reason")
    id: int
    job: str
    requested_ms: int
    actor: str | None
    state: str
    run_id: int | None
    resolved_ms: int | None
    reason: str | None


class SlotState(_Record):
    """A job's slot accounting: every slot up to ``accounted_ms`` has its record; a re-fire is expected in
    [``refire_after_ms``, ``refire_before_ms``) (None: none expected)."""

    __slots__ = ("job", "accounted_ms", "refire_after_ms", "refire_before_ms")
    _defaults = {"accounted_ms": None, "refire_after_ms": None, "refire_before_ms": None}
    job: str
    accounted_ms: int | None
    refire_after_ms: int | None
    refire_before_ms: int | None
