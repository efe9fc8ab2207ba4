"""Render the schema as documentation: commented TOML defaults and the Markdown reference."""

from __future__ import annotations

import tomli_w

from memsched.config import schema
from memsched.config.secrets import redacted
from memsched.config.durations import DURATION_MAX_MS, humanize_ms
from memsched.config.load import Config, parse_config


def _default_text(option: schema.Option) -> str:
    if option.default_doc:
        return option.default_doc
    if option.default is None:
        return "unset"
    if option.type == "duration":
        return humanize_ms(int(option.default))  # type: ignore[arg-type]
    if isinstance(option.default, bool):
        return "true" if option.default else "false"
    if isinstance(option.default, str):
        return f'"{option.default}"'
    return str(option.default)


def _type_text(option: schema.Option) -> str:
    if option.choices:
        return "one of " + ", ".join(f"`{c}`" for c in option.choices)
    if option.type == "integer" and option.minimum is not None:
        return f"integer {option.minimum}..{option.maximum}"
    if option.type == "duration":
        limit = humanize_ms(option.maximum if option.maximum is not None else DURATION_MAX_MS)
        return f'duration (seconds, or text like "5min", "1h 30min"; at most {limit})'
    if option.type == "path":
        return "path" if option.relative else "absolute path"
    return {
        "description": "text",
        "url": "http:// or https:// URL",
        "envvar": "environment variable name",
        "group": "group name or numeric GID",
        "listen": "`unix:PATH` or `tcp:IP:PORT`",
        "argv": "array of strings",
        "cron": "cron expression",
        "timezone": "IANA time zone name",
        "size": 'size ("512M", "2G", "50%", "infinity")',
        "percent": 'percentage ("50%")',
    }.get(option.type, option.type)


def effective_document(config: Config) -> dict[str, object]:
    """Return the effective config (defaults filled in) as a config document, durations in seconds.

    The sections by name, and ``jobs``: read back as a config file (TOML, or this as JSON) it is
    the same config, except that secrets (``summarizer.api_key``) are ``[redacted]``. Unset keys are None.
    """
    document: dict[str, object] = {}
    for sect in schema.SECTIONS:
        values = {key: redacted(sect.name, key, value) for key, value in config.settings.get(sect.name, {}).items()}
        document[sect.name] = _durations_in_seconds(values, sect.options)
    jobs = {name: _durations_in_seconds(job.as_dict(), schema.JOB_OPTIONS) for name, job in config.jobs.items()}
    document["jobs"] = jobs
    return document


def effective_toml(config: Config) -> str:
    """Return the effective config (defaults filled in) as TOML, durations in seconds."""
    return tomli_w.dumps(_drop_none(effective_document(config)))


def loadable(document: dict[str, object]) -> dict[str, object]:
    """Return ``document`` (from :func:`effective_document`) without its unset keys, as a config file holds it."""
    return _drop_none(document)  # type: ignore[return-value]


def _durations_in_seconds(values: dict[str, object], options: tuple[schema.Option, ...]) -> dict[str, object]:
    """Return ``values`` with each duration key's milliseconds shown in seconds.

    Settings and job keys hold milliseconds; shown in seconds, the unit a bare number has in the
    config file, so that what is shown loads back unchanged.
    """
    for option in options:
        if option.type == "duration" and isinstance(values.get(option.key), int):
            values[option.key] = _seconds(values[option.key])  # type: ignore[arg-type]
    return values


def _seconds(ms: int) -> int | float:
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def _drop_none(value: object) -> object:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


def defaults_toml() -> str:
    """Return the documented defaults: every key with its description, as commented TOML."""
    lines = [
        "# memsched configuration: every key, its default and what it does.",
        "# Built-in jobs can be changed key by key; a new [jobs.NAME] table adds a job.",
        "# Durations are seconds or text such as \"5min\"; cron has 5, 6 (seconds first) or 7 fields.",
        "",
    ]
    for sect in schema.SECTIONS:
        lines.append(f"# {sect.description}")
        lines.append(f"[{sect.name}]")
        for option in sect.options:
            lines.extend(_commented(option))
        lines.append("")
    lines.append("# Keys of every job, [jobs.NAME]:")
    for option in schema.JOB_OPTIONS:
        lines.extend(_commented(option))
    lines.append("")
    lines.append("# The built-in jobs (all UTC):")
    builtin = parse_config({})
    for name, job in builtin.jobs.items():
        lines.append(tomli_w.dumps({"jobs": {name: _job_as_toml(job.as_dict())}}).strip())
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _job_as_toml(values: dict[str, object]) -> dict[str, object]:
    out = {}
    for key, value in values.items():
        option = schema.job_option(key)
        if option is not None and option.type == "duration":
            value = humanize_ms(int(value))  # type: ignore[arg-type]
            value = value.replace(" ", "")
        out[key] = value
    return out


def _commented(option: schema.Option) -> list[str]:
    applies = f" (kind: {', '.join(option.kinds)})" if option.kinds else ""
    return [
        f"#   {option.key}{applies}: {_type_text(option)}; default: {_default_text(option)}",
        f"#       {option.description}",
    ]


def reference_markdown() -> str:
    """Return docs/config.md: the config reference generated from the schema."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from memsched/config/schema.py by `memsched config reference`; do not edit. -->",
        "",
        "memsched reads one TOML file: `--config PATH`, else `$MEMSCHED_CONFIG`, else",
        "`$XDG_CONFIG_HOME/memsched/memsched.toml` (user scope) or `/etc/memsched/memsched.toml`",
        "(system scope). With no file it uses the built-in defaults below. Unknown keys, wrong",
        "types and bad values are refused with the key path (`jobs.NAME.key: ...`) and exit status 2.",
        "",
        "Each kind of value is checked as the program that reads it will read it (most end up in",
        "a unit file, read by systemd), so what `memsched validate` accepts, `render` and",
        "`install-units` accept too, and systemd reads back unchanged:",
        "",
        "- durations: a number of seconds, or text in systemd's units, case-sensitive (`ms`, `s`,",
        "  `min` or `m`, `h`, `d`, `w`, `month`, `y` and their long names; `1h 30min`), in whole",
        "  milliseconds. `M` is refused: systemd reads it as a month.",
        "- sizes (`memory_max`): bytes with an optional `K`, `M`, `G` or `T` (powers of 1024;",
        "  `1.5G`), 0.01% to 100% of RAM with at most two decimals, or `infinity`; never 0.",
        "- percentages (`cpu_quota`): above 0%, at most two decimals.",
        "- text: no control characters; a description at most 2048 bytes, without a leading or",
        "  trailing space or a trailing backslash (systemd would strip or join them).",
        "",
    ]
    for sect in schema.SECTIONS:
        lines += [f"## `[{sect.name}]`", "", sect.description, ""]
        lines += _option_table(sect.options)
    lines += [
        "## `[jobs.NAME]`",
        "",
        "One table per job. NAME becomes the unit names `memsched-NAME.timer` and",
        f"`memsched-NAME.service`, so it is limited to {schema.JOB_NAME_RULE}.",
        "Built-in jobs can be changed key by key (or switched off with `enabled = false`).",
        "",
    ]
    lines += _option_table(schema.JOB_OPTIONS)
    lines += ["## Built-in jobs", "", "| job | kind | cron | jitter | timeout | notes |", "|---|---|---|---|---|---|"]
    for name, job in parse_config({}).jobs.items():
        notes = []
        if job.level:
            notes.append(f"level {job.level}, min_age {humanize_ms(job.min_age or 0)}")
        if job.nice is not None:
            notes.append(f"nice {job.nice}, io_class {job.io_class}")
        lines.append(
            f"| {name} | {job.kind} | `{job.cron}` | {humanize_ms(job.jitter)} | {humanize_ms(job.timeout)} | {'; '.join(notes)} |"
        )
    lines.append("")
    return "\n".join(lines)


def _option_table(options: tuple[schema.Option, ...]) -> list[str]:
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for option in options:
        applies = f" (only `{'`, `'.join(option.kinds)}`)" if option.kinds else ""
        rows.append(
            f"| `{option.key}`{applies} | {_type_text(option)} | {_default_text(option)} | {option.description} |"
        )
    return rows + [""]
