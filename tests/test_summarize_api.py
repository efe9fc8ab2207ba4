"""The API summarizer against a real HTTP server on loopback: both wire formats, retries, timeouts, bad answers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from memsched.config.load import parse_config
from memsched.errors import ConfigError
from memsched.store.models import Bullet, Event
from memsched.summarize import LocalSummarizer, SummarizerError, Summary, make_summarizer
from memsched.summarize.api import ApiSummarizer

GOOD = {"title": "Timer work", "bullets": ["Fixed the timer", "Measured the WAL", "Wrote the docs"], "keywords": ["timer", "wal", "docs"]}


class Script:
    """Answers to give, in order (the last one repeats), and the requests received."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, bytes, float, dict[str, str]]] = []
        self.requests: list[tuple[str, dict[str, str], dict]] = []

    def add(self, status: int, body: object, delay: float = 0.0, headers: dict[str, str] | None = None) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.answers.append((status, raw, delay, headers or {}))


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", 0))
            script.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(self.rfile.read(length))))
            index = min(len(script.requests), len(script.answers)) - 1
            status, body, delay, headers = script.answers[index]
            time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def openai_body(content: object) -> dict:
    return {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": content if isinstance(content, str) else json.dumps(content)}}]}


def anthropic_body(content: object) -> dict:
    text = content if isinstance(content, str) else json.dumps(content)
    return {"id": "msg", "type": "message", "content": [{"type": "text", "text": text}], "stop_reason": "end_turn"}


def summarizer(kind: str, base: str, **kwargs: object) -> ApiSummarizer:
    return ApiSummarizer(kind, api_key="sk-test", base_url=base if kind == "anthropic" else base + "/v1", backoff_s=0.01, **kwargs)  # type: ignore[arg-type]
    return made


EVENTS = [Event("01HM6X8Z3ZC0000000000000AA", "s", 1_705_329_000_000, "user_message", "user", "Please fix the timer"), Event("01HM6X8Z3ZC0000000000000AB", "s", 1_705_329_060_000, "assistant_message", "assistant", "Done, measured the WAL too")]
CHILDREN = [Summary("Timer fix", (Bullet("Fixed it", ("grip:1",)), Bullet("b"), Bullet("c")), ("timer", "fix", "wal"), label="Monday, January 15, 2024")]


def test_openai_chat_completions_request_and_answer(server) -> None:
    base, script = server
    script.add(200, openai_body(GOOD))
    summary = summarizer("openai", base, model="my-model").summarize_events(EVENTS)
    assert summary.title == "Timer work" and [b.text for b in summary.bullets] == GOOD["bullets"] and summary.keywords == ("timer", "wal", "docs")
    path, headers, body = script.requests[0]
    assert path == "/v1/chat/completions" and headers["authorization"] == "Bearer sk-test"
    assert body["model"] == "my-model" and body["response_format"] == {"type": "json_object"}
    assert "Please fix the timer" in body["messages"][1]["content"]


def test_anthropic_messages_request_and_fenced_answer(server) -> None:
    base, script = server
    script.add(200, anthropic_body("```json\n" + json.dumps(GOOD) + "\n```"))
    summary = summarizer("anthropic", base).summarize_children(CHILDREN)
    assert summary.title == "Timer work"
    path, headers, body = script.requests[0]
    assert path == "/v1/messages" and headers["x-api-key"] == "sk-test" and headers["anthropic-version"] == "2023-06-01"
    assert body["max_tokens"] > 0 and "Monday, January 15, 2024" in body["messages"][0]["content"] and "system" in body


def test_retries_after_500_then_succeeds_with_backoff(server) -> None:
    base, script = server
    script.add(500, {"error": "boom"})
    script.add(503, {"error": "busy"}, headers={"Retry-After": "0"})
    script.add(200, openai_body(GOOD))
    made = summarizer("openai", base)
    assert made.summarize_events(EVENTS).title == "Timer work"
    assert len(script.requests) == 3 and made.waits == [0.01, 0.02]


def test_gives_up_after_the_retries_with_a_clear_error(server) -> None:
    base, script = server
    script.add(502, b"bad gateway")
    made = summarizer("anthropic", base, retries=2)
    with pytest.raises(SummarizerError, match=r"gave up after 3 attempts: HTTP 502 from http://127\.0\.0\.1:\d+/v1/messages: bad gateway"):
        made.summarize_events(EVENTS)
    assert len(script.requests) == 3


def test_client_errors_are_not_retried(server) -> None:
    base, script = server
    script.add(401, {"error": {"message": "invalid x-api-key"}})
    with pytest.raises(SummarizerError, match="HTTP 401 .*invalid x-api-key"):
        summarizer("anthropic", base).summarize_events(EVENTS)
    assert len(script.requests) == 1


def test_timeout_is_retried_then_reported(server) -> None:
    base, script = server
    script.add(200, openai_body(GOOD), delay=1.0)
    made = summarizer("openai", base, timeout_s=0.2, retries=1)
    started = time.monotonic()
    with pytest.raises(SummarizerError, match=r"gave up after 2 attempts: no complete answer from .* within 0.2s \(timed out\)"):
        made.summarize_events(EVENTS)
    assert time.monotonic() - started < 1.5 and len(script.requests) == 2


@pytest.mark.parametrize(
    "body",
    [b"<html>not json</html>", openai_body("I think the summary is: timers"), openai_body({"title": "t", "bullets": ["only one"], "keywords": ["a", "b", "c"]}), {"choices": []}],
    ids=["envelope-not-json", "answer-not-json", "two-few-bullets", "no-choices"],
)
def test_bad_answers_are_retried_then_reported(server, body) -> None:
    base, script = server
    script.add(200, body)
    with pytest.raises(SummarizerError, match="unusable answer"):
        summarizer("openai", base, retries=1).summarize_events(EVENTS)
    assert len(script.requests) == 2


def test_bad_json_once_then_good(server) -> None:
    base, script = server
    script.add(200, b"{truncated")
    script.add(200, openai_body(GOOD))
    assert summarizer("openai", base).summarize_children(CHILDREN).keywords == ("timer", "wal", "docs")


def test_unreachable_server_is_reported(server) -> None:
    made = ApiSummarizer("openai", api_key="k", base_url="http://127.0.0.1:9/v1", retries=0)
    with pytest.raises(SummarizerError, match="cannot reach http://127.0.0.1:9/v1/chat/completions"):
        made.summarize_events(EVENTS)


def test_make_summarizer_reads_config_and_environment() -> None:
    assert isinstance(make_summarizer(parse_config({})), LocalSummarizer)
    config = parse_config({"summarizer": {"kind": "anthropic", "api_key_env": "MY_KEY", "timeout": "5s", "retries": 1}})
    made = make_summarizer(config, env={"MY_KEY": "secret"})
    assert isinstance(made, ApiSummarizer) and (made.kind, made.timeout_s, made.retries, made.model) == ("anthropic", 5.0, 1, "claude-3-5-haiku-latest")
    made = make_summarizer(parse_config({"summarizer": {"kind": "openai"}}), env={"OPENAI_API_KEY": "k"})
    assert made.base_url == "https://api.openai.com/v1"


def test_missing_api_key_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        make_summarizer(parse_config({"summarizer": {"kind": "openai"}}), env={})
    assert caught.value.exit_code == 2
    assert "summarizer.api_key: summarizer.kind = 'openai' needs an API key" in str(caught.value) and "OPENAI_API_KEY" in str(caught.value)
    with pytest.raises(ConfigError, match="summarizer.base_url: 'ftp://x'"):
        make_summarizer(parse_config({"summarizer": {"kind": "openai", "api_key": "k", "base_url": "ftp://x"}}), env={})
    with pytest.raises(ConfigError, match="summarizer.retries"):
        parse_config({"summarizer": {"retries": 50}})


def test_rollup_with_the_api_summarizer(server, tmp_path) -> None:
    from memsched.jobs.rollup import run_rollup
    from memsched.ops.memory import ingest
    from memsched.store import open_store
    from memsched.store.sample import generate_events, to_jsonl

    base, script = server
    script.add(200, openai_body(GOOD))
    with open_store(tmp_path / "m.db") as store:
        ingest(store, iter(to_jsonl(generate_events(1_705_276_800_000, 2, seed=1))))
        result = run_rollup(store, "day", now_ms=1_705_276_800_000 + 3 * 86_400_000, min_age_ms=0, summarizer=summarizer("openai", base))
        assert result.nodes_rolled == 2 and result.summarizer == "openai:gpt-4o-mini"
        day = store.get_node("toc:day:2024-01-15")
        assert (day.title, day.summary_title, day.keywords) == ("Monday, January 15, 2024", "Timer work", ("timer", "wal", "docs"))
