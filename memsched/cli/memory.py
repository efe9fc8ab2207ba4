"""Commands about the memory store: ingest, toc, toc show."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from typing import BinaryIO

import click

from memsched.cli.common import app, common_options, echo_json, echo_table, handle_errors, json_option
from memsched.errors import UsageError
from memsched.ops import memory
from memsched.store import SqliteStore, open_configured_store, open_store
from memsched.store.periods import utc_datetime

_STORE_KEY = "memsched.store_path"


def _set_store(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[_STORE_KEY] = value


store_option = click.option(
    "--store",
    metavar="PATH",
    default=None,
    expose_value=False,
    callback=_set_store,
    help="Memory store file (default: [store] path in the config, else the scope's data directory).",
)


def _open_store() -> SqliteStore:
    explicit = click.get_current_context().meta.get(_STORE_KEY)
    if explicit:
        return open_store(explicit)
    return open_configured_store(app().config(), app().scope)


def _open_input(file: str) -> tuple[BinaryIO, str]:
    if file == "-":
        return sys.stdin.buffer, "<stdin>"
    try:
        return open(file, "rb"), file  # noqa: SIM115 - closed by the caller's with
    except FileNotFoundError:
        raise UsageError(f"FILE {file!r}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"FILE {file!r}: is a directory, expected a JSON Lines file") from None
    except PermissionError:
        raise UsageError(f"FILE {file!r}: cannot read it (permission denied)") from None


def _utc(ms: int) -> str:
    return utc_datetime(ms).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


@click.command("ingest")
@click.argument("file", metavar="FILE|-")
@click.option("--skip-invalid", is_flag=True, help="Ingest the valid lines and list the invalid ones (default: reject the whole file).")
@store_option
@json_option
@common_options
@handle_errors
def ingest_cmd(file: str, skip_invalid: bool, as_json: bool) -> None:
    """Ingest JSON Lines events from FILE (- for stdin), then build the TOC.

    One event per line: event_id (ULID), session_id, timestamp (ms), event_type,
    role, text, and optionally metadata (string map) and agent. Events already
    stored are ignored. A file with an invalid line is rejected whole (exit 2, every
    bad line listed by number) unless --skip-invalid is given.
    """
    stream, name = _open_input(file)
    with stream if file != "-" else nullcontext(stream), _open_store() as store:
        try:
            report = memory.ingest(store, stream, name=name, skip_invalid=skip_invalid)
        except memory.IngestRejected as exc:
            if as_json:
                echo_json(exc.report.as_dict())
            raise
    if as_json:
        echo_json(report.as_dict())
        return
    build = report.build
    click.echo(
        f"{name}: {report.inserted} event{'s' if report.inserted != 1 else ''} ingested, {report.duplicates} already stored"
        + (f", {report.invalid} invalid line{'s' if report.invalid != 1 else ''} skipped" if report.invalid else "")
        + (f"; built {build.days_built} day{'s' if build.days_built != 1 else ''}, {build.segments_written} segment{'s' if build.segments_written != 1 else ''} written" if build else "")
    )
    for error in report.errors:
        click.echo(f"memsched: warning: {name}: line {error.line}: {error.reason}", err=True)
    if report.invalid > len(report.errors):
        click.echo(f"memsched: warning: ... and {report.invalid - len(report.errors)} more invalid lines", err=True)


@click.group("toc", invoke_without_command=True)
@click.option("--level", "level", metavar="LEVEL", default=None, help="Only this level, as a flat list: year, month, week, day or segment.")
@store_option
@json_option
@common_options
@click.pass_context
@handle_errors
def toc_group(ctx: click.Context, level: str | None, as_json: bool) -> None:
    """Show the table of contents: the year > month > week > day tree, or one --level.

    STATUS is pending (placeholder, not rolled up yet), stale (a child changed since
    the last rollup) or current. `memsched toc show NODE_ID` shows one node.
    """
    if ctx.invoked_subcommand is not None:
        return
    memory.check_level(level)
    with _open_store() as store:
        rows = memory.toc_listing(store, level)
    if as_json:
        echo_json([dict(node.as_dict(), depth=depth) for depth, node in rows])
        return
    if not rows:
        click.echo("(the TOC is empty: ingest events with `memsched ingest FILE`)")
        return
    echo_table(
        ["NODE", "TITLE", "STATUS", "VERSION", "CHILDREN", "TOPIC"],
        [
            ["  " * depth + node.node_id, node.title, node.status, str(node.version), str(len(node.child_node_ids)), node.summary_title[:60]]
            for depth, node in rows
        ],
    )


@toc_group.command("show")
@click.argument("node_id")
@click.option("--version", "version", type=int, default=None, metavar="N", help="Show version N instead of the latest.")
@store_option
@json_option
@common_options
@handle_errors
def toc_show_cmd(node_id: str, version: int | None, as_json: bool) -> None:
    """Show one TOC node: bounds, status, bullets with their grips, keywords, children."""
    if version is not None and version < 1:
        raise UsageError(f"--version {version}: versions start at 1")
    with _open_store() as store:
        detail = memory.show_node(store, node_id, version)
    if as_json:
        echo_json(detail.as_dict())
        return
    node = detail.node
    click.echo(f"{node.node_id}  {node.title}")
    click.echo(f"  level {node.level}, status {node.status}, version {node.version} of {detail.versions[-1]}, written {_utc(node.created_at)}")
    click.echo(f"  period {_utc(node.start_time)} .. {_utc(node.end_time)}")
    if node.parent_id:
        click.echo(f"  parent {node.parent_id}")
    if node.summary_title:
        click.echo(f"  topic: {node.summary_title}")
    click.echo("  bullets:")
    for bullet in node.bullets:
        grips = f"  [{', '.join(bullet.grip_ids)}]" if bullet.grip_ids else ""
        click.echo(f"    - {bullet.text}{grips}")
    if node.keywords:
        click.echo(f"  keywords: {', '.join(node.keywords)}")
    if detail.segment is not None:
        s = detail.segment
        click.echo(f"  events: {s.event_count} ({s.start_event_id} .. {s.end_event_id}), about {s.tokens} tokens, {len(s.overlap_event_ids)} overlap event(s) from the previous segment")
    if node.child_node_ids:
        click.echo(f"  children ({len(node.child_node_ids)}):")
        for child in node.child_node_ids:
            click.echo(f"    {child}")
    if detail.grips:
        click.echo("  grips:")
        for grip in detail.grips:
            click.echo(f"    {grip.grip_id}  {_utc(grip.timestamp)}  {grip.source}: {grip.excerpt}")
