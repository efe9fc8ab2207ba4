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
``https://api.anthropic.com``).

Bounds (:mod:`memsched.summarize.http`): ``timeout`` is a deadline for the whole
request (connecting, sending, the answer's last byte), so a trickling answer stops
at it and is reported as timed out; an answer larger than :data:`MAX_ANSWER_BYTES`
is refused after reading at most that much; an answer cut off mid-way is retried
like a connection error. A stop request (``should_stop()``, SIGTERM in a run) is
seen within 0.1 s, during a request or a backoff, and raises
:class:`SummarizerStopped`. What an API or proxy says in an error body is cut to
:data:`MAX_DETAIL_CHARS` characters, stripped of control characters and of the key
(and of anything shaped like a credential) before it reaches a message, a log or
the run registry.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from memsched.store.models import Event
from memsched.summarize import http
from memsched.summarize.base import Summary, SummarizerError, SummarizerStopped, checked_summary

DEFAULTS = {
    "openai": ("https://api.openai.com/v1", "gpt-4o-mini", "OPENAI_API_KEY"),
    "anthropic": ("https://api.anthropic.com", "claude-3-5-haiku-latest", "ANTHROPIC_API_KEY"),
}
ANTHROPIC_VERSION = "2023-06-01"
MAX_OUTPUT_TOKENS = 1024
EVENT_CHARS = 600
PROMPT_CHARS = 24_000
MAX_BACKOFF_S = 30.0
MAX_ANSWER_BYTES = 1 << 20  # a summary answer is a few KiB; more is refused, never read whole
MAX_ERROR_BODY_BYTES = 4096  # read of an error body
MAX_DETAIL_CHARS = 200  # shown of an error body, after redaction
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
        should_stop: Callable[[], bool] | None = None,
    ):
        if kind not in DEFAULTS:
            raise SummarizerError(f"summarizer kind {kind!r}: expected one of local, {', '.join(DEFAULTS)}")
        if not api_key:
            raise SummarizerError(f"the {kind} summarizer needs an API key (summarizer.api_key, or ${DEFAULTS[kind][2]})")
        if not all(" " <= ch <= "~" for ch in api_key):
            raise SummarizerError(f"the {kind} summarizer's API key has a character an HTTP header cannot carry (a line break, a control or non-ASCII character)")
        default_url, default_model, _ = DEFAULTS[kind]
        self.kind = kind
        self.model = model or default_model
        self.base_url = (base_url or default_url).rstrip("/")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._api_key = api_key
        self._sleep = sleep
        self._should_stop = should_stop or (lambda: False)
        self.waits: list[float] = []  # the backoff delays waited, in order
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

    def _request(self, prompt: str) -> tuple[str, bytes, dict[str, str]]:
        """Return the URL, JSON body and headers of one request."""
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
        headers["User-Agent"] = "memsched"
        return url, json.dumps(body).encode("utf-8"), headers

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
        url, body, headers = self._request(prompt)
        shown = _shown_url(url)
        try:
            answer = http.post_json(url, body, headers, timeout_s=self.timeout_s, max_bytes=MAX_ANSWER_BYTES, error_bytes=MAX_ERROR_BODY_BYTES, should_stop=self._should_stop)
        except http.Stopped:
            raise SummarizerStopped(f"{self.name}: stopped while waiting for {shown}") from None
        except http.TimedOut:
            raise _Retryable(f"no complete answer from {shown} within {self.timeout_s:g}s (timed out)") from None
        except http.Unreachable as exc:
            raise _Retryable(f"cannot reach {shown}: {self._sanitised(str(exc))}") from None
        except http.Refused as exc:
            raise SummarizerError(f"{self.name}: {shown}: {self._sanitised(str(exc))}") from None
        except http.TransportError as exc:  # cut off, too large, not HTTP
            raise _Retryable(f"incomplete or unusable answer from {shown}: {self._sanitised(str(exc))}") from None
        if not 200 <= answer.status < 300:
            detail = self._sanitised(_error_detail(answer.body))
            message = f"HTTP {answer.status} from {shown}" + (f": {detail}" if detail else "")
            if answer.status in _RETRY_STATUS:
                after = (answer.headers.get("Retry-After") or "").strip()
                raise _Retryable(message, float(after) if after.isdigit() else None)
            raise SummarizerError(f"{self.name}: {message}")
        try:
            text = self._answer_text(json.loads(answer.body))
            data = _extract_json(text)
            if not isinstance(data, dict):
                raise ValueError("the answer's JSON is not an object")
            return checked_summary(data.get("title"), data.get("bullets"), data.get("keywords"))
        except RecursionError:
            raise _Retryable(f"unusable answer from {shown}: JSON nested too deeply") from None
        except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
            raise _Retryable(f"unusable answer from {shown}: {self._sanitised(str(exc))}") from None

    def _sanitised(self, text: str) -> str:
        """Return ``text`` fit for a log line: no API key, no control characters, at most :data:`MAX_DETAIL_CHARS`."""
        return sanitise(text, self._api_key, MAX_DETAIL_CHARS)

    def _wait(self, seconds: float) -> None:
        """Sleep ``seconds`` between attempts, in slices, raising :class:`SummarizerStopped` on a stop request."""
        end = time.monotonic() + seconds
        while True:
            if self._should_stop():
                raise SummarizerStopped(f"{self.name}: stopped while waiting to retry")
            left = end - time.monotonic()
            if left <= 0:
                return
            self._sleep(min(left, http.POLL_S))

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
                self.waits.append(delay)
                self._wait(delay)
        raise SummarizerError(f"{self.name}: gave up after {self.retries + 1} attempt{'s' if self.retries else ''}: {last}")


def _shown_url(url: str) -> str:
    """Return ``url`` without user info, query or fragment (where credentials hide)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _error_detail(body: bytes) -> str:
    """Return the message of an API error body: ``error.message`` (or ``message``, ``error``) of JSON, else the text."""
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return text
    if isinstance(data, dict):
        error = data.get("error")
        for candidate in (error.get("message") if isinstance(error, dict) else error, data.get("message")):
            if isinstance(candidate, str) and candidate.strip():
                return candidate
    return text


_SECRET_PATTERNS = (
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)\b(x-api-key|api[_-]?key|authorization)([\"']?\s*[:=]\s*[\"']?)(?!bearer\b|basic\b|\[redacted\])[^\s\"',;}]+"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{6,}"),
)


def sanitise(text: str, secret: str, limit: int) -> str:
    """Return ``text`` with ``secret`` and anything shaped like a credential replaced by ``[redacted]``,
    control characters made spaces, whitespace collapsed, cut to ``limit`` characters."""
    if secret:
        text = text.replace(secret, "[redacted]")
        for size in range(min(len(secret) - 1, len(text)), 3, -1):  # a key cut off where the body was cut
            if text.endswith(secret[:size]):
                text = text[:-size] + "[redacted]"
                break
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) + (m.group(2) if m.lastindex and m.lastindex >= 2 else " ") + "[redacted]") if m.lastindex else "[redacted]", text)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."
