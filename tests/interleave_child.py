"""A child process for tests/test_store_interleave.py: runs store operations, pausing before each transaction.

Usage: ``python interleave_child.py DB NOW_MS OP...`` with OP one of ``ingest:FILE``,
``build`` and ``rollup:LEVEL``, run in order, each with its own store handle (as
separate commands would). Before every ``BEGIN`` on a connection to DB the child
writes ``pause <statement>`` to stdout and waits for a ``go`` line on stdin; at the
end it writes ``done``. The parent thus decides, transaction by transaction, which
process runs next. Nothing in memsched is changed: the hook is SQLite's statement
trace callback on the connections memsched itself opens.
"""

from __future__ import annotations

import os
import sqlite3
import sys

DB, NOW_MS, OPS = os.path.realpath(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
_connect = sqlite3.connect


def _pause(statement: str) -> None:
    if statement.startswith("BEGIN"):
        sys.stdout.write(f"pause {statement}\n")
        sys.stdout.flush()
        if sys.stdin.readline() != "go\n":
            os._exit(3)  # the parent went away: stop where we are, as a kill would


def _traced_connect(database, *args, **kwargs):  # type: ignore[no-untyped-def]
    conn = _connect(database, *args, **kwargs)
    if os.path.realpath(str(database)) == DB:
        conn.set_trace_callback(_pause)
    return conn


sqlite3.connect = _traced_connect  # type: ignore[assignment]

from memsched.jobs.rollup import run_rollup  # noqa: E402 - after the hook, so memsched's connections get it
from memsched.ops.memory import ingest  # noqa: E402
from memsched.store import open_store  # noqa: E402
from memsched.store.build import build_pending  # noqa: E402
from memsched.summarize.local import SEGMENT_SUMMARIZER  # noqa: E402
from memsched.summarize import LocalSummarizer  # noqa: E402

for op in OPS:
    kind, _, arg = op.partition(":")
    with open_store(DB) as store:
        if kind == "ingest":
            with open(arg, "rb") as stream:
                ingest(store, stream, name=arg)
        elif kind == "build":
            build_pending(store, summarizer=SEGMENT_SUMMARIZER)
        elif kind == "rollup":
            run_rollup(store, arg, now_ms=NOW_MS, min_age_ms=0, summarizer=LocalSummarizer())
        else:
            raise SystemExit(f"unknown operation {op!r}")
sys.stdout.write("done\n")
sys.stdout.flush()
