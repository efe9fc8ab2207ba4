"""The rollup job: summarise the children of every closed period of a TOC level into it.

A run first builds (segments the events ingested since the last build), then
rolls up, children before parents: a run for level L also brings every level
below L up to date (stale closed days before weeks, weeks before months...), so
L's summaries are never made of placeholders and the order in which the jobs run
does not matter. A node is rolled when its period has closed (end <= now -
min_age) and it is stale: never summarised, or a child changed since. Stale
markers come from building (a new or late segment makes its day stale) and from
rollups (a day whose summary changed makes its week stale, and so on up).

Each node's new version (written only when its content differs from the latest),
its stale marker and its level checkpoint are committed in one short transaction
(:meth:`memsched.store.base.Store.commit_rollup`), so a run killed at any instant
leaves a consistent store and the next run does exactly the nodes still stale.
``should_stop()`` is polled between nodes; a true answer ends the run with
``interrupted`` set and everything committed so far kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from memsched.errors import UsageError
from memsched.store.base import Store
from memsched.store.build import BuildResult, build_pending
from memsched.store.models import NodeContent, StaleNode
from memsched.store.periods import ROLLUP_ORDER, period_of_node_id
from memsched.summarize.base import Summarizer, SummarizerStopped, Summary
from memsched.summarize.local import SEGMENT_SUMMARIZER

Progress = Callable[[int, int, str], None]


@dataclass
class RollupResult:
    """What a rollup run did.

    ``nodes_rolled``: nodes whose rollup was committed; ``nodes_unchanged``: of
    those, how many kept their content (no version written); ``nodes_skipped``:
    nodes another process rolled first, or with no children.
    """

    level: str
    summarizer: str
    nodes_rolled: int = 0
    nodes_unchanged: int = 0
    versions_written: int = 0
    nodes_skipped: int = 0
    interrupted: bool = False
    rolled_by_level: dict[str, int] = field(default_factory=dict)
    build: BuildResult = field(default_factory=BuildResult)

    def as_metadata(self) -> dict[str, str]:
        """Return the counts as the string map the run registry stores."""
        data = {
            "level": self.level,
            "summarizer": self.summarizer,
            "nodes_rolled": str(self.nodes_rolled),
            "nodes_unchanged": str(self.nodes_unchanged),
            "versions_written": str(self.versions_written),
            "nodes_skipped": str(self.nodes_skipped),
            "interrupted": "true" if self.interrupted else "false",
            "days_built": str(self.build.days_built),
            "segments_written": str(self.build.segments_written),
        }
        data.update({f"rolled_{lvl}": str(n) for lvl, n in self.rolled_by_level.items()})
        return data


def _child_summaries(store: Store, node_id: str, depth: int = 0) -> list[Summary]:
    """Return the summaries a node is made from: each child's, or for a child still pending, its own children's."""
    summaries: list[Summary] = []
    for child_id, _level, summarized, content in store.children_content(node_id):
        if summarized:
            summaries.append(Summary(content.summary_title or content.title, content.bullets, content.keywords, label=content.title))
        elif depth < len(ROLLUP_ORDER):
            summaries.extend(_child_summaries(store, child_id, depth + 1))
    return summaries


def roll_node(store: Store, node: StaleNode, summarizer: Summarizer) -> NodeContent | None:
    """Return the new content of a period node from its children (None when it has nothing to summarise)."""
    summaries = _child_summaries(store, node.node_id)
    if not summaries:
        return None
    summary = summarizer.summarize_children(summaries)
    return NodeContent(period_of_node_id(node.node_id).title, summary.title, summary.bullets, summary.keywords)


def run_rollup(
    store: Store,
    level: str,
    *,
    now_ms: int,
    min_age_ms: int,
    summarizer: Summarizer,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RollupResult:
    """Build, then roll up every stale closed period of ``level`` and the levels below it.

    Returns a :class:`RollupResult` (``interrupted`` when ``should_stop()`` turned
    true). Raises :class:`UsageError` for an unknown level, and store or
    :class:`memsched.summarize.base.SummarizerError` errors; what was committed
    before an error stays committed and is not redone.
    """
    if level not in ROLLUP_ORDER:
        raise UsageError(f"level {level!r}: expected one of {', '.join(ROLLUP_ORDER)}")
    stop = should_stop or (lambda: False)
    result = RollupResult(level=level, summarizer=getattr(summarizer, "name", type(summarizer).__name__))
    result.build = build_pending(store, summarizer=SEGMENT_SUMMARIZER, should_stop=stop, progress=progress)
    if result.build.interrupted:
        result.interrupted = True
        return result
    closed_before = now_ms - min_age_ms
    done = 0
    for lvl in ROLLUP_ORDER[: ROLLUP_ORDER.index(level) + 1]:
        stale = store.stale_nodes(lvl, closed_before)
        total = done + len(stale)
        rolled = 0
        for node in stale:
            if stop():
                result.interrupted = True
                return result
            try:
                content = roll_node(store, node, summarizer)
            except SummarizerStopped:  # a stop request reached the summarizer mid-request: nothing written
                result.interrupted = True
                return result
            outcome = None if content is None else store.commit_rollup(node, content)
            if outcome is None:
                result.nodes_skipped += 1
            else:
                rolled += 1
                result.nodes_rolled += 1
                result.versions_written += int(outcome)
                result.nodes_unchanged += int(not outcome)
            done += 1
            if progress is not None:
                progress(done, total, node.node_id)
        result.rolled_by_level[lvl] = rolled
    return result
