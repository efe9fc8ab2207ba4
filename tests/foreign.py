"""A throwaway system user for attacks run as another uid.

:func:`create_user` adds a locked system user (no home, no shell) named
``msatk<pid>`` with a group of its own; :func:`remove_user` deletes it. Users left
behind by a killed test session (their pid is gone) are removed by
:func:`reap_stale_users`. :meth:`ForeignUser.run` runs a command as that user with
``setpriv`` (real and effective uid/gid, no supplementary groups, no new privileges).
"""

from __future__ import annotations

import os
import pwd
import subprocess
from dataclasses import dataclass

PREFIX = "msatk"


@dataclass(frozen=True)
class ForeignUser:
    name: str
    uid: int
    gid: int

    def command(self, *args: str) -> list[str]:
        """Return ``args`` wrapped so they run as this user."""
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--no-new-privs", "--", *args]

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``args`` as this user; return the completed process (output captured as text)."""
        return subprocess.run(self.command(*args), env=env, capture_output=True, text=True, timeout=timeout, input=input)

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start ``args`` as this user with pipes for stdin and stdout (text); return the process."""
        return subprocess.Popen(self.command(*args), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)


def create_user() -> ForeignUser:
    """Add the session's throwaway user and return it. Raises CalledProcessError when useradd fails."""
    name = f"{PREFIX}{os.getpid()}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                    "--shell", "/usr/sbin/nologin", "--user-group", name], check=True, capture_output=True)
    entry = pwd.getpwnam(name)
    return ForeignUser(name, entry.pw_uid, entry.pw_gid)


def remove_user(user: ForeignUser) -> None:
    """Delete ``user`` and its group (processes of it are killed first)."""
    subprocess.run(["pkill", "-KILL", "-U", str(user.uid)], capture_output=True)
    subprocess.run(["userdel", user.name], capture_output=True)


def reap_stale_users() -> None:
    """Delete throwaway users whose creating test session is gone."""
    for entry in pwd.getpwall():
        if entry.pw_name.startswith(PREFIX) and entry.pw_name[len(PREFIX):].isdigit():
            pid = int(entry.pw_name[len(PREFIX):])
            if not os.path.exists(f"/proc/{pid}"):
                remove_user(ForeignUser(entry.pw_name, entry.pw_uid, entry.pw_gid))
