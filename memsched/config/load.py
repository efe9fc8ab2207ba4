"""Find, read and validate the config file against :mod:`memsched.config.schema`.

Discovery order: ``--config PATH``, then ``$MEMSCHED_CONFIG``, then
``$XDG_CONFIG_HOME/memsched/memsched.toml`` (user scope) or
``/etc/memsched/memsched.toml`` (system scope); with no file, the built-in
defaults. Every problem is reported with its key path (``jobs.NAME.cron``),
all at once, as a :class:`ConfigError`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from memsched import locate
from memsched.config import schema
from memsched.config import values
from memsched.config.durations import DURATION_MAX_MS, parse_duration_ms
from memsched.cron.calendar import to_on_calendar
from memsched.cron.parse import CronSpec, parse_cron
from memsched.errors import ConfigError, CronError, UsageError

SCOPES = locate.SCOPES
SYSTEM_CONFIG = Path(locate.SYSTEM_CONFIG)

_JOB_NAME = re.compile(schema.JOB_NAME_PATTERN)
_REFUSED_ZONES = {"localtime", "Factory", "posixrules"}


@dataclass(frozen=True)
class JobConfig:
    """One job, validated; durations in milliseconds."""

    name: str
    kind: str
    cron: str
    timezone: str
    jitter: int
    fixed_random_delay: bool
    accuracy: int
    overlap: str
    timeout: int
    catch_up: bool
    enabled: bool
    description: str
    level: str | None = None
    min_age: int | None = None
    command: tuple[str, ...] | None = None
    nice: int | None = None
    io_class: str | None = None
    memory_max: str | None = None
    cpu_quota: str | None = None
    spec: CronSpec | None = field(default=None, compare=False, repr=False)
    on_calendar: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """Return the job's keys as config values (unset keys left out)."""
        out: dict[str, object] = {}
        for option in schema.JOB_OPTIONS:
            if option.kinds and self.kind not in option.kinds:
                continue
            value = getattr(self, option.key)
            if value is None:
                continue
            out[option.key] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class Config:
    """The effective configuration: where it came from, and every job."""

    source: Path | None
    jobs: dict[str, JobConfig]
    settings: dict[str, dict[str, object]] = field(default_factory=dict)

    @property
    def enabled_jobs(self) -> dict[str, JobConfig]:
        return {name: job for name, job in self.jobs.items() if job.enabled}


def resolve_scope(flag: str | None, env: dict[str, str] | None = None) -> str:
    """Return "user" or "system": the flag, else ``$MEMSCHED_SCOPE``, else system for root and user otherwise.

    Raises :class:`UsageError` for an invalid ``$MEMSCHED_SCOPE``.
    """
    return locate.resolve_scope(flag, env)


def user_config_home(env: dict[str, str] | None = None) -> Path:
    """Return ``$XDG_CONFIG_HOME`` or ``~/.config``."""
    return Path(locate.user_config_home(env))


def find_config(explicit: str | None, scope: str, env: dict[str, str] | None = None) -> Path | None:
    """Return the config file to use, or None for built-in defaults.

    Raises :class:`UsageError` when an explicitly named file does not exist.
    """
    found = locate.find_config_path(explicit, scope, env)
    return Path(found) if found else None


def load_config(path: Path | None) -> Config:
    """Read and validate the config at ``path`` (None: defaults only).

    Returns the effective :class:`Config`.
    Raises :class:`ConfigError` listing every problem with its key path.
    """
    raw: dict[str, object] = {}
    if path is not None:
        try:
            raw = _decode(path)
        except UnicodeDecodeError:
            raise ConfigError([("", "not valid UTF-8 text")], source=str(path)) from None
        except RecursionError:
            raise ConfigError([("", "not a config: arrays or tables nested too deeply")], source=str(path)) from None
        except ValueError as exc:  # tomllib's TOMLDecodeError, and Python's own refusals it lets through (an integer past 4300 digits)
            raise ConfigError([("", f"not valid TOML: {exc}")], source=str(path)) from None
        except OSError as exc:
            raise ConfigError([("", f"cannot read: {exc.strerror}")], source=str(path)) from None
    return parse_config(raw, path)


def _decode(path: Path) -> dict[str, object]:
    """Return the file's decoded TOML table, from the per-user cache when the file is unchanged (memsched.config.rawcache)."""
    from memsched.config import rawcache

    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        table = rawcache.cached(str(path), st)
        if table is not None:
            return table
        text = fh.read().decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # newlines as read_text() reads them
    import tomllib

    table = tomllib.loads(text)
    rawcache.store(str(path), st, table)
    return table


def parse_config(raw: dict[str, object], source: Path | None = None) -> Config:
    """Validate an already-decoded config table.

    Returns the effective :class:`Config`; raises :class:`ConfigError`.
    """
    problems: list[tuple[str, str]] = []
    settings: dict[str, dict[str, object]] = {}
    jobs_raw: dict[str, object] = {}
    for key, value in raw.items():
        if key == "jobs":
            if not isinstance(value, dict):
                problems.append(("jobs", f"expected a table of jobs, got {_type_name(value)}"))
            else:
                jobs_raw = value
            continue
        sect = schema.section(key)
        if sect is None:
            known = ", ".join(["jobs", *(s.name for s in schema.SECTIONS)])
            problems.append((_path(key), f"unknown key; known top-level tables: {known}"))
            continue
        if not isinstance(value, dict):
            problems.append((key, f"expected a table, got {_type_name(value)}"))
            continue
        settings[key] = _validate_section(sect, value, problems)
    for sect in schema.SECTIONS:
        settings.setdefault(sect.name, {o.key: o.default for o in sect.options})

    jobs: dict[str, JobConfig] = {}
    names = list(schema.DEFAULT_JOBS) + [n for n in jobs_raw if n not in schema.DEFAULT_JOBS]
    for name in names:
        table = jobs_raw.get(name, {})
        if not isinstance(table, dict):
            problems.append((_path("jobs", name), f"expected a table, got {_type_name(table)}"))
            continue
        job = _validate_job(name, table, problems)
        if job is not None:
            jobs[name] = job
    if not problems:
        problems.extend(cross_check(settings, jobs))
    if problems:
        raise ConfigError(problems, source=str(source) if source else None)
    return Config(source=source, jobs=jobs, settings=settings)


def cross_check(settings: dict[str, dict[str, object]], jobs: dict[str, JobConfig]) -> list[tuple[str, str]]:
    """Return the problems no single key shows: keys that are valid alone but not together.

    The facade's: TCP needs ``token_file``; an address that is not loopback needs
    ``allow_remote``, which needs TLS (``tls_cert_file`` and ``tls_key_file``, both or neither); a job named ``grpc`` would take the facade's unit names.
    Each problem is ``(key path, message)``, as in :class:`ConfigError`.
    """
    problems: list[tuple[str, str]] = []
    facade = settings.get("facade", {})
    listen = str(facade.get("listen") or "")
    if listen:
        address = values.parse_listen(listen)
        if address.kind == "tcp" and not facade.get("token_file"):
            problems.append(("facade.listen", f"{listen!r}: TCP needs facade.token_file"))
        elif address.kind == "tcp" and not facade.get("allow_remote") and not values.is_loopback_ip(address.host):
            problems.append(("facade.listen", f"{listen!r}: not a loopback address; set facade.allow_remote = true to serve the network"))
    if bool(facade.get("tls_cert_file")) != bool(facade.get("tls_key_file")):
        missing = "facade.tls_key_file" if facade.get("tls_cert_file") else "facade.tls_cert_file"
        problems.append((missing, "TLS needs both facade.tls_cert_file and facade.tls_key_file"))
    elif facade.get("allow_remote") and not facade.get("tls_cert_file"):
        problems.append(("facade.allow_remote", "serving the network needs facade.tls_cert_file and facade.tls_key_file "
                         "(the bearer token would cross the network in clear)"))
    grpc = jobs.get("grpc")
    if facade.get("enabled") and grpc is not None and grpc.enabled:
        problems.append(("jobs.grpc", "its units would clash with the facade's memsched-grpc.service; rename the job, or set facade.enabled = false"))
    return problems


def _validate_section(sect: schema.Section, table: dict, problems: list) -> dict[str, object]:
    known = {o.key: o for o in sect.options}
    values = {o.key: o.default for o in sect.options}
    for key, value in table.items():
        option = known.get(key)
        if option is None:
            problems.append((_path(sect.name, key), f"unknown key; known: {', '.join(known)}"))
            continue
        try:
            values[key] = convert(option, value)
        except ValueError as exc:
            problems.append((_path(sect.name, key), str(exc)))
    return values


def _validate_job(name: str, table: dict, problems: list) -> JobConfig | None:
    base = _path("jobs", name)
    if not _JOB_NAME.fullmatch(name):
        problems.append((base, f"the job name can't be a unit name: use {schema.JOB_NAME_RULE}"))
        return None
    merged: dict[str, object] = dict(schema.DEFAULT_JOBS.get(name, {}))
    start = len(problems)
    invalid: set[str] = set()
    for key, value in table.items():
        option = schema.job_option(key)
        if option is None:
            known = ", ".join(o.key for o in schema.JOB_OPTIONS)
            problems.append((_path("jobs", name, key), f"unknown key; known: {known}"))
            continue
        try:
            merged[key] = convert(option, value)
        except ValueError as exc:
            problems.append((_path("jobs", name, key), str(exc)))
            invalid.add(key)
    kind = merged.get("kind")
    if kind is None:
        if "kind" not in invalid:
            problems.append((_path("jobs", name, "kind"), f"missing; expected one of {', '.join(schema.JOB_KINDS)}"))
        return None
    for key in table:
        option = schema.job_option(key)
        if option is not None and option.kinds and kind not in option.kinds:
            problems.append((_path("jobs", name, key), f"only applies to kind = {' or '.join(map(repr, option.kinds))}"))
    for option in schema.JOB_OPTIONS:
        if option.kinds and kind not in option.kinds:
            continue
        if option.required and option.key not in merged and option.key not in invalid:
            problems.append((_path("jobs", name, option.key), "missing (required)"))
    if merged.get("timeout") == 0:
        problems.append((_path("jobs", name, "timeout"), "must be longer than 0"))
    spec = None
    on_calendar: tuple[str, ...] = ()
    if "cron" in merged:
        try:
            spec = parse_cron(str(merged["cron"]))
            if "timezone" not in invalid:
                on_calendar = tuple(to_on_calendar(spec, str(merged.get("timezone", "UTC"))))
        except CronError as exc:
            problems.append((_path("jobs", name, "cron"), str(exc)))
    if len(problems) > start:
        return None

    values: dict[str, object] = {o.key: o.default for o in schema.JOB_OPTIONS if not o.kinds or kind in o.kinds}
    values.update(schema.KIND_DEFAULTS.get(kind, {}))
    if kind == "rollup":
        values["min_age"] = schema.LEVEL_MIN_AGE_MS[str(merged["level"])]
    values.update(merged)
    if not values.get("description"):
        values["description"] = _describe(name, values)
    return JobConfig(name=name, spec=spec, on_calendar=on_calendar, **values)  # type: ignore[arg-type]


def _describe(name: str, values: dict[str, object]) -> str:
    kind = values["kind"]
    if kind == "rollup":
        return f"memsched: roll up closed {values['level']} periods of the memory TOC ({name})"
    if kind == "compaction":
        return f"memsched: compact the memory store ({name})"
    if kind == "verify":
        return f"memsched: verify the whole memory store ({name})"
    return f"memsched: run command job {name}"


def convert(option: schema.Option, value: object) -> object:
    """Check ``value`` against ``option`` and return it in its parsed form.

    The rule of each type lives in :mod:`memsched.config.values` and
    :mod:`memsched.config.durations`, which the unit renderer uses too.
    Raises ValueError with a message that says what was expected.
    """
    kind = option.type
    if kind in _TEXT_RULES:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {_type_name(value)}")
        if value == "" and kind not in ("string", "cron"):
            return value  # empty: the documented default (generated description, default path, none)
        _TEXT_RULES[kind](value, option)
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {_type_name(value)}")
        return value
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_type_name(value)}")
        if option.minimum is not None and value < option.minimum or option.maximum is not None and value > option.maximum:
            shown = value if abs(value) < 10**30 else "a number that large"
            raise ValueError(f"expected an integer from {option.minimum} to {option.maximum}, got {shown}")
        return value
    if kind == "duration":
        return parse_duration_ms(value, option.maximum if option.maximum is not None else DURATION_MAX_MS)
    if kind == "enum":
        if not isinstance(value, str) or value not in option.choices:
            got = repr(value[:40]) if isinstance(value, str) else _type_name(value)
            raise ValueError(f"expected one of {', '.join(option.choices)}, got {got}")
        return value
    if kind == "timezone":
        if not isinstance(value, str):
            raise ValueError(f"expected an IANA time zone name, got {_type_name(value)}")
        if not is_valid_timezone(value):
            raise ValueError(f'{value[:60]!r} is not an IANA time zone name (expected e.g. "UTC" or "Europe/Berlin")')
        return value
    if kind == "argv":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not (value or option.empty):
            example = '["/usr/bin/true"]'
            raise ValueError(f"expected a {'' if option.empty else 'non-empty '}list of strings, e.g. {example}")
        for item in value:
            values.check_text(item)
        if value and not value[0]:
            raise ValueError("the program (first element) is empty")
        return tuple(value)
    if kind == "size":
        return values.check_memory_max(value)
    if kind == "percent":
        return values.check_cpu_quota(value)
    raise AssertionError(f"unknown option type {kind}")


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


def _check_url(value: str, _option: schema.Option) -> None:
    values.check_text(value)
    if not value.startswith(("http://", "https://")) or len(value) <= len("https://"):
        raise ValueError(f"{value[:60]!r} is not an http:// or https:// URL")


def _check_envvar(value: str, _option: schema.Option) -> None:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(f"{value[:60]!r} is not an environment variable name (letters, digits and '_', not starting with a digit)")


def _check_listen(value: str, _option: schema.Option) -> None:
    values.parse_listen(value)


_TEXT_RULES = {
    "string": lambda value, option: values.check_text(value),
    "cron": lambda value, option: values.check_text(value),
    "description": lambda value, option: values.check_description(value),
    "path": lambda value, option: values.check_file_path(value, relative_ok=option.relative),
    "url": _check_url,
    "envvar": _check_envvar,
    "group": lambda value, option: values.check_group(value),
    "listen": _check_listen,
}


# Where systemd and Python's zoneinfo look for the tz database (zoneinfo.TZPATH's defaults).
TZ_DIRS = ("/usr/share/zoneinfo", "/usr/lib/zoneinfo", "/usr/share/lib/zoneinfo", "/etc/zoneinfo")
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*")


@cache
def is_valid_timezone(name: str) -> bool:
    """True for IANA zone names of the system's tz database (no paths, no POSIX TZ strings).

    Checked as systemd checks it: the name is a TZif file of the database.
    """
    if name in _REFUSED_ZONES or name.startswith(("posix/", "right/")) or not _ZONE_NAME.fullmatch(name):
        return False
    for directory in TZ_DIRS:
        try:
            with open(os.path.join(directory, name), "rb") as fh:
                return fh.read(4) == b"TZif"
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            continue
        except OSError:
            return False
    return False


def _type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _path(*parts: str) -> str:
    """Join key parts as TOML would write them (quoting keys that need it)."""
    return ".".join(p if _BARE_KEY.fullmatch(p) else json.dumps(p, ensure_ascii=False) for p in parts)
