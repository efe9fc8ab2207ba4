"""API summarizers: OpenAI-compatible chat completions and Anthropic messages, standard library only.

The model is asked for a JSON object {title, bullets (3-5), keywords (3-7)} and its
answer is checked (:func:`memsched.summarize.base.checked_summary`). Retried, with
exponential backoff (1s, 2s, 4s..., at most 30s, or the server's Retry-After):
connection failures, timeouts, HTTP 408/429/5xx, and answers that are not the JSON
asked for. Not retried: other HTTP 4xx (a bad key or model will not fix itself).
After the last attempt a :class:`SummarizerError` says what went wrong.

Endpoints: ``kind = "openai"`` posts to ``<base_url>/chat/completions`` (base_url
includes the version, default ``https://api.openai.com/v1``; any OpenAI-compatible
server works); ``kind = "anthropic"`` posts to ``<base_url>/v1/messages`` (default
``https://api.anthropic.com``). ``timeout`` applies to connecting and to each read.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from memsched.store.models import Event
from memsched.summarize.base import Summary, SummarizerError, checked_summary

DEFAULTS = {
    "openai": ("https://api.openai.com/v1", "gpt-4o-mini", "OPENAI_API_KEY"),
    "anthropic": ("https://api.anthropic.com", "claude-3-5-haiku-latest", "ANTHROPIC_API_KEY"),
}
ANTHROPIC_VERSION = "2023-06-01"
MAX_OUTPUT_TOKENS = 1024
EVENT_CHARS = 600
PROMPT_CHARS = 24_000
MAX_BACKOFF_S = 30.0
SYSTEM_PROMPT = (
    "You summarise part of an AI agent's conversation memory for a table of contents. "
    "Reply with only a JSON object, no prose and no code fence: "
    '{"title": "<at most 80 characters>", "bullets": ["<3 to 5 short factual bullets>"], '
    '"keywords": ["<3 to 7 lowercase keywords>"]}'
)
_RETRY_STATUS = {408, 429, 500, 502, 503, 504, 529}


def default_key_env(kind: str) -> str:
    """Return the environment variable an API kind reads its key from by default."""
    return DEFAULTS[kind][2]


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _extract_json(text: str) -> object:
    """Return the JSON object in a model's answer (tolerating a code fence or prose around it)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("the answer holds no JSON object")
    return json.loads(text[start : end + 1])


class ApiSummarizer:
    """Summaries from a chat model over HTTP. Construction does no I/O."""

    def __init__(
        self,
        kind: str,
        *,
        api_key: str,
        model: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        retries: int = 3,
        backoff_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if kind not in DEFAULTS:
            raise SummarizerError(f"summarizer kind {kind!r}: expected one of local, {', '.join(DEFAULTS)}")
        if not api_key:
            raise SummarizerError(f"the {kind} summarizer needs an API key (summarizer.api_key, or ${DEFAULTS[kind][2]})")
        default_url, default_model, _ = DEFAULTS[kind]
        self.kind = kind
        self.model = model or default_model
        self.base_url = (base_url or default_url).rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._api_key = api_key
        self._sleep = sleep
        self.name = f"{kind}:{self.model}"

    # ------------------------------------------------------------ interface

    def summarize_events(self, events: Sequence[Event]) -> Summary:
        """Return the model's summary of ``events``. Raises :class:`SummarizerError`."""
        lines = []
        for event in events:
            when = datetime.fromtimestamp(event.timestamp / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")
            text = " ".join(event.text.split())[:EVENT_CHARS]
            lines.append(f"[{when}] {event.role} ({event.event_type}): {text}")
        return self._summarize("Summarise this conversation segment:\n" + "\n".join(lines))

    def summarize_children(self, summaries: Sequence[Summary]) -> Summary:
        """Return the model's summary of a period from its parts' summaries. Raises :class:`SummarizerError`."""
        parts = []
        for summary in summaries:
            bullets = "\n".join(f"- {b.text}" for b in summary.bullets)
            parts.append(f"## {summary.label or summary.title}\nTopic: {summary.title}\n{bullets}\nKeywords: {', '.join(summary.keywords)}")
        return self._summarize("Summarise this period from the summaries of its parts:\n\n" + "\n\n".join(parts))

    # -------------------------------------------------------------- plumbing

    def _request(self, prompt: str) -> urllib.request.Request:
        if self.kind == "openai":
            url = f"{self.base_url}/chat/completions"
            body = {
                "model": self.model,
                "temperature": 0,
                "response_format": {"type": "json_object"},
                "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}],
            }
            headers = {"Authorization": f"Bearer {self._api_key}"}
        else:
            url = f"{self.base_url}/v1/messages"
            body = {
                "model": self.model,
                "max_tokens": MAX_OUTPUT_TOKENS,
                "temperature": 0,
                "system": SYSTEM_PROMPT,
                "messages": [{"role": "user", "content": prompt}],
            }
            headers = {"x-api-key": self._api_key, "anthropic-version": ANTHROPIC_VERSION}
        headers["Content-Type"] = "application/json"
        return urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST")

    def _answer_text(self, envelope: object) -> str:
        """Return the model's text from a response envelope; raise ValueError when it has none."""
        try:
            if self.kind == "openai":
                content = envelope["choices"][0]["message"]["content"]  # type: ignore[index]
            else:
                content = "".join(part["text"] for part in envelope["content"] if part.get("type") == "text")  # type: ignore[index,union-attr]
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ValueError("the response has no answer text where the API puts it") from None
        if not isinstance(content, str):
            raise ValueError("the answer text is not a string")
        return content

    def _attempt(self, prompt: str) -> Summary:
        request = self._request(prompt)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode("utf-8", "replace").strip() if exc.fp else ""
            message = f"HTTP {exc.code} from {request.full_url}" + (f": {detail[:300]}" if detail else "")
            if exc.code in _RETRY_STATUS:
                after = exc.headers.get("Retry-After") if exc.headers else None
                raise _Retryable(message, float(after) if after and after.isdigit() else None) from None
            raise SummarizerError(f"{self.name}: {message}") from None
        except (urllib.error.URLError, TimeoutError, socket.timeout, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Retryable(f"cannot reach {request.full_url}: {reason or 'timed out'}") from None
        try:
            text = self._answer_text(json.loads(raw))
            data = _extract_json(text)
            if not isinstance(data, dict):
                raise ValueError("the answer's JSON is not an object")
            return checked_summary(data.get("title"), data.get("bullets"), data.get("keywords"))
        except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
            raise _Retryable(f"unusable answer from {request.full_url}: {exc}") from None

    def _summarize(self, prompt: str) -> Summary:
        prompt = prompt[:PROMPT_CHARS]
        last = ""
        for attempt in range(self.retries + 1):
            try:
                return self._attempt(prompt)
            except _Retryable as exc:
                last = str(exc)
                if attempt == self.retries:
                    break
                delay = min(self.backoff_s * 2**attempt, MAX_BACKOFF_S)
                if exc.retry_after is not None:
                    delay = min(max(delay, exc.retry_after), MAX_BACKOFF_S)
                self._sleep(delay)
        raise SummarizerError(f"{self.name}: gave up after {self.retries + 1} attempt{'s' if self.retries else ''}: {last}")
