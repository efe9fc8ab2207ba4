"""Deterministic sample events: realistic agent sessions for demos, tests and benchmarks.

``generate_events(start_ms, days, seed=...)`` yields event dicts in the JSON Lines
shape ``memsched ingest`` reads, in time order: several sessions a day, each a
``session_start``, turns of user message, assistant messages, tool results
(occasionally a subagent), ``assistant_stop``, and a ``session_end``. Texts are
built from per-topic sentence pools, so summaries have real keywords; lengths
follow typical agent traffic (short prompts, longer answers, long tool output).
The same arguments always give the same events (ULIDs included).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator

from memsched.store.periods import DAY_MS

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
TOPICS = {
    "timers": "systemd timer calendar unit schedule oncalendar persistent jitter service trigger",
    "sqlite": "sqlite database wal checkpoint transaction index vacuum pragma journal locking",
    "rollup": "rollup summary period week month checkpoint version node children bullets",
    "ingest": "ingest events jsonl parser validation batch duplicate schema ulid timestamp",
    "deploy": "deploy release package install pipeline container image rollout version tag",
    "testing": "pytest fixture assertion coverage regression flaky mock sandbox hypothesis case",
    "network": "request timeout retry backoff endpoint latency socket proxy header status",
    "memory": "memory cache allocation leak profile heap rss buffer stream generator",
    "config": "config toml schema default option validation key section override path",
    "frontend": "component render layout style button form state router browser event",
}
_VERBS = "fix check update explain refactor measure add remove rename review debug document compare move split".split()
_GLUE = "the a this our each every that the new the old".split()
_TAILS = ("before the release", "in the nightly run", "for the next sprint", "without breaking users", "on the build machine", "after the last change", "under load", "for the user scope")


def ulid(ts_ms: int, rng: random.Random) -> str:
    """Return a ULID for ``ts_ms`` with 80 random bits from ``rng``."""
    value = (ts_ms << 80) | rng.getrandbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def _pools(rng: random.Random) -> dict[str, list[str]]:
    pools = {}
    for topic, words in TOPICS.items():
        vocab = words.split()
        sentences = []
        for _ in range(120):
            picked = rng.sample(vocab, 3)
            sentences.append(f"{rng.choice(_VERBS).capitalize()} {rng.choice(_GLUE)} {picked[0]} {picked[1]} and {picked[2]} {rng.choice(_TAILS)}.")
        pools[topic] = sentences
    return pools


def _text(rng: random.Random, pool: list[str], low: int, high: int) -> str:
    target = rng.randint(low, high)
    parts, size = [], 0
    while size < target:
        sentence = rng.choice(pool)
        parts.append(sentence)
        size += len(sentence) + 1
    return " ".join(parts)[:target].rstrip() + ("" if parts[-1].endswith(".") else ".")


def _tool_output(rng: random.Random, topic: str, low: int, high: int) -> str:
    vocab = TOPICS[topic].split()
    target = rng.randint(low, high)
    lines, size = [], 0
    while size < target:
        line = f"{rng.choice(('INFO', 'DEBUG', 'WARN'))} {rng.choice(vocab)}.{rng.choice(vocab)} id={rng.getrandbits(24):06x} took {rng.randint(1, 999)}ms"
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)


def generate_events(start_ms: int, days: int, *, seed: int = 1, sessions_per_day: tuple[int, int] = (4, 8), turns_per_session: tuple[int, int] = (3, 12), pace: float = 1.0, agent: str | None = "claude") -> Iterator[dict]:
    """Yield sample events for ``days`` days from the UTC day holding ``start_ms``, in time order.

    ``pace`` scales the time between events (0.3: a session goes three times as fast).
    """
    rng = random.Random(seed)
    pools = _pools(rng)
    topics = sorted(TOPICS)
    first_day = start_ms // DAY_MS
    for day in range(first_day, first_day + days):
        sessions = rng.randint(*sessions_per_day)
        starts = sorted(rng.sample(range(0, 22 * 60), sessions))  # minute of the day, leaving room to finish
        clock = day * DAY_MS
        for minute in starts:
            clock = max(clock + 31 * 60_000, day * DAY_MS + minute * 60_000)  # sessions apart by more than 30 min
            if clock >= (day + 1) * DAY_MS - 3_600_000:
                break
            topic = rng.choice(topics)
            pool = pools[topic]
            session = f"s-{ulid(clock, rng).lower()}"

            def event(event_type: str, role: str, text: str, step_ms: int) -> dict:
                nonlocal clock
                clock += int(step_ms * pace)
                return {"event_id": ulid(clock, rng), "session_id": session, "timestamp": clock, "event_type": event_type, "role": role, "text": text, "metadata": {"topic": topic}, "agent": agent}

            yield event("session_start", "system", "", 0)
            for _ in range(rng.randint(*turns_per_session)):
                yield event("user_message", "user", _text(rng, pool, 40, 400), rng.randint(5_000, 240_000))
                for _ in range(rng.randint(0, 3)):
                    yield event("assistant_message", "assistant", _text(rng, pool, 60, 300), rng.randint(1_000, 20_000))
                    yield event("tool_result", "tool", _tool_output(rng, topic, 100, 4000), rng.randint(500, 30_000))
                if rng.random() < 0.05:
                    yield event("subagent_start", "assistant", f"Subagent: {rng.choice(pool)}", rng.randint(500, 5_000))
                    yield event("subagent_stop", "assistant", _text(rng, pool, 60, 300), rng.randint(10_000, 120_000))
                yield event("assistant_message", "assistant", _text(rng, pool, 150, 1500), rng.randint(2_000, 40_000))
                yield event("assistant_stop", "assistant", "", rng.randint(100, 2_000))
            yield event("session_end", "system", "", rng.randint(1_000, 60_000))


def to_jsonl(events: Iterable[dict]) -> Iterator[bytes]:
    """Yield each event as one JSON Lines line (bytes, newline-terminated)."""
    dumps = json.dumps
    for item in events:
        yield (dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
