"""The memsched command line: parse arguments, call the core, print. Nothing else lives here.

The entry point imports no click (50 ms of a run's start on a small machine) until it
knows the command is not `memsched exec` in the forms the units use: those go to
:mod:`memsched.cli.fastexec`. Everything else, `exec --help` included, is the click
application in :mod:`memsched.cli.app`.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Entry point of the `memsched` console script; exits with the command's code."""
    from memsched.cli.fastexec import parse_exec_argv

    parsed = parse_exec_argv(sys.argv[1:])
    if parsed is not None:
        from memsched.cli.fastexec import run_exec

        sys.exit(run_exec(parsed))
    from memsched.cli.app import cli

    cli(prog_name="memsched")


def __getattr__(name: str) -> object:
    # `from memsched.cli import cli` (the reference generator, tests) still works, lazily.
    if name in ("cli", "COMMANDS", "LazyGroup"):
        from memsched.cli import app

        return getattr(app, name)
    raise AttributeError(f"module 'memsched.cli' has no attribute {name!r}")
