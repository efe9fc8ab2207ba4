"""Shell completion (commands and job names) and the generated CLI reference."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from memsched.cli.reference import cli_reference_markdown
from memsched_testing import command_job, write_config

MEMSCHED = [sys.executable, "-m", "memsched"]


def complete(words: str, env_extra: dict[str, str] | None = None) -> list[str]:
    env = dict(os.environ, COMP_WORDS=words, COMP_CWORD=str(len(words.split()) - (0 if words.endswith(" ") else 1)), _MEMSCHED_COMPLETE="bash_complete")
    env.update(env_extra or {})
    out = subprocess.run([*MEMSCHED], env=env, capture_output=True, text=True).stdout
    return [line.split(",", 1)[1] for line in out.splitlines()]


def test_commands_complete() -> None:
    assert "status" in complete("memsched sta")
    assert {"install-units"} <= set(complete("memsched ins"))


def test_job_names_complete_from_the_config(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"prune_index": command_job(["/bin/true"]), "prune_cache": command_job(["/bin/true"])})
    got = complete("memsched status prune_", {"MEMSCHED_CONFIG": str(config), "MEMSCHED_SCOPE": "user"})
    assert set(got) == {"prune_index", "prune_cache"}
    assert complete("memsched logs toc_rollup_w", {"MEMSCHED_SCOPE": "user", "XDG_CONFIG_HOME": str(tmp_path / "none")}) == ["toc_rollup_week"]


@pytest.mark.parametrize("shell,needle", [("bash", "complete -o nosort -F"), ("zsh", "#compdef memsched"), ("fish", "complete --no-files --command memsched")])
def test_completion_scripts(shell: str, needle: str) -> None:
    proc = subprocess.run([*MEMSCHED, "completion", shell], capture_output=True, text=True)
    assert proc.returncode == 0 and needle in proc.stdout


def test_docs_cli_reference_is_current() -> None:
    """docs/cli.md is generated; regenerate with `memsched cli-reference > docs/cli.md`."""
    path = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
    assert path.read_text() == cli_reference_markdown(), "docs/cli.md is stale: run `memsched cli-reference > docs/cli.md`"
