"""The one rule of each kind of value, judged as the program that reads it will read it.

Most values end up in a unit file, where systemd parses them; each rule here is
systemd's own parser (systemd 252 and 257 agree on all of them), narrowed where
systemd would accept something that reads back as a different value than the
config meant. Config validation (:mod:`memsched.config.load`) and the unit
renderer (:mod:`memsched.systemd.render`) both call these functions, so
``validate``, ``render`` and ``install-units`` accept exactly the same values,
and what they accept systemd reads back unchanged.

Every function raises ValueError with a message that says what was expected;
the caller puts the key (``jobs.NAME.jitter``) in front of it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

from memsched.text import first_control_char

# ------------------------------------------------------------------ text


def check_text(text: str) -> str:
    """Return ``text`` when it has no control character (a newline would start a new unit directive)."""
    bad = first_control_char(text)
    if bad is not None:
        raise ValueError(f"must not contain control characters (found {bad!r})")
    return text


# systemd reads a unit file line by line with a limit of LONG_LINE_MAX (1 MiB, conf-parser.c):
# a longer line fails the whole unit with "No buffer space available". A description is shown
# by systemctl and in the journal's "Starting ..." lines; 2048 bytes (POSIX LINE_MAX) is far
# below the unit limit even with every '%' doubled.
DESCRIPTION_MAX_BYTES = 2048


def check_description(text: str) -> str:
    """The rule of Description=: printable text systemd keeps exactly.

    systemd strips leading and trailing blanks of a value, and a trailing backslash
    continues the line into the next one. Returns ``text``.
    """
    check_text(text)
    if text != text.strip(" "):
        raise ValueError(f"{text!r} starts or ends with a space, which systemd would strip")
    if text.endswith("\\"):
        raise ValueError(f"{text!r} ends with a backslash, which would continue the unit file line")
    if len(text.encode("utf-8")) > DESCRIPTION_MAX_BYTES:
        raise ValueError(f"is longer than {DESCRIPTION_MAX_BYTES} bytes")
    return text


# ------------------------------------------------------------------ sizes and percentages

_UINT64_MAX = 2**64 - 1
_SIZE_FACTORS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"([0-9]{1,20})(?:\.([0-9]{1,9}))?([KMGT]?)", re.ASCII)
_PERCENT = re.compile(r"([0-9]{1,10})(?:\.([0-9]{1,2}))?%", re.ASCII)
SIZE_EXPECTED = 'expected bytes with an optional K, M, G or T suffix ("512M", "1.5G"), a percentage of RAM ("50%"), or "infinity"'
PERCENT_EXPECTED = 'expected a percentage of one CPU with at most two decimals, e.g. "50%", "12.5%" or "200%"'
_INT_MAX = 2**31 - 1


def permyriad(text: str) -> int | None:
    """Return a percentage in hundredths of a percent, as systemd's parse_permyriad() reads it; None if it is not one."""
    match = _PERCENT.fullmatch(text)
    if match is None:
        return None
    whole, fraction = match.groups()
    value = int(whole) * 100 + int((fraction or "0").ljust(2, "0"))
    return value if value <= _INT_MAX else None


def size_bytes(text: str) -> int | None:
    """Return the bytes of a size as systemd's parse_size(…, 1024) computes them; None if it is not one.

    The fraction is applied the way systemd does it (a double, truncated), so the result
    is what ``systemctl show -p MemoryMax`` reports.
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        return None
    whole, fraction, suffix = match.groups()
    factor = _SIZE_FACTORS[suffix]
    frac = 0.0
    if fraction:
        frac = float(int(fraction))
        for _ in fraction:
            frac /= 10
    number = int(whole)
    if number + (frac > 0) > _UINT64_MAX // factor:
        return None
    total = number * factor + int(frac * factor)
    return total if total <= _UINT64_MAX else None


def check_memory_max(value: object) -> str:
    """The rule of MemoryMax=: ``infinity``, 0.01% to 100% of RAM, or 1 byte up to just under 2^64-1.

    systemd ignores 0, 0%, more than 100%, more than two decimals of a percentage, and
    2^64-1 or more bytes ("out of range"). Returns the text, written to the unit as is.
    """
    if not isinstance(value, str):
        raise ValueError(SIZE_EXPECTED)
    if value == "infinity":
        return value
    if value.endswith("%"):
        share = permyriad(value)
        if share is None or not 0 < share <= 10_000:
            raise ValueError(f"{value!r}: a percentage of RAM must be above 0% and at most 100%, with at most two decimals")
        return value
    count = size_bytes(value)
    if count is None:
        if _SIZE.fullmatch(value) is not None:
            raise ValueError(f"{value!r} is too large for systemd (2^64 bytes or more)")
        raise ValueError(f"{value!r}: {SIZE_EXPECTED}")
    if count < 1 or count >= _UINT64_MAX:
        raise ValueError(f"{value!r} is out of systemd's range (1 byte up to 2^64-2)")
    return value


def check_cpu_quota(value: object) -> str:
    """The rule of CPUQuota=: a percentage above 0 with at most two decimals (parse_permyriad_unbounded()).

    Returns the text, written to the unit as is.
    """
    if not isinstance(value, str):
        raise ValueError(PERCENT_EXPECTED)
    share = permyriad(value)
    if share is None:
        raise ValueError(f"{value!r}: {PERCENT_EXPECTED}")
    if share <= 0:
        raise ValueError(f"{value!r}: must be above 0% (systemd ignores a zero quota)")
    return value


# ------------------------------------------------------------------ paths and names

PATH_MAX_BYTES = 4095  # PATH_MAX (4096) less the terminating NUL
NAME_MAX_BYTES = 255


def check_absolute_path(text: str) -> str:
    """The rule of a path systemd reads (ReadWritePaths=, the program of ExecStart=, ListenStream=).

    Absolute and normalized (no ``//``, ``.`` or ``..`` components, no trailing slash): systemd
    simplifies or refuses anything else, so the path it would use is not the one written.
    No control characters; each component at most 255 bytes, the whole at most 4095.
    Returns ``text``.
    """
    check_text(text)
    if not text.startswith("/"):
        raise ValueError(f"{text!r} is not an absolute path")
    if text != "/" and (os.path.normpath(text) != text or text.startswith("//")):
        raise ValueError(f"{text!r} is not a normalized path (write it without '//', '.', '..' or a trailing '/')")
    encoded = text.encode("utf-8")
    if len(encoded) > PATH_MAX_BYTES or any(len(part) > NAME_MAX_BYTES for part in encoded.split(b"/")):
        raise ValueError(f"{text[:60]!r}...: too long for a path (components up to 255 bytes, 4095 in all)")
    return text


def check_file_path(value: str, relative_ok: bool = False) -> str:
    """The rule of a file the jobs write or read (store, registry, metrics, token file).

    No control characters, components up to 255 bytes; absolute unless ``relative_ok``
    (the store: relative to the config file's directory, ``~`` expanded). memsched
    normalizes the directory it gives systemd, so ``..`` is fine here. Returns ``value``.
    """
    check_text(value)
    if value != value.strip(" "):
        raise ValueError(f"{value!r} starts or ends with a space")
    if not relative_ok and not value.startswith("/"):
        raise ValueError(f"{value!r} is not an absolute path")
    encoded = value.encode("utf-8")
    if len(encoded) > PATH_MAX_BYTES or any(len(part) > NAME_MAX_BYTES for part in encoded.split(b"/")):
        raise ValueError(f"{value[:60]!r}...: too long for a path (components up to 255 bytes, 4095 in all)")
    return value


# systemd refuses these in the program of ExecStart= whatever the quoting ("Executable path
# contains special characters", string_is_safe() in src/basic/string-util.c).
_PROGRAM_SPECIALS = ('"', "'", "\\")


def check_program_path(text: str) -> str:
    """The rule of the program of ExecStart=: an absolute normalized path without quotes or backslashes.

    systemd does no ``$`` substitution in the program (only ``%`` specifiers), so the path is
    written as it is apart from ``%%``. Returns ``text``.
    """
    check_absolute_path(text)
    bad = next((c for c in text if c in _PROGRAM_SPECIALS), None)
    if bad is not None:
        raise ValueError(f"{text!r} contains {bad!r}, which systemd refuses in the program of a unit's command line")
    if text.endswith("/"):
        raise ValueError(f"{text!r} names a directory")
    return text


# The strict user/group name rule of systemd (valid_user_group_name() in src/basic/user-util.c):
# names that break it are accepted by SocketGroup= only with a warning (or refused: "-", "a:b").
_GROUP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,30}", re.ASCII)
_GID = re.compile(r"0|[1-9][0-9]{0,9}", re.ASCII)
GROUP_EXPECTED = "expected a group name (a letter or '_', then letters, digits, '_' or '-', at most 31 characters) or a numeric GID"


def check_group(text: str) -> str:
    """The rule of SocketGroup=: a strictly valid group name or a valid numeric GID. Returns ``text``."""
    if _GROUP_NAME.fullmatch(text):
        return text
    if _GID.fullmatch(text):
        gid = int(text)
        if gid < 2**32 - 1 and gid != 65535:  # (gid_t) -1 and the 16-bit -1 are not valid GIDs
            return text
        raise ValueError(f"{text!r} is not a valid GID (65535 and 4294967295 are reserved)")
    raise ValueError(f"{text!r}: {GROUP_EXPECTED}")


# ------------------------------------------------------------------ listen addresses

UNIX_PATH_MAX_BYTES = 107  # sun_path is 108 bytes with the terminating NUL
LISTEN_EXPECTED = "expected unix:PATH or tcp:HOST:PORT (e.g. tcp:127.0.0.1:50051 or tcp:[::1]:50051)"


@dataclass(frozen=True)
class ListenAddress:
    """A parsed address: ``kind`` is "unix" (``path``) or "tcp" (``host``, ``port``)."""

    kind: str
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"

    @property
    def systemd_listen(self) -> str:
        """The value of ListenStream= for this address."""
        if self.kind == "unix":
            return self.path
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen(text: str, numeric_host: bool = True) -> ListenAddress:
    """Parse ``unix:PATH`` (absolute, under 108 bytes) or ``tcp:HOST:PORT`` (``[v6]`` in brackets).

    With ``numeric_host`` (the rule of a config value, which becomes ListenStream=) the host
    must be an IP address: systemd's socket_address_parse() takes no host names, no IPv4
    shorthand such as 127.1 and no IPv6 zone. Returns the address; raises ValueError.
    """
    value = text.strip()
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if path.startswith("//"):
            path = path[2:] if path.startswith("///") else path
        if not path.startswith("/"):
            raise ValueError("a unix socket path must be absolute (unix:/run/memsched/grpc.sock)")
        check_absolute_path(path)
        if len(os.fsencode(path)) > UNIX_PATH_MAX_BYTES:
            raise ValueError("a unix socket path must be shorter than 108 bytes")
        return ListenAddress("unix", path=path)
    if value.startswith("tcp:"):
        check_text(value)
        rest = value[len("tcp:") :]
        if rest.startswith("["):
            host, sep, port_text = rest[1:].partition("]:")
            v6 = True
        else:
            host, sep, port_text = rest.rpartition(":")
            v6 = False
        if not sep or not host or not re.fullmatch(r"[0-9]{1,5}", port_text, re.ASCII) or not 0 < int(port_text) < 65536:
            raise ValueError("expected tcp:HOST:PORT with a port from 1 to 65535 (e.g. tcp:127.0.0.1:50051)")
        if numeric_host or v6:
            try:
                address = ipaddress.IPv6Address(host) if v6 else ipaddress.IPv4Address(host)
            except ValueError:
                kind = "an IPv6 address in brackets" if v6 else "an IPv4 address such as 127.0.0.1 (systemd's ListenStream= takes no host names)"
                raise ValueError(f"the host {host!r} is not {kind}") from None
            if v6 and address.scope_id:  # type: ignore[union-attr]
                raise ValueError(f"the host {host!r} has a zone (%...), which ListenStream= does not take")
        return ListenAddress("tcp", host=host, port=int(port_text))
    raise ValueError(LISTEN_EXPECTED)


def is_loopback_ip(host: str) -> bool:
    """True when ``host`` is a loopback IP address literal (False for names and other addresses)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
