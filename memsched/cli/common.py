"""What every command shares: the app context, option bundles, output helpers, error mapping."""

from __future__ import annotations

import json
import os
import sys
from datetime import date, datetime, timezone
from functools import wraps
from pathlib import Path
from typing import Any, Callable

import click

from memsched.config.load import Config, find_config, load_config, resolve_scope
from memsched.errors import EXIT_USAGE, MemschedError

EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug in memsched


class AppContext:
    """Per-invocation state: the scope and config flags, and the config loaded on first use.

    Construction does no I/O; :meth:`config` loads explicitly.
    """

    def __init__(self) -> None:
        self.config_flag: str | None = None
        self.scope_flag: str | None = None
        self.endpoint: str | None = None
        self._config: Config | None = None

    @property
    def scope(self) -> str:
        return resolve_scope(self.scope_flag)

    def config_path(self) -> Path | None:
        """Return the config file in use (None: built-in defaults). Raises UsageError."""
        return find_config(self.config_flag, self.scope)

    def config(self) -> Config:
        """Load (once) and return the effective config. Raises ConfigError/UsageError."""
        if self._config is None:
            self._config = load_config(self.config_path())
        return self._config


def app(ctx: click.Context | None = None) -> AppContext:
    """Return the AppContext of the current invocation."""
    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    if root.obj is None:
        root.obj = AppContext()
    return root.obj


def _set_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        app(ctx).config_flag = value


def _set_scope(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        app(ctx).scope_flag = value


def common_options(func: Callable) -> Callable:
    """Add ``--config``, ``--user`` and ``--system`` to a command (also accepted before the command)."""
    func = click.option(
        "--system",
        "scope",
        flag_value="system",
        default=None,
        expose_value=False,
        callback=_set_scope,
        help="Use the system manager and /etc (default for root).",
    )(func)
    func = click.option(
        "--user",
        "scope",
        flag_value="user",
        default=None,
        expose_value=False,
        callback=_set_scope,
        help="Use the user manager and ~/.config (default for other users).",
    )(func)
    func = click.option(
        "--config",
        "config",
        metavar="PATH",
        default=None,
        expose_value=False,
        callback=_set_config,
        help="Config file (default: $MEMSCHED_CONFIG, then the scope's standard path).",
    )(func)
    return func


def _set_endpoint(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        app(ctx).endpoint = value


# Only stores the address: nothing gRPC is imported unless a command uses it (see memsched.cli.remote).
endpoint_option = click.option(
    "--endpoint",
    metavar="ADDR",
    default=None,
    expose_value=False,
    callback=_set_endpoint,
    help="Send status, pause, resume and run to a memsched gRPC facade (unix:PATH or tcp:HOST:PORT; "
    "token from $MEMSCHED_TOKEN_FILE) instead of the local systemd manager.",
)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (stable, for scripts).")


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=_json_default, ensure_ascii=False))


def echo_table(headers: list[str], rows: list[list[str]]) -> None:
    """Print rows as aligned columns under the headers."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(str(cell))) for w, cell in zip(widths, row)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in rows:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


def handle_errors(func: Callable) -> Callable:
    """Turn core errors into a clean message and the documented exit code (no traceback)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MemschedError as exc:
            click.echo(f"memsched: {exc.message}", err=True)
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("memsched: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(0)
        except Exception as exc:  # a bug: say so briefly; the traceback on request
            if os.environ.get("MEMSCHED_DEBUG"):
                raise
            click.echo(
                f"memsched: internal error: {type(exc).__name__}: {exc}\n"
                "  (set MEMSCHED_DEBUG=1 for the traceback, and please report it)",
                err=True,
            )
            sys.exit(EXIT_INTERNAL)

    return wrapper


def usage_fail(message: str) -> None:
    """Exit with the usage code and ``message`` (for argument combinations click cannot check)."""
    click.echo(f"memsched: {message}", err=True)
    sys.exit(EXIT_USAGE)


def format_time(ms: int | None, utc: bool) -> str:
    """Return ms since the epoch as a table cell: local time (UTC with ``utc``), "-" for none."""
    if not ms:
        return "-"
    when = datetime.fromtimestamp(ms / 1000, timezone.utc)
    if not utc:
        when = when.astimezone()
    return when.strftime("%Y-%m-%d %H:%M:%S %Z")


def format_duration(ms: int | None) -> str:
    """Return a duration in ms as a short table cell (250ms, 4.2s, 3m05s), "-" for none."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    return f"{ms // 60_000}m{(ms % 60_000) // 1000:02d}s"
