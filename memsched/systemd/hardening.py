"""What the hardening of system-scope services (templates/hardening.j2) does to the paths a job
uses, so install-units can refuse units that could only fail at run time (203/EXEC, a config it
cannot read, a store written into a private /tmp that vanishes)."""

from __future__ import annotations

import os
from dataclasses import dataclass

# The directories each setting of templates/hardening.j2 takes away from the service.
HIDDEN_BY = (
    ("ProtectHome=yes", ("/home", "/root", "/run/user")),  # made inaccessible
    ("PrivateTmp=yes", ("/tmp", "/var/tmp")),  # replaced by an empty private directory
)
# Under ProtectSystem=strict everything is read-only except what ReadWritePaths= (and
# StateDirectory=) open again; systemd refuses to start a service whose ReadWritePaths= names a
# directory that does not exist (226/NAMESPACE).
STRICT = "ProtectSystem=strict"


@dataclass(frozen=True)
class Blocked:
    """A path the hardened service could not use: what it is, the path, the setting, why, the fix."""

    what: str
    path: str
    setting: str
    why: str
    fix: str

    def message(self) -> str:
        """Return the one-line explanation (for the exit-2 error)."""
        return f"{self.what} {self.path} {self.why} {self.setting} (the hardening of system-scope units); {self.fix}"


def hidden_by(path: str) -> tuple[str, tuple[str, ...]] | None:
    """Return (the setting, its directories) that hides ``path`` (absolute) from the service, or None."""
    norm = os.path.normpath(path)
    for setting, dirs in HIDDEN_BY:
        if any(norm == d or norm.startswith(d + "/") for d in dirs):
            return setting, dirs
    return None


def check_paths(read: list[tuple[str, str]], written: list[tuple[str, str]], state_dir: str) -> list[Blocked]:
    """Return what the hardening blocks among the paths the service reads (``read``: executable,
    interpreter, code, config) and writes (``written``: store, registry, metrics file; each given
    as (what, absolute path)); empty when the units can work. ``state_dir`` is StateDirectory=,
    which systemd creates and opens for writing itself."""
    blocked: list[Blocked] = []
    for what, path in [*read, *written]:
        hit = hidden_by(path)
        if hit is not None:
            setting, dirs = hit
            blocked.append(Blocked(what, path, setting, "is hidden from the service by", f"move it out of {', '.join(dirs)}"))
    for what, path in written:
        parent = os.path.dirname(os.path.normpath(path))
        if hidden_by(path) is None and not (parent + "/").startswith(state_dir.rstrip("/") + "/") and not os.path.isdir(parent):
            blocked.append(
                Blocked(what, path, STRICT, f"would be read-only for the service (its directory {parent} does not exist, so ReadWritePaths= cannot open it) by",
                        f"create {parent} first")
            )
    return blocked
