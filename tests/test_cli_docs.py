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


def _sections(markdown: str) -> dict[str, str]:
    out = {}
    for part in markdown.split("\n## `")[1:]:
        title, _, rest = part.partition("`")
        out[title] = rest.split("```", 2)[1].strip("\n")
    return out


def test_docs_cli_reference_is_what_each_command_prints() -> None:
    """Every section of docs/cli.md is what the installed `memsched … --help` prints, word for word
    (the terminal width aside): usage lines read `memsched status …`, not `memsched memsched …`."""
    sections = _sections((Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text())
    assert len(sections) > 25, sorted(sections)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMSCHED_")}
    for title, documented in sections.items():
        words = title.split()[1:]
        proc = subprocess.run([*MEMSCHED, *words, "--help"], capture_output=True, text=True, env=dict(env, COLUMNS="100"))
        assert proc.returncode == 0, (title, proc.stderr)
        # click writes the program name it was started as; `python -m memsched` is `memsched` to users
        real = proc.stdout.replace("python -m memsched", "memsched")
        # A group's command list shortens each line to the width: compare its command names only.
        real_text, _, real_commands = real.partition("\nCommands:\n")
        doc_text, _, doc_commands = documented.partition("\nCommands:\n")
        assert real_text.split() == doc_text.split(), f"docs/cli.md section {title!r} differs from `{title} --help`"
        names = lambda block: [line.split()[0] for line in block.splitlines() if line.strip()]  # noqa: E731
        assert names(real_commands) == names(doc_commands), title
        assert "memsched memsched" not in documented
