"""Unit names: ``memsched-<job>.timer`` / ``.service``, and ``memsched-<job>@<instance>.service``
for concurrent runs. Kept free of heavy imports: the status path uses it."""

from __future__ import annotations

import os
from datetime import datetime, timezone

UNIT_PREFIX = "memsched-"


def timer_name(job: str) -> str:
    return f"{UNIT_PREFIX}{job}.timer"


def service_name(job: str) -> str:
    return f"{UNIT_PREFIX}{job}.service"


def failure_unit_name(job: str) -> str:
    """Return the failure unit a failed run of ``job`` starts (OnFailure=): ``memsched-failure@<job>.service``."""
    return f"{UNIT_PREFIX}failure@{job}.service"


def instance_failure_unit(job: str) -> str:
    """Return the OnFailure= of a concurrent job's instance template: ``memsched-failure@<job>:%i.service``.

    One failure unit instance per run instance, so two instances failing at once make two
    notifications (a start of a failure unit that is already running would merge into it).
    The failure unit gets ``<job>:<instance>`` as its instance name.
    """
    return f"{UNIT_PREFIX}failure@{job}:%i.service"


def failure_instance_pattern(job: str) -> str:
    """The glob matching the failure units of a concurrent job's instances."""
    return f"{UNIT_PREFIX}failure@{job}:*.service"


def job_of_failure_instance(instance: str) -> str:
    """Return the job a failure unit's instance name (``<job>`` or ``<job>:<run instance>``) is about."""
    return instance.split(":", 1)[0]


def instance_template_name(job: str) -> str:
    return f"{UNIT_PREFIX}{job}@.service"


def instance_pattern(job: str) -> str:
    """The glob matching every run instance of a concurrent job."""
    return f"{UNIT_PREFIX}{job}@*.service"


def new_instance_name(job: str, origin: str) -> str:
    """A fresh instance unit name; ``origin`` is "t" (the timer started it) or "m" (manual)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{UNIT_PREFIX}{job}@{origin}-{stamp}-{os.urandom(3).hex()}.service"


def job_of_unit(name: str) -> str | None:
    """Return the job a memsched unit name belongs to, or None."""
    if not name.startswith(UNIT_PREFIX) or name.startswith((UNIT_PREFIX + "failure@", UNIT_PREFIX + "resume.")):
        return None
    stem = name[len(UNIT_PREFIX) :].rsplit(".", 1)[0]
    return stem.split("@", 1)[0] or None


def resume_unit_stem(job: str) -> str:
    """The transient units that end a timed pause: ``memsched-resume.<job>.timer`` / ``.service``.

    A dot cannot be in a job name, so these never clash with a job's own units.
    """
    return f"{UNIT_PREFIX}resume.{job}"
