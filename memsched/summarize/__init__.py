"""Summarizers: the local extractive one (default) and API ones (OpenAI-compatible, Anthropic).

``make_summarizer(config)`` returns the one ``[summarizer]`` asks for.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from memsched.errors import ConfigError
from memsched.summarize.base import Summarizer, SummarizerError, SummarizerStopped, Summary
from memsched.summarize.local import LocalSummarizer

__all__ = ["LocalSummarizer", "Summarizer", "SummarizerError", "SummarizerStopped", "Summary", "make_summarizer"]


def make_summarizer(config: object, env: dict[str, str] | None = None, *, should_stop: Callable[[], bool] | None = None) -> Summarizer:
    """Return the summarizer ``[summarizer]`` of ``config`` names (local when unset).

    An API summarizer polls ``should_stop()`` while it waits on the network and then
    raises :class:`SummarizerStopped`.

    Raises :class:`ConfigError` when an API summarizer has no usable API key
    (:func:`memsched.config.secrets.find_api_key`: none found, or one others may read).
    """
    settings = dict(getattr(config, "settings", {}).get("summarizer", {}) or {})
    kind = settings.get("kind") or "local"
    if kind == "local":
        return LocalSummarizer()
    from memsched.config.secrets import find_api_key
    from memsched.summarize.api import ApiSummarizer

    source = str(getattr(config, "source", "") or "") or None
    found = find_api_key(getattr(config, "settings", {}), os.environ if env is None else env, source)
    if found.problem:
        raise ConfigError([(found.problem_key, found.problem)], source=source)
    key = found.key
    base_url = str(settings.get("base_url") or "")
    if base_url and not base_url.startswith(("http://", "https://")):
        raise ConfigError([("summarizer.base_url", f"{base_url!r}: expected an http:// or https:// URL")], source=str(getattr(config, "source", "") or "") or None)
    return ApiSummarizer(
        kind,
        api_key=key,
        model=settings.get("model") or None,
        base_url=base_url or None,
        timeout_s=int(settings.get("timeout") or 60_000) / 1000,
        retries=int(settings.get("retries") if settings.get("retries") is not None else 3),
        should_stop=should_stop,
    )
