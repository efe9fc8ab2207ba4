"""State files root opens stay the service user's (issue 12.2).

In system scope /var/lib/memsched belongs to the service user and the jobs run as it;
root's commands (install-units, pause, doctor, ingest, the facade serving PauseJob) open
the same SQLite files. A database root created would be root's, 0644, and every job's
next write would fail ("attempt to write a readonly database"). So before root opens a
database in a directory that belongs to another user, :func:`prepare_database` makes the
file (new, or left root's by an older memsched) and any -wal, -shm or -journal next to
it belong to the directory's owner. The -wal and -shm files SQLite itself creates later
as root it gives the database file's owner (SQLite's unix VFS does so when run as root;
tests/test_state_ownership.py checks it).

The directory's owner is less trusted than root, so root follows nothing it finds there:
a database path that is a symbolic link, not a regular file, or has other hard links is
refused, and ownership is changed through a descriptor opened with O_NOFOLLOW. Only what
is root's (or the owner's with another group) is handed over, never a third user's file.

Imports only ``os`` and ``stat``: the start of `memsched exec` goes through here.
"""

from __future__ import annotations

import errno
import os
import stat

from memsched.errors import MemschedError, PermissionDenied
from memsched.locate import SYSTEM_STATE_DIR, SYSTEM_USER

COMPANIONS = ("-wal", "-shm", "-journal")
NEW_FILE_MODE = 0o640  # what the jobs' UMask=0027 gives the files they create


class UnsafeStateFile(MemschedError):
    """A state file root was about to open is a link or not a regular file, in a directory another user owns."""


def _foreign_owner(directory: str) -> tuple[int, int] | None:
    """Return (uid, gid) of ``directory`` when we are root and it belongs to another user, else None."""
    if os.geteuid() != 0:
        return None
    try:
        info = os.stat(directory)
    except OSError:
        return None
    return None if info.st_uid == 0 else (info.st_uid, info.st_gid)


def ensure_directory(directory: str) -> None:
    """Create ``directory`` (and its parents) when missing; root creating the system state directory gives it to the service user.

    The system state directory is made 0750 and owned by the service user when that
    user exists (as its tmpfiles.d line and the units' StateDirectory= would), so files
    root creates in it next are handed over too. Raises OSError when it cannot be created.
    """
    if os.path.isdir(directory):
        return
    os.makedirs(directory, exist_ok=True)
    if os.geteuid() == 0 and os.path.abspath(directory) == SYSTEM_STATE_DIR:
        import pwd

        try:
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            return  # no service user yet: install-units creates it, and StateDirectory= then fixes the owner
        os.chown(directory, entry.pw_uid, entry.pw_gid)
        os.chmod(directory, 0o750)


def prepare_database(path: str) -> None:
    """Before root opens (or creates) the SQLite database ``path``: give it and its companions to the directory's owner.

    Does nothing unless running as root in a directory another user owns. Creates the
    database file (mode 0640) when missing, so SQLite never creates it as root.
    Raises :class:`UnsafeStateFile` for a symlink, a non-regular file or a file with
    more than one link, :class:`PermissionDenied` when it may not be opened or handed over
    (root without its capabilities), :class:`MemschedError` for other failures.
    """
    owner = _foreign_owner(os.path.dirname(os.path.abspath(path)))
    if owner is None:
        return
    _hand_over(path, owner, create=True)
    for suffix in COMPANIONS:
        _hand_over(path + suffix, owner, create=False)


def _hand_over(path: str, owner: tuple[int, int], create: bool) -> None:
    uid, gid = owner
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a planted FIFO must not hang us
    try:
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            if not create:
                return
            # O_EXCL: also fails on a dangling symlink, which is never followed
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, NEW_FILE_MODE)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EEXIST):
            raise UnsafeStateFile(f"{path}: is a symbolic link in a directory owned by uid {uid}; "
                                  "root does not follow it (remove it, or run as that user)") from None
        if exc.errno in (errno.EACCES, errno.EPERM):  # root without CAP_DAC_OVERRIDE, or a read-only mount
            raise PermissionDenied(f"{path}: permission denied") from None
        raise MemschedError(f"{path}: cannot open to give it to uid {uid}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            what = "not a regular file" if not stat.S_ISREG(info.st_mode) else f"a file with {info.st_nlink} links"
            raise UnsafeStateFile(f"{path}: is {what}, in a directory owned by uid {uid}; root does not open it")
        if (info.st_uid, info.st_gid) != (uid, gid) and info.st_uid in (0, uid):
            os.fchown(fd, uid, gid)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):  # root without CAP_CHOWN
            raise PermissionDenied(f"{path}: cannot give it to uid {uid}: permission denied") from None
        raise MemschedError(f"{path}: cannot give it to uid {uid}: {exc.strerror}") from None
    finally:
        os.close(fd)
