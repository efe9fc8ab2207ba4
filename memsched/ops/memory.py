"""Memory operations: ingest JSON Lines events, read the TOC. Returns data, never prints.

Ingest policy (docs/store.md): a file is one batch in one transaction, taken only
once the whole input has been read and validated (a slow input holds no lock). By default a
batch with any invalid line is rejected whole: nothing is committed and every bad
line is reported (the first :data:`MAX_ERRORS_LISTED`, plus a count). With
``skip_invalid`` the valid lines are committed and the bad ones reported. Blank
lines are skipped; unknown fields are ignored (forward compatibility); an event id
already stored (or repeated in the batch) is ignored, so re-ingesting is harmless.
"""

from __future__ import annotations

import json
import marshal
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from memsched.errors import MemschedError, UsageError
from memsched.store.base import Store
from memsched.store.build import BuildResult, build_pending
from memsched.store.models import EVENT_TYPES, ROLES, Grip, SegmentInfo, TocNode
from memsched.store.periods import LEVELS, MAX_TIMESTAMP_MS, PERIOD_LEVELS, check_node_id
from memsched.store.tokens import event_tokens
from memsched.summarize.local import SEGMENT_SUMMARIZER

MAX_LINE_BYTES = 1 << 20  # a line longer than 1 MiB (newline excluded) is refused, not read into memory
MAX_ERRORS_LISTED = 100
BATCH_ROWS = 2000
SPOOL_MEMORY_BYTES = 32 << 20  # valid rows are held in memory up to this, then in a temporary file
REQUIRED_FIELDS = ("event_id", "session_id", "timestamp", "event_type", "role", "text")
_ULID = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
_EVENT_TYPES = frozenset(EVENT_TYPES)
_ROLES = frozenset(ROLES)
_raw_decode_json = json.JSONDecoder().raw_decode


class _HugeInt:
    """A JSON integer too long for ``int()`` (past ``sys.get_int_max_str_digits()``, 4300 by default); stands in for it so its field is named."""

    __slots__ = ("digits",)

    def __init__(self, text: str):
        self.digits = len(text.lstrip("-"))


def _parse_int_bounded(text: str) -> int | _HugeInt:
    limit = sys.get_int_max_str_digits()  # PYTHONINTMAXSTRDIGITS may change it; 0 means none
    return _HugeInt(text) if limit and len(text.lstrip("-")) > limit else int(text)


# Used only after the fast decoder refused a line for an over-long integer: a Python
# callback per integer would slow every ingest, and such lines are never valid.
_raw_decode_json_bounded = json.JSONDecoder(parse_int=_parse_int_bounded).raw_decode
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_JSON_TYPE = {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number", bool: "a boolean", type(None): "null"}


@dataclass(frozen=True)
class LineError:
    """One rejected input line: its 1-based number and why."""

    line: int
    reason: str


@dataclass
class IngestReport:
    """What an ingest read, stored and refused.

    ``committed`` is False when the batch was rejected (nothing stored);
    ``duplicates`` counts valid events already stored or repeated in the batch.
    """

    source: str
    skip_invalid: bool
    lines: int = 0
    valid: int = 0
    inserted: int = 0
    invalid: int = 0
    errors: list[LineError] = field(default_factory=list)
    committed: bool = False
    build: BuildResult | None = None

    @property
    def duplicates(self) -> int:
        return self.valid - self.inserted if self.committed else 0

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "committed": self.committed,
            "skip_invalid": self.skip_invalid,
            "lines": self.lines,
            "valid": self.valid,
            "inserted": self.inserted,
            "duplicates": self.duplicates,
            "invalid": self.invalid,
            "errors": [{"line": e.line, "reason": e.reason} for e in self.errors],
            "errors_not_listed": self.invalid - len(self.errors),
            "build": None if self.build is None else self.build.__dict__.copy(),
        }

    def as_metadata(self) -> dict[str, str]:
        return {"lines": str(self.lines), "inserted": str(self.inserted), "duplicates": str(self.duplicates), "invalid": str(self.invalid)}


class IngestRejected(UsageError):
    """The batch had invalid lines and was not committed; ``report`` lists them."""

    def __init__(self, report: IngestReport):
        self.report = report
        shown = "\n".join(f"  line {e.line}: {e.reason}" for e in report.errors)
        more = report.invalid - len(report.errors)
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(
            f"{report.source}: {report.invalid} invalid line{'s' if report.invalid != 1 else ''}; nothing was ingested "
            f"(fix them, or use --skip-invalid to ingest the {report.valid} valid line{'s' if report.valid != 1 else ''}):\n{shown}{tail}"
        )


def _describe(value: object) -> str:
    if isinstance(value, _HugeInt):
        return f"an integer of {value.digits} digits"
    name = _JSON_TYPE.get(type(value), type(value).__name__)
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        shown = repr(value)
        return f"{name} {shown[:40] + '...' if len(shown) > 40 else shown}"
    return name


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_event_line(raw: bytes) -> tuple | str:
    """Return the store row of one JSON Lines event, or the reason it is invalid.

    The row is (event_id, session_id, timestamp, event_type, role, text,
    metadata_json, agent, tokens); the event id is upper-cased (ULIDs are
    case-insensitive).
    """
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start + 1}"
    stripped = line.strip()
    try:
        try:
            obj, end = _raw_decode_json(stripped)
        except json.JSONDecodeError:
            raise
        except ValueError:  # an integer past int()'s digit limit: decode again, keeping it as a _HugeInt
            obj, end = _raw_decode_json_bounded(stripped)
        if end != len(stripped):
            raise json.JSONDecodeError("Extra data", stripped, end)
    except json.JSONDecodeError as exc:
        return f"malformed JSON: {exc.msg} (column {exc.colno})"
    except RecursionError:
        return "malformed JSON: nested too deeply"
    if type(obj) is not dict:
        return f"expected a JSON object, got {_describe(obj)}"
    missing = [name for name in REQUIRED_FIELDS if name not in obj]
    if missing:
        return f"missing field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}"
    event_id = obj["event_id"]
    if type(event_id) is not str or not _ULID.match(event_id.upper()):
        return f"event_id: expected a ULID (26 Crockford base-32 characters), got {_describe(event_id)}"
    session_id = obj["session_id"]
    if type(session_id) is not str or not session_id:
        return f"session_id: expected a non-empty string, got {_describe(session_id)}"
    timestamp = obj["timestamp"]
    if type(timestamp) is not int or not 0 <= timestamp <= MAX_TIMESTAMP_MS:
        return f"timestamp: expected milliseconds since the epoch as an integer (0 to {MAX_TIMESTAMP_MS}), got {_describe(timestamp)}"
    event_type = obj["event_type"]
    if type(event_type) is not str or event_type not in _EVENT_TYPES:
        return f"event_type: expected one of {', '.join(EVENT_TYPES)}, got {_describe(event_type)}"
    role = obj["role"]
    if type(role) is not str or role not in _ROLES:
        return f"role: expected one of {', '.join(ROLES)}, got {_describe(role)}"
    text = obj["text"]
    if type(text) is not str:
        return f"text: expected a string, got {_describe(text)}"
    metadata = obj.get("metadata")
    if metadata is None or metadata == {}:
        metadata_json = "{}"
    elif type(metadata) is not dict or not all(type(v) is str for v in metadata.values()):
        return "metadata: expected an object whose values are strings"
    else:
        metadata_json = _encode_json(metadata)
    agent = obj.get("agent")
    if agent is not None and type(agent) is not str:
        return f"agent: expected a string or null, got {_describe(agent)}"
    if "\\ud" in line or "\\uD" in line:  # JSON escapes can smuggle in lone surrogates, which are not text
        for name, value in (("session_id", session_id), ("text", text), ("metadata", metadata_json), ("agent", agent or "")):
            if _has_surrogates(value):
                return f"{name}: contains an unpaired UTF-16 surrogate escape (not valid Unicode text)"
    return (event_id.upper(), session_id, timestamp, event_type, role, text, metadata_json, agent, event_tokens(event_type, text))


class _TooLong:
    __slots__ = ("size",)

    def __init__(self, size: int):
        self.size = size


def _bounded_lines(stream: BinaryIO, limit: int) -> Iterator[bytes | _TooLong]:
    """Yield the stream's lines, or a :class:`_TooLong` for a line over ``limit`` bytes (drained, never held whole)."""
    readline = stream.readline
    while True:
        line = readline(limit + 2)  # room for "\r\n"
        if not line:
            return
        if len(line) > limit and not (line.endswith(b"\n") and len(line.rstrip(b"\r\n")) <= limit):
            size = len(line.rstrip(b"\r\n"))
            while not line.endswith(b"\n"):
                line = readline(1 << 20)
                if not line:
                    break
                size += len(line.rstrip(b"\r\n"))
            yield _TooLong(size)
        else:
            yield line


class _Spool:
    """The valid rows of an input, held until the whole input has been read and judged.

    Batches of rows are marshalled into a temporary file that stays in memory up to
    :data:`SPOOL_MEMORY_BYTES` and then moves to disk (``$TMPDIR``), so the store's
    write lock is never held while the input is still arriving and memory stays
    bounded whatever the input's size. The file is anonymous: a killed ingest leaves
    nothing behind.
    """

    def __init__(self) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115 - closed by close()
        self.batches = 0

    def add(self, rows: list[tuple]) -> None:
        try:
            marshal.dump(rows, self._file)
        except OSError as exc:
            raise MemschedError(
                f"cannot hold the valid lines until the input is read: {exc.strerror or exc} "
                f"(temporary directory {tempfile.gettempdir()}; set TMPDIR to one with room); nothing was ingested"
            ) from None
        self.batches += 1

    def batches_back(self) -> Iterator[list[tuple]]:
        self._file.seek(0)
        for _ in range(self.batches):
            yield marshal.load(self._file)

    def close(self) -> None:
        self._file.close()


def ingest(
    store: Store,
    source: BinaryIO | Iterable[bytes],
    *,
    name: str = "-",
    skip_invalid: bool = False,
    build: bool = True,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> IngestReport:
    """Ingest JSON Lines events from a binary stream (or an iterable of byte lines), then build the TOC.

    The whole input is read and validated first, with no lock held; then the valid
    events are inserted in one transaction (all or nothing), and the days they
    touched are built. Returns the :class:`IngestReport`. Raises
    :class:`IngestRejected` (exit 2) when a line is invalid and ``skip_invalid`` is
    false (nothing is committed), :class:`MemschedError` when the valid lines cannot
    be held while reading, and store errors. ``name`` names the input in messages.
    """
    report = IngestReport(source=name, skip_invalid=skip_invalid)
    spool = _Spool()
    try:
        _read_and_validate(report, source, spool, max_line_bytes)
        if report.invalid and not skip_invalid:
            raise IngestRejected(report)
        with store.event_writer() as writer:
            for rows in spool.batches_back():
                writer.insert(rows)
        report.inserted = writer.inserted
        report.committed = True
    finally:
        spool.close()
    if build:
        report.build = build_pending(store, summarizer=SEGMENT_SUMMARIZER)
    return report


def _read_and_validate(report: IngestReport, source: BinaryIO | Iterable[bytes], spool: _Spool, max_line_bytes: int) -> None:
    """Read every line of ``source`` into ``report`` (counts, the first errors) and the valid rows into ``spool``."""
    lines: Iterable[bytes | _TooLong] = _bounded_lines(source, max_line_bytes) if hasattr(source, "readline") else source  # type: ignore[arg-type]
    errors = report.errors
    batch: list[tuple] = []
    number = 0
    for number, raw in enumerate(lines, 1):
        if isinstance(raw, _TooLong):
            parsed: tuple | str = f"line too long: {raw.size} bytes (limit {max_line_bytes})"
        else:
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            content_bytes = len(raw.rstrip(b"\r\n")) if len(raw) > max_line_bytes else 0
            if content_bytes > max_line_bytes:
                parsed = f"line too long: {content_bytes} bytes (limit {max_line_bytes})"
            elif not raw.strip():
                continue
            else:
                parsed = parse_event_line(raw)
        if type(parsed) is str:
            report.invalid += 1
            if len(errors) < MAX_ERRORS_LISTED:
                errors.append(LineError(number, parsed))
            continue
        report.valid += 1
        if report.invalid and not report.skip_invalid:
            continue  # rejected anyway: keep validating, stop keeping rows
        batch.append(parsed)  # type: ignore[arg-type]
        if len(batch) >= BATCH_ROWS:
            spool.add(batch)
            batch = []
    if batch and not (report.invalid and not report.skip_invalid):
        spool.add(batch)
    report.lines = number


# ------------------------------------------------------------------- reading


def check_level(level: str | None, option: str = "--level") -> str | None:
    """Return ``level`` when it is a TOC level (or None); raise :class:`UsageError` naming ``option`` otherwise."""
    if level is not None and level not in LEVELS:
        raise UsageError(f"{option} {level!r}: expected one of {', '.join(LEVELS)}")
    return level


def toc_listing(store: Store, level: str | None = None) -> list[tuple[int, TocNode]]:
    """Return (depth, node) rows: one level's nodes flat, or (no level) the year > month > week > day tree.

    Raises :class:`UsageError` for an unknown level.
    """
    check_level(level)
    if level is not None:
        return [(0, node) for node in store.list_nodes(level)]
    by_id = {node.node_id: node for lvl in PERIOD_LEVELS for node in store.list_nodes(lvl)}
    rows: list[tuple[int, TocNode]] = []

    def walk(node: TocNode, depth: int) -> None:
        rows.append((depth, node))
        for child_id in node.child_node_ids:
            child = by_id.get(child_id)
            if child is not None:
                walk(child, depth + 1)

    for node in by_id.values():
        if node.level == "year":
            walk(node, 0)
    return rows


@dataclass
class NodeDetail:
    """A node with what hangs off it: its versions, grips, and (segments) placement."""

    node: TocNode
    versions: list[int]
    grips: list[Grip]
    segment: SegmentInfo | None

    def as_dict(self) -> dict[str, object]:
        data = self.node.as_dict()
        data["versions"] = self.versions
        data["grips"] = [g.as_dict() for g in self.grips]
        if self.segment is not None:
            s = self.segment
            data["segment"] = {
                "first_event_id": s.start_event_id,
                "last_event_id": s.end_event_id,
                "event_count": s.event_count,
                "tokens": s.tokens,
                "overlap_event_ids": list(s.overlap_event_ids),
            }
        return data


def show_node(store: Store, node_id: str, version: int | None = None) -> NodeDetail:
    """Return a node's details. Raises :class:`UsageError` for a malformed or unknown id or version."""
    check_node_id(node_id)
    node = store.get_node(node_id, version)
    if node is None:
        if version is not None and store.get_node(node_id) is not None:
            raise UsageError(f"--version {version}: {node_id} has versions {', '.join(map(str, store.version_numbers(node_id)))}")
        raise UsageError(f"NODE_ID {node_id!r}: no such node in the store (see `memsched toc`)")
    grips = store.grips_of(node_id) if node.level == "segment" else []
    return NodeDetail(node, store.version_numbers(node_id), grips, store.segment_info(node_id))
