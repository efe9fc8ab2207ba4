"""`memsched exec` without click: what the service units run on every timer start.

The units call ``memsched [--user|--system] [--config PATH] exec [--gate|--spawn] JOB
[--instance NAME]``. :func:`parse_exec_argv` recognises exactly those forms (options
in any order, ``--opt=value`` too) and returns None for anything else, which then goes
to the click command (help, usage errors). :func:`run_exec` is the command's whole
body, shared with the click command so that both behave alike: it imports only the
config, the runner and what a run of the job needs.
"""

from __future__ import annotations

import os
import sys

# Exit codes (memsched.jobs.runner has the same; not imported here, see run_exec).
_EXIT_FAILED = 1
_EXIT_USAGE = 2
_GATE_ERROR = 255


class ExecArgs:
    """One `memsched exec` invocation (a plain class: typing's NamedTuple costs a start 2-3 ms)."""

    __slots__ = ("job", "config_flag", "scope_flag", "as_gate", "spawn", "instance")

    def __init__(
        self, job: str, config_flag: str | None = None, scope_flag: str | None = None,
        as_gate: bool = False, spawn: bool = False, instance: str | None = None,
    ):
        self.job, self.config_flag, self.scope_flag = job, config_flag, scope_flag
        self.as_gate, self.spawn, self.instance = as_gate, spawn, instance

    def __repr__(self) -> str:
        return "ExecArgs(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"


def parse_exec_argv(argv: list[str]) -> ExecArgs | None:
    """Return the exec invocation ``argv`` (without the program name) spells, or None when it is anything else."""
    try:
        at = argv.index("exec")
    except ValueError:
        return None
    values: dict[str, object] = {}
    job: str | None = None
    if not _options(argv[:at], values, allow=("--config", "--user", "--system")):
        return None
    rest = argv[at + 1 :]
    i = 0
    while i < len(rest):
        word = rest[i]
        if word.startswith("-"):
            name, eq, value = word.partition("=")
            if name in ("--gate", "--spawn", "--user", "--system") and not eq:
                values[name] = True
            elif name in ("--instance", "--config"):
                if not eq:
                    i += 1
                    if i >= len(rest):
                        return None
                    value = rest[i]
                values[name] = value
            else:
                return None  # --help, an unknown option, "--": click answers
        elif job is None:
            job = word
        else:
            return None
        i += 1
    if job is None or (values.get("--gate") and values.get("--spawn")) or (values.get("--user") and values.get("--system")):
        return None
    return ExecArgs(
        job,
        config_flag=values.get("--config"),  # type: ignore[arg-type]
        scope_flag="system" if values.get("--system") else "user" if values.get("--user") else None,
        as_gate=bool(values.get("--gate")),
        spawn=bool(values.get("--spawn")),
        instance=values.get("--instance"),  # type: ignore[arg-type]
    )


def _options(words: list[str], values: dict[str, object], allow: tuple[str, ...]) -> bool:
    i = 0
    while i < len(words):
        name, eq, value = words[i].partition("=")
        if name not in allow:
            return False
        if name == "--config":
            if not eq:
                i += 1
                if i >= len(words):
                    return False
                value = words[i]
            values[name] = value
        elif eq:
            return False
        else:
            values[name] = True
        i += 1
    return True


def run_exec(args: ExecArgs) -> int:
    """Run (or gate, or spawn) one start of a job; return the process exit code.

    Exit codes: 0 success, 1 the run failed, 2 bad config or unknown job, 75
    interrupted; with ``as_gate`` 0 run, 1 skip, 255 cannot decide. Every error
    is one line on stderr (MEMSCHED_DEBUG=1 shows tracebacks of unexpected ones).
    """
    from memsched.errors import ConfigError, MemschedError, UnknownJobError

    usage_code = _GATE_ERROR if args.as_gate else _EXIT_USAGE
    run_code = _GATE_ERROR if args.as_gate else _EXIT_FAILED
    try:
        from memsched.config.load import find_config, load_config, resolve_scope

        scope = resolve_scope(args.scope_flag)
        config = load_config(find_config(args.config_flag, scope))
        job_cfg = config.jobs.get(args.job)
        if job_cfg is None:
            raise UnknownJobError(args.job, sorted(config.jobs))
        if job_cfg.kind == "rollup" and not (args.as_gate or args.spawn):
            from memsched.config.secrets import api_key_problem

            source = str(config.source) if config.source else None
            missing = api_key_problem(config.settings, os.environ, source)  # the environment the unit gave this run
            if missing is not None:
                raise ConfigError([missing], source=source)
    except MemschedError as exc:
        return _fail(exc.message, usage_code)
    except Exception as exc:  # noqa: BLE001 - the gate must end in 255, never in a "skip" traceback (exit 1)
        return _unexpected(exc, usage_code)
    try:
        from memsched.jobs import runner

        if args.as_gate:
            return runner.gate(config, job_cfg, scope)
        if args.spawn:
            return runner.spawn(config, job_cfg, scope)
        return runner.execute(config, job_cfg, scope, args.instance)
    except MemschedError as exc:
        return _fail(exc.message, run_code)
    except Exception as exc:  # noqa: BLE001 - see _unexpected
        return _unexpected(exc, run_code)


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"memsched exec: {message}\n")
    sys.stderr.flush()
    return code


def _unexpected(exc: Exception, code: int) -> int:
    """Print one line for an error no layer below turned into a MemschedError; return ``code``.

    Under systemd the exit code is the whole message: the gate's 255 makes the start fail
    (not a silent skip), the runner's 1 marks the unit failed so OnFailure= reports it.
    MEMSCHED_DEBUG=1 shows the traceback instead.
    """
    import sqlite3

    if os.environ.get("MEMSCHED_DEBUG"):
        raise exc
    if isinstance(exc, sqlite3.Error):
        text = f"the run registry cannot be used: {type(exc).__name__}: {exc}"
    else:
        text = f"internal error: {type(exc).__name__}: {exc} (set MEMSCHED_DEBUG=1 for the traceback)"
    return _fail(" ".join(text.split()), code)
