"""Where the API summarizer's key comes from, and the one rule that it must be found.

``validate`` (with the environment the jobs will run in), ``memsched exec`` (before a
rollup starts) and the summarizer itself all call :func:`find_api_key`, so a config
whose key cannot be found is refused the same way everywhere: as a config problem
naming ``summarizer.api_key`` (exit 2), not as a failed run.

A new place to take the key from (a systemd credential, a key file) is one more
branch of :func:`find_api_key`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# kind -> the variable read when summarizer.api_key_env is empty
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


@dataclass(frozen=True)
class KeyLookup:
    """The outcome of looking for the key: ``key`` ("" when not found), where it came from or was looked for."""

    key: str
    source: str
    problem: str | None = None


def needs_api_key(settings: Mapping[str, Mapping[str, object]]) -> bool:
    """True when ``[summarizer] kind`` is an API summarizer (which needs a key)."""
    return str(settings.get("summarizer", {}).get("kind") or "local") != "local"


def find_api_key(settings: Mapping[str, Mapping[str, object]], env: Mapping[str, str]) -> KeyLookup:
    """Look for the API key: ``summarizer.api_key``, else the variable ``summarizer.api_key_env`` names.

    ``env`` is the environment the summarizer runs in (for ``validate``: the jobs' environment,
    not the shell's). Returns a :class:`KeyLookup`; ``problem`` says what to do when there is no key.
    """
    summarizer = settings.get("summarizer", {})
    kind = str(summarizer.get("kind") or "local")
    configured = str(summarizer.get("api_key") or "")
    if configured:
        return KeyLookup(configured, "summarizer.api_key")
    variable = str(summarizer.get("api_key_env") or DEFAULT_KEY_ENV.get(kind, ""))
    value = env.get(variable, "") if variable else ""
    if value:
        return KeyLookup(value, f"${variable}")
    return KeyLookup(
        "",
        f"${variable}",
        f"summarizer.kind = {kind!r} needs an API key: set summarizer.api_key, or the environment variable "
        f"{variable} where the jobs run",
    )


def api_key_problem(settings: Mapping[str, Mapping[str, object]], env: Mapping[str, str]) -> tuple[str, str] | None:
    """Return ``("summarizer.api_key", message)`` when an API summarizer has no key in ``env``; None otherwise."""
    if not needs_api_key(settings):
        return None
    found = find_api_key(settings, env)
    return ("summarizer.api_key", found.problem) if found.problem else None
