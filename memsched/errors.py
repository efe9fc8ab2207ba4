"""The errors memsched's core raises, each carrying the process exit code it maps to.

The CLI turns every :class:`MemschedError` into a one-paragraph message and its
``exit_code``; nothing below the CLI prints. The codes are documented in
``docs/exit-codes.md`` and are part of the interface scripts rely on.
"""

from __future__ import annotations

# Exit codes of the memsched command (not of `memsched exec`, see memsched.jobs.runner).
EXIT_OK = 0
EXIT_FAILURE = 1  # an operation failed, or a check found problems
EXIT_USAGE = 2  # bad input: a config key, a CLI argument, a cron expression
EXIT_NO_MANAGER = 3  # no systemd manager reachable for the chosen scope
EXIT_PERMISSION = 4  # the manager refused us (system scope without privileges)
EXIT_REFUSED = 5  # a run was not started: the job's overlap policy refused it (a run is in progress)


class MemschedError(Exception):
    """Base of every error memsched reports to its user.

    ``message`` is complete and actionable on its own; ``exit_code`` is what the
    CLI exits with.
    """

    exit_code = EXIT_FAILURE

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(MemschedError):
    """A CLI argument or other user input is invalid."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """One or more config keys are invalid.

    ``problems`` is a list of ``(key_path, message)``; ``key_path`` looks like
    ``jobs.toc_rollup_day.cron``.
    """

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None):
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        lines = [f"{path}: {msg}" if path else msg for path, msg in problems]
        super().__init__(f"invalid configuration{where}:\n  " + "\n  ".join(lines))


class CronError(UsageError):
    """A cron expression cannot be parsed or cannot be expressed as a systemd calendar."""


class UnknownJobError(UsageError):
    """A job name given on the command line is not in the config."""

    def __init__(self, name: str, known: list[str]):
        self.name = name
        self.known = known
        listing = ", ".join(known) if known else "(none configured)"
        super().__init__(f"unknown job {name!r}; known jobs: {listing}")


class ManagerUnavailable(MemschedError):
    """No systemd manager can be reached for the requested scope."""

    exit_code = EXIT_NO_MANAGER


class PermissionDenied(MemschedError):
    """The systemd manager (or a file) refused the operation for lack of privileges."""

    exit_code = EXIT_PERMISSION
