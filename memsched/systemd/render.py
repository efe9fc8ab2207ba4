"""Render jobs as systemd units from the Jinja2 templates, with systemd-safe escaping.

Unit names: ``memsched-<job>.timer`` and ``memsched-<job>.service`` (job names
are restricted by the config schema to characters that need no escaping). A job
with ``overlap = "concurrent"`` gets a template ``memsched-<job>@.service`` for
the runs and ``memsched-<job>.service`` as the spawner the timer starts. Shared
static units come from ``units/`` (``memsched-failure@.service``).

Every value written into a unit goes through a filter that refuses control
characters (a newline would start a new directive) and escapes systemd's
specifiers (``%`` -> ``%%``) and, in command lines, variables (``$`` -> ``$$``)
and quoting, so that the unit says exactly what the config meant.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Callable

import jinja2

from memsched import __version__
from memsched.config import values
from memsched.config.durations import format_duration_ms
from memsched.config.load import Config, JobConfig
from memsched.config.secrets import CREDENTIAL_NAME
from memsched.errors import UsageError
from memsched.locate import SYSTEM_USER
from memsched.systemd.names import failure_unit_name, instance_failure_unit, instance_template_name, service_name, timer_name
from memsched.text import first_control_char

FAILURE_UNIT_TEMPLATE = "memsched-failure@.service"
HEADER_MARK = "# Managed by memsched"
DEFER_REACTIVATION_MIN_VERSION = 257

# `memsched exec` exit codes the units rely on (see memsched.jobs.runner).
EXIT_INTERRUPTED = 75


class RenderError(UsageError):
    """A value cannot be written into a unit file safely."""


@dataclass(frozen=True)
class RenderedUnit:
    """One unit file: its name, full text and the job it belongs to (None for shared units)."""

    name: str
    content: str
    job: str | None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()


@dataclass(frozen=True)
class RenderContext:
    """Everything rendering needs besides the config."""

    scope: str
    memsched_argv: tuple[str, ...]
    config_path: Path | None
    systemd_version: int
    service_user: str = SYSTEM_USER
    service_group: str = SYSTEM_USER
    read_write_paths: tuple[str, ...] = ()
    network: bool = False
    facade: dict[str, object] | None = None  # memsched-grpc.* variables (memsched.systemd.facade_units); None: not rendered
    api_key_credential: str = ""  # summarizer.api_key_file, loaded as the credential memsched-api-key (system scope)


# ------------------------------------------------------------------ escaping


class Specifier(str):
    """Text of ours in which ``%`` specifiers (``%i``) are meant to be expanded by systemd."""


def _refuse_control(value: str, what: str) -> None:
    bad = first_control_char(value)
    if bad is not None:
        raise RenderError(f"{what} {value!r} contains a control character ({bad!r}); it cannot go into a unit file")


def _rule(check: Callable[[str], object], value: str, what: str) -> None:
    """Apply one of the config's value rules (memsched.config.values) to a value about to be written."""
    _refuse_control(value, what)
    try:
        check(value)
    except ValueError as exc:
        raise RenderError(f"{what}: {exc}") from None


def unit_text(value: object) -> str:
    """Escape a free-text setting value: no control characters, no trailing backslash, ``%`` doubled."""
    text = str(value)
    _refuse_control(text, "the value")
    if text.rstrip().endswith("\\"):
        raise RenderError(f"the value {text!r} ends with a backslash, which would continue the unit file line")
    return text if isinstance(value, Specifier) else text.replace("%", "%%")


def description(value: object) -> str:
    """Write a Description= value: the config's description rule, ``%`` doubled (unless it is our own Specifier)."""
    text = str(value)
    _rule(values.check_description, text, "the description")
    return text if isinstance(value, Specifier) else text.replace("%", "%%")


def plain_value(value: object) -> str:
    """A value of a setting that expands no specifiers (MemoryMax=, CPUQuota=): only refuse control characters."""
    text = str(value)
    _refuse_control(text, "the value")
    return text


def comment_text(value: object) -> str:
    """Make a value safe inside a comment line (control characters shown escaped)."""
    return "".join(c if ord(c) >= 32 and ord(c) != 127 else repr(c)[1:-1] for c in str(value))


def exec_arg(value: object) -> str:
    """Quote one command-line argument for ExecStart=: double quotes, C escapes, ``%%``, ``$$``."""
    text = str(value)
    _refuse_control(text, "the command-line argument")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$")
    if not isinstance(value, Specifier):
        escaped = escaped.replace("%", "%%")
    return f'"{escaped}"'


def exec_program(value: object) -> str:
    """Quote the program of ExecStart=: the config's program rule, only ``%`` doubled.

    systemd expands specifiers in the program but no ``$`` variables, and refuses quotes
    and backslashes in it whatever the escaping, so those are refused here.
    """
    text = str(value)
    _rule(values.check_program_path, text, "the program")
    return '"' + text.replace("%", "%%") + '"'


def exec_line(argv: list[str] | tuple[str, ...]) -> str:
    """Return a full ExecStart= command line; the program must be an absolute path."""
    if not argv or not str(argv[0]).startswith("/"):
        raise RenderError(f"the program of a unit command must be an absolute path, not {argv[0] if argv else '(empty)'!r}")
    return " ".join([exec_program(argv[0]), *(exec_arg(a) for a in argv[1:])])


def path_value(value: object) -> str:
    r"""Quote a path for settings such as ReadWritePaths=: double quotes, ``\\`` and ``\"`` escaped, ``%%``.

    systemd unquotes these settings (a single quote is a quote too) but does not C-unescape
    them, so ``\x20`` would read back as ``x20``; inside double quotes every other character is literal.
    """
    text = str(value)
    _rule(values.check_absolute_path, text, "the path")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def credential_path(value: object) -> str:
    """Write the path of LoadCredential=ID:PATH: systemd takes the rest of the line as it is (no
    unquoting), expanding specifiers, so only ``%`` is doubled; edge whitespace would be lost and is refused."""
    text = str(value)
    _rule(values.check_absolute_path, text, "the path")
    if text != text.strip():
        raise RenderError(f"summarizer.api_key_file {text!r}: no leading or trailing whitespace")
    return text.replace("%", "%%")


def timespan(ms: object) -> str:
    return format_duration_ms(int(ms))  # type: ignore[arg-type]


# ------------------------------------------------------------------ environment


def _resource_dir(name: str) -> Path:
    """Return the templates/ or units/ directory: inside the wheel, else the source tree."""
    packaged = resources.files("memsched") / "_data" / name
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / name


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(_resource_dir("templates")), str(_resource_dir("units"))]),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        unit_text=unit_text,
        plain_value=plain_value,
        comment_text=comment_text,
        exec_line=exec_line,
        exec_arg=exec_arg,
        path_value=path_value,
        credential_path=credential_path,
        description=description,
        timespan=timespan,
    )
    return env


def static_unit_templates() -> list[str]:
    """Return the names of the shared units shipped in units/ (without the .j2 suffix)."""
    return sorted(p.name[: -len(".j2")] for p in _resource_dir("units").glob("*.j2"))


# ------------------------------------------------------------------ rendering


def memsched_command() -> tuple[str, ...]:
    """Return the absolute command that runs this installation of memsched."""
    beside = Path(sys.executable).parent / "memsched"
    if beside.is_file():
        return (str(beside),)
    found = shutil.which("memsched")
    if found:
        return (str(Path(found).resolve()),)
    return (sys.executable, "-m", "memsched")


def local_systemd_version() -> int:
    """Return the major version of the installed systemd binaries (0 when unknown)."""
    try:
        out = subprocess.run(["systemctl", "--version"], capture_output=True, text=True, timeout=10).stdout
        return int(out.split()[1])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return 0


def _base_args(ctx: RenderContext) -> list[str]:
    args = [*ctx.memsched_argv, f"--{ctx.scope}"]
    if ctx.config_path is not None:
        args += ["--config", str(ctx.config_path)]
    return args


def render_job(job: JobConfig, ctx: RenderContext) -> list[RenderedUnit]:
    """Return the units of one job (timer, service, and the instance template for concurrent jobs)."""
    env = environment()
    base = _base_args(ctx)
    concurrent = job.overlap == "concurrent"
    defer = job.overlap == "skip" and ctx.systemd_version >= DEFER_REACTIVATION_MIN_VERSION
    gate = [*base, "exec", "--gate", job.name] if job.overlap == "skip" and not defer else None
    common = dict(
        version=__version__,
        job=job.name,
        job_cfg=job,
        scope=ctx.scope,
        config_label=str(ctx.config_path) if ctx.config_path else "(built-in defaults)",
        failure_unit=failure_unit_name(job.name),
        exit_interrupted=EXIT_INTERRUPTED,
        service_user=ctx.service_user,
        service_group=ctx.service_group,
        read_write_paths=ctx.read_write_paths,
        network=ctx.network,
        journal_access=False,
        api_key_credential=ctx.api_key_credential,
        credential_name=CREDENTIAL_NAME,
    )
    units = [
        RenderedUnit(
            timer_name(job.name),
            env.get_template("timer.j2").render(
                **common, unit_name=timer_name(job.name), target_unit=service_name(job.name), defer_reactivation=defer
            ),
            job.name,
        )
    ]
    if concurrent:
        units.append(
            RenderedUnit(
                service_name(job.name),
                env.get_template("service.j2").render(
                    **common,
                    unit_name=service_name(job.name),
                    description=f"{job.description} (starts one run per slot)",
                    gate=None,
                    exec_start=[*base, "exec", "--spawn", job.name],
                    spawner=True,
                ),
                job.name,
            )
        )
        units.append(
            RenderedUnit(
                instance_template_name(job.name),
                env.get_template("service.j2").render(
                    **{**common, "failure_unit": instance_failure_unit(job.name)},
                    unit_name=instance_template_name(job.name),
                    description=Specifier(job.description.replace("%", "%%") + " (run %i)"),
                    gate=None,
                    exec_start=[*base, "exec", job.name, "--instance", Specifier("%i")],
                    spawner=False,
                ),
                job.name,
            )
        )
    else:
        units.append(
            RenderedUnit(
                service_name(job.name),
                env.get_template("service.j2").render(
                    **common,
                    unit_name=service_name(job.name),
                    description=job.description,
                    gate=gate,
                    exec_start=[*base, "exec", job.name],
                    spawner=False,
                ),
                job.name,
            )
        )
    return units


def render_static(ctx: RenderContext) -> list[RenderedUnit]:
    """Return the shared units (the failure-notification template)."""
    env = environment()
    base = _base_args(ctx)
    units = []
    for name in static_unit_templates():
        if name.startswith("memsched-grpc.") and ctx.facade is None:
            continue  # the gRPC facade's units exist only with [facade] enabled = true
        text = env.get_template(f"{name}.j2").render(
            version=__version__,
            job=None,
            unit_name=name,
            scope=ctx.scope,
            config_label=str(ctx.config_path) if ctx.config_path else "(built-in defaults)",
            notify_failure=[*base, "notify-failure", Specifier("%i")],
            service_user=ctx.service_user,
            service_group=ctx.service_group,
            read_write_paths=ctx.read_write_paths,
            network=True,
            journal_access=True,
            facade=ctx.facade,
            memsched_base=base,
        )
        units.append(RenderedUnit(name, text, None))
    return units


def render_all(config: Config, ctx: RenderContext) -> list[RenderedUnit]:
    """Return every unit of the config's enabled jobs plus the shared units, sorted by name.

    Raises :class:`RenderError` naming the job when a value cannot be written safely.
    """
    if ctx.config_path is not None:
        _refuse_control(str(ctx.config_path), "--config path")
    # The program every unit runs: judged once here, so its problem is not blamed on the first job.
    _rule(values.check_program_path, ctx.memsched_argv[0], "the memsched program the units would run")
    units: list[RenderedUnit] = []
    for job in config.enabled_jobs.values():
        try:
            units.extend(render_job(job, ctx))
        except RenderError as exc:
            raise RenderError(f"jobs.{job.name}: {exc}") from None
    units.extend(render_static(ctx))
    return sorted(units, key=lambda u: u.name)
