"""A per-user cache of decoded config files, so that a run's start does not parse TOML.

Every timer start loads the config in a fresh process, and importing and running
tomllib is a good part of that start. The decoded table of a config file is kept,
marshalled, in ``$XDG_RUNTIME_DIR/memsched/`` (private to the user, on tmpfs, gone at
logout), keyed by the file's device, inode, size, mtime and ctime: any change to the
file, even one that keeps its mtime, misses the cache and the file is parsed again.
A file changed in the last two seconds is not cached at all (two writes within one
tick of the kernel's file-time clock could otherwise look alike).
Validation is never cached: the table is checked exactly as if just read.

Where there is no runtime directory (system services) nothing is cached. A cache file
that is not the current user's, or that others may write, is ignored.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import stat
import time

_FORMAT = 1
# File times come from the kernel's coarse clock: two writes of the same size within one tick
# keep every key field. A file changed less than this long ago is parsed, not cached.
RACY_NS = 2_000_000_000


def _cache_path(path: str, env: dict[str, str] | os._Environ[str]) -> str | None:
    runtime = env.get("XDG_RUNTIME_DIR") or ""
    if not os.path.isabs(runtime):
        return None
    digest = hashlib.sha256(os.path.realpath(path).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return os.path.join(runtime, "memsched", f"config-{digest}.marshal")


def _key(st: os.stat_result) -> tuple[int, ...]:
    return (_FORMAT, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def cached(path: str, st: os.stat_result, env: dict[str, str] | None = None) -> dict[str, object] | None:
    """Return the decoded table of the config file ``path`` (whose stat is ``st``) from the cache, or None."""
    where = _cache_path(path, os.environ if env is None else env)
    if where is None:
        return None
    try:
        fd = os.open(where, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or not stat.S_ISREG(info.st_mode):
            return None
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            key, table = marshal.load(fh)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    finally:
        if fd >= 0:
            os.close(fd)
    return table if key == _key(st) and isinstance(table, dict) else None


def store(path: str, st: os.stat_result, table: dict[str, object], env: dict[str, str] | None = None) -> None:
    """Keep ``table`` as the decoded form of ``path`` (best effort: any failure leaves no cache)."""
    where = _cache_path(path, os.environ if env is None else env)
    if where is None or time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_NS:
        return  # written a moment ago: a second write in the same clock tick would keep every key field
    try:
        data = marshal.dumps((_key(st), table))
    except ValueError:  # a TOML date or time: marshal has no type for it; such a file is parsed every time
        return
    directory = os.path.dirname(where)
    tmp = f"{where}.{os.getpid()}.tmp"
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, where)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
