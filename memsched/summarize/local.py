"""The default summarizer: local, extractive, deterministic, no network.

Events: keywords are the most frequent content words (3+ letters, stop words and
log noise dropped) in the first 400 characters of each event, a user's words
counting 3 times, an assistant's twice and a tool's once; bullets are the first sentences
of up to five events, chosen for their role (user > assistant > tool) and how many of
those keywords they hold, listed in time order; the title is the first user
message's first sentence (else the top keywords). Children: keywords are merged by
rank, bullets are the children's bullets that best cover the merged keywords
(tool output ranked last; at most ceil(5 / children) from each child so no child
crowds out the rest; in time order, keeping their grips), the title is the child title that covers the keywords best.

When there is too little text for three bullets, factual bullets (counts, time span,
what the period covers) make up the rest. Ties are broken by position, never by hash
order, so the same input always gives the same summary: rollups stay idempotent.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from collections.abc import Sequence
from itertools import chain
from datetime import datetime, timezone

from memsched.store.models import PLACEHOLDER_TEXT, Bullet, Event
from memsched.summarize.base import MAX_BULLETS, MAX_KEYWORDS, MIN_BULLETS, MIN_KEYWORDS, Summary
from memsched.text import clip

KEYWORD_SCAN_CHARS = 400
BULLET_CHARS = 160
TITLE_CHARS = 80
_WORD = re.compile(r"[a-z][a-z0-9_]{2,}")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s|\n")
_ROLE_WEIGHT = {"user": 3.0, "assistant": 2.0, "tool": 1.0, "system": 0.5}
_ROLE_LABEL = {"user": "User", "assistant": "Assistant", "tool": "Tool", "system": "System"}
_BULLET_TYPES = frozenset({"user_message", "assistant_message", "tool_result", "subagent_start", "subagent_stop"})
_FALLBACK_KEYWORDS = ("conversation", "session", "activity", "notes", "memory", "agent", "work")
STOPWORDS = frozenset(
    """
    about above after again against all also and any are aren because been before being below
    between both but can cannot could did does doing done down during each few for from further
    had has have having her here hers herself him himself his how into its itself just let like
    more most much must myself nor not now off once only other ought our ours ourselves out over
    own same she should some such than that the their theirs them themselves then there these
    they this those through too under until upon very was were what when where which while who
    whom why will with would you your yours yourself yourselves yes okay sure thanks thank please
    get got use used using one two see also may might need needs want wants make made know
    way well new now going let's i'm it's don't can't that's there's here's we're you're i've
    via per etc true false none null return self def import class file line lines
    took info debug warn warning trace error errors
    """.split()
)


def _first_sentence(text: str) -> str:
    head = text.lstrip()[: BULLET_CHARS * 2]
    match = _SENTENCE_END.search(head)
    return head[: match.start()] if match else head


def _top_keywords(counts: dict[str, float], order: dict[str, int]) -> list[str]:
    """Return the highest-counted words, ties broken by first appearance (``order``)."""
    best = heapq.nsmallest(MAX_KEYWORDS, ((-n, order[w], w) for w, n in counts.items() if n > 0))
    return [w for _, _, w in best]


def _pad_keywords(keywords: list[str], extra: Sequence[str]) -> tuple[str, ...]:
    for word in (*extra, *_FALLBACK_KEYWORDS):
        if len(keywords) >= MIN_KEYWORDS:
            break
        if word not in keywords:
            keywords.append(word)
    return tuple(keywords)


def _hhmm(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, timezone.utc).strftime("%H:%M")


class LocalSummarizer:
    """Extractive summaries from the text at hand; see the module docstring."""

    name = "local"

    def summarize_events(self, events: Sequence[Event]) -> Summary:
        """Return the extractive summary of ``events`` (non-empty, in time order); bullets carry ``source_events``."""
        # Counting is done per role with Counter (C speed); stop words are dropped from the totals.
        event_words: list[list[str]] = []
        by_weight: dict[float, list[str]] = {}
        for event in events:
            words = _WORD.findall(event.text[:KEYWORD_SCAN_CHARS].lower())
            event_words.append(words)
            role_weight = _ROLE_WEIGHT.get(event.role, 0.0)
            if role_weight:
                by_weight.setdefault(role_weight, []).extend(words)
        counts: Counter[str] = Counter()
        for role_weight, words in by_weight.items():
            for word, n in Counter(words).items():
                counts[word] += role_weight * n
        for word in STOPWORDS & counts.keys():
            del counts[word]
        order = {w: i for i, w in enumerate(dict.fromkeys(chain.from_iterable(event_words)))}
        keywords = _top_keywords(counts, order)
        keyword_weight = {w: 1.0 + i for i, w in enumerate(reversed(keywords))}

        candidates = []
        for index, event in enumerate(events):
            if event.event_type not in _BULLET_TYPES or not event.text.strip():
                continue
            present = set(event_words[index])
            coverage = sum(weight for word, weight in keyword_weight.items() if word in present)
            candidates.append((-(_ROLE_WEIGHT.get(event.role, 0.0) * 10 + coverage), index))
        candidates.sort()
        chosen: dict[int, Bullet] = {}
        seen: set[str] = set()
        for _, index in candidates:  # bullet texts are made only for the best candidates
            if len(chosen) == MAX_BULLETS:
                break
            event = events[index]
            sentence = _first_sentence(event.text)
            text = f"{_ROLE_LABEL.get(event.role, event.role)}: {clip(sentence, BULLET_CHARS)}"
            if not sentence.strip() or text in seen:
                continue
            seen.add(text)
            chosen[index] = Bullet(text, source_events=(event.event_id, event.event_id))
        bullets = [chosen[i] for i in sorted(chosen)]

        first, last = events[0], events[-1]
        span = (first.event_id, last.event_id)
        if len(bullets) < MIN_BULLETS:
            kinds = Counter(e.event_type.replace("_", " ") for e in events)
            listing = ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in sorted(kinds.items()))
            bullets.append(Bullet(f"{len(events)} event{'s' if len(events) > 1 else ''}: {listing}", source_events=span))
        if len(bullets) < MIN_BULLETS:
            sessions = len({e.session_id for e in events})
            bullets.append(
                Bullet(
                    f"From {_hhmm(first.timestamp)} to {_hhmm(last.timestamp)} UTC in {sessions} session{'s' if sessions > 1 else ''}",
                    source_events=span,
                )
            )
        if len(bullets) < MIN_BULLETS:
            agents = sorted({e.agent for e in events if e.agent})
            who = f"agent {', '.join(agents)}" if agents else "no named agent"
            bullets.append(Bullet(f"Roles: {', '.join(sorted({e.role for e in events}))}; {who}", source_events=span))

        title = next(
            (clip(_first_sentence(e.text), TITLE_CHARS) for e in events if e.event_type == "user_message" and e.text.strip()),
            "",
        )
        if not title:
            title = "Topics: " + ", ".join(keywords[:3]) if keywords else f"{len(events)} events"
        roles = [e.role for e in events]
        return Summary(title, tuple(bullets), _pad_keywords(keywords, roles))

    def summarize_children(self, summaries: Sequence[Summary]) -> Summary:
        """Return the extractive summary of children's summaries (in time order); bullets keep their grips."""
        weights: Counter[str] = Counter()
        order: dict[str, int] = {}
        for summary in summaries:
            for rank, keyword in enumerate(summary.keywords):
                weights[keyword] += MAX_KEYWORDS - rank
                order.setdefault(keyword, len(order))
        keywords = _top_keywords(weights, order)
        rank_weight = {w: len(keywords) - i for i, w in enumerate(keywords)}

        def coverage(text: str) -> float:
            return sum(rank_weight.get(w, 0) for w in set(_WORD.findall(text.lower())))

        live = [(i, s) for i, s in enumerate(summaries) if any(b.text != PLACEHOLDER_TEXT for b in s.bullets)]
        candidates = []
        for child_index, summary in live:
            for bullet_index, bullet in enumerate(summary.bullets):
                if bullet.text == PLACEHOLDER_TEXT:
                    continue
                score = coverage(bullet.text) + (0.5 if bullet_index == 0 else 0.0) - (3.0 if bullet.text.startswith("Tool:") else 0.0)
                candidates.append((-score, child_index, bullet_index, bullet))
        candidates.sort(key=lambda c: (c[0], c[1], c[2]))
        per_child_cap = max(1, math.ceil(MAX_BULLETS / max(1, len(live))))
        chosen: dict[tuple[int, int], Bullet] = {}
        taken: Counter[int] = Counter()
        seen: set[str] = set()
        for cap in (per_child_cap, MAX_BULLETS):  # relax the cap when too few children have bullets
            for _, child_index, bullet_index, bullet in candidates:
                if len(chosen) == MAX_BULLETS:
                    break
                key = (child_index, bullet_index)
                if key in chosen or bullet.text in seen or taken[child_index] >= cap:
                    continue
                seen.add(bullet.text)
                taken[child_index] += 1
                chosen[key] = Bullet(bullet.text, bullet.grip_ids)
            if len(chosen) >= MIN_BULLETS:
                break
        bullets = [chosen[k] for k in sorted(chosen)]
        labels = [s.label or s.title for s in summaries]
        if len(bullets) < MIN_BULLETS:
            bullets.append(Bullet(f"Covers {len(summaries)} part{'s' if len(summaries) != 1 else ''}: {clip(', '.join(labels), 200)}"))
        if len(bullets) < MIN_BULLETS:
            summarised = len(live)
            bullets.append(Bullet(f"{summarised} of {len(summaries)} summarised so far"))
        if len(bullets) < MIN_BULLETS:
            bullets.append(Bullet(f"Main topics: {', '.join(keywords[:3]) or 'none recorded'}"))

        titled = [(coverage(s.title), -i, s.title) for i, s in enumerate(summaries) if s.title.strip() and s.title != PLACEHOLDER_TEXT]
        title = max(titled)[2] if titled else ("Topics: " + ", ".join(keywords[:3]) if keywords else "No summary yet")
        return Summary(clip(title, TITLE_CHARS), tuple(bullets), _pad_keywords(keywords, ()))


# The summarizer every builder passes to memsched.store.build (see docs/store.md,
# "Building"): segments must not depend on the configured summarizer or a network.
# Stateless, so one instance serves every build.
SEGMENT_SUMMARIZER = LocalSummarizer()
