"""Where the API summarizer's key comes from, the rules it must pass, and how it is kept out of output.

``validate`` (with the environment the jobs will run in), ``memsched exec`` (before a
rollup starts) and the summarizer itself all call :func:`find_api_key`, so a config
whose key cannot be found, or sits where others may read it, is refused the same way
everywhere: as a config problem naming the key (exit 2), not as a failed run.

Order: the systemd credential ``memsched-api-key`` (``$CREDENTIALS_DIRECTORY``, which
install-units sets up with ``LoadCredential=`` from ``summarizer.api_key_file`` in system
scope, so the file may be root's 0600), then ``summarizer.api_key_file`` read directly,
then ``summarizer.api_key`` (only from a config file others may not read), then the
variable ``summarizer.api_key_env`` names. :data:`SECRET_KEYS` are printed as
``[redacted]`` by ``config show``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass

# kind -> the variable read when summarizer.api_key_env is empty
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
CREDENTIAL_NAME = "memsched-api-key"  # LoadCredential=memsched-api-key:<api_key_file>
SECRET_KEYS = (("summarizer", "api_key"),)
REDACTED = "[redacted]"


@dataclass(frozen=True)
class KeyLookup:
    """The outcome of looking for the key: ``key`` ("" when not found), where it came from or was looked for.

    ``problem`` says what to do; ``problem_key`` is the config key it is about.
    """

    key: str
    source: str
    problem: str | None = None
    problem_key: str = "summarizer.api_key"


def needs_api_key(settings: Mapping[str, Mapping[str, object]]) -> bool:
    """True when ``[summarizer] kind`` is an API summarizer (which needs a key)."""
    return str(settings.get("summarizer", {}).get("kind") or "local") != "local"


def _others_may_read(mode: int) -> bool:
    return bool(mode & stat.S_IROTH)


def _read_key_file(path: str) -> str:
    """Return the first line of ``path``, stripped. Raises OSError."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.readline(64 * 1024).strip()


def find_api_key(settings: Mapping[str, Mapping[str, object]], env: Mapping[str, str], source: str | None = None) -> KeyLookup:
    """Look for the API key (see the module's order).

    ``env`` is the environment the summarizer runs in (for ``validate``: the jobs' environment,
    not the shell's); ``source`` the config file, whose mode decides whether ``api_key`` in it
    may be used. Returns a :class:`KeyLookup`; ``problem`` says what to do when there is no
    usable key. Never raises.
    """
    summarizer = settings.get("summarizer", {})
    kind = str(summarizer.get("kind") or "local")
    credentials = env.get("CREDENTIALS_DIRECTORY", "")
    if credentials:
        try:
            key = _read_key_file(os.path.join(credentials, CREDENTIAL_NAME))
            if key:
                return KeyLookup(key, f"the systemd credential {CREDENTIAL_NAME}")
        except OSError:
            pass
    key_file = str(summarizer.get("api_key_file") or "")
    if key_file:
        try:
            mode = os.stat(key_file).st_mode
            if _others_may_read(mode):
                return KeyLookup("", key_file, f"{key_file} is readable by others (mode {stat.S_IMODE(mode):04o}): "
                                 f"chmod 600 {key_file}", "summarizer.api_key_file")
            key = _read_key_file(key_file)
        except PermissionError:
            return KeyLookup("", key_file, f"cannot read {key_file} (permission denied); in system scope the jobs get it "
                             f"as the systemd credential {CREDENTIAL_NAME}: run `memsched install-units`", "summarizer.api_key_file")
        except OSError as exc:
            return KeyLookup("", key_file, f"cannot read {key_file}: {exc.strerror}", "summarizer.api_key_file")
        if not key:
            return KeyLookup("", key_file, f"{key_file} is empty: put the key on its first line", "summarizer.api_key_file")
        return KeyLookup(key, key_file)
    configured = str(summarizer.get("api_key") or "")
    if configured:
        if source:
            try:
                mode = os.stat(source).st_mode
            except OSError:
                mode = 0
            if _others_may_read(mode):
                return KeyLookup("", "summarizer.api_key", (
                    f"the key is in {source}, which others may read (mode {stat.S_IMODE(mode):04o}): chmod 600 {source}, "
                    "or move the key to api_key_file (mode 0600) or to the variable api_key_env names"))
        return KeyLookup(configured, "summarizer.api_key")
    variable = str(summarizer.get("api_key_env") or DEFAULT_KEY_ENV.get(kind, ""))
    value = env.get(variable, "") if variable else ""
    if value:
        return KeyLookup(value, f"${variable}")
    return KeyLookup(
        "",
        f"${variable}",
        f"summarizer.kind = {kind!r} needs an API key: set summarizer.api_key_file, summarizer.api_key, or the "
        f"environment variable {variable} where the jobs run",
    )


def api_key_problem(settings: Mapping[str, Mapping[str, object]], env: Mapping[str, str], source: str | None = None) -> tuple[str, str] | None:
    """Return ``(config key, message)`` when an API summarizer has no usable key in ``env``; None otherwise."""
    if not needs_api_key(settings):
        return None
    found = find_api_key(settings, env, source)
    return (found.problem_key, found.problem) if found.problem else None


def key_variable(settings: Mapping[str, Mapping[str, object]]) -> str | None:
    """Return the variable an API summarizer would take its key from (None when the key comes from elsewhere)."""
    if not needs_api_key(settings):
        return None
    summarizer = settings.get("summarizer", {})
    if summarizer.get("api_key_file") or summarizer.get("api_key"):
        return None
    kind = str(summarizer.get("kind") or "local")
    return str(summarizer.get("api_key_env") or DEFAULT_KEY_ENV.get(kind, "")) or None


def redacted(section: str, key: str, value: object) -> object:
    """Return ``value``, or :data:`REDACTED` for a non-empty secret (``section.key`` in :data:`SECRET_KEYS`)."""
    return REDACTED if (section, key) in SECRET_KEYS and value else value
