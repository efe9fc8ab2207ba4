"""Shell completion (bash, zsh, fish) and the generated CLI reference (docs/cli.md)."""

from __future__ import annotations

import click
from click.shell_completion import CompletionItem, get_completion_class

from memsched.cli.common import handle_errors


def complete_jobs(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Complete job names from the config the command would use; never fails (no config: no names)."""
    try:
        from memsched.cli.common import app

        config = app(ctx).config()
    except Exception:
        return []
    return [CompletionItem(name) for name in sorted(config.jobs) if name.startswith(incomplete)]


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@handle_errors
def completion_cmd(shell: str) -> None:
    """Print the completion script for SHELL (commands, options and job names).

    \b
    bash: memsched completion bash > /etc/bash_completion.d/memsched
    zsh:  memsched completion zsh > "${fpath[1]}/_memsched"
    fish: memsched completion fish > ~/.config/fish/completions/memsched.fish
    """
    from memsched.cli import cli

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(cli, {}, "memsched", "_MEMSCHED_COMPLETE").source())


def cli_reference_markdown() -> str:
    """Return docs/cli.md: every command's help, generated from the click definitions."""
    from memsched.cli import cli

    lines = [
        "# CLI reference",
        "",
        "<!-- Generated from the click commands by `memsched cli-reference`; do not edit. -->",
        "",
        "Global options (`--config`, `--user`, `--system`) may be given before or after the command.",
        "Exit codes: see `docs/exit-codes.md`.",
        "",
    ]
    # A fixed width, so the text does not depend on the terminal that generated it.
    settings = dict(cli.context_settings, terminal_width=100, max_content_width=100)
    root = click.Context(cli, info_name="memsched", **settings)

    def walk(group: click.Group, ctx: click.Context, path: list[str]) -> None:
        for name in group.list_commands(ctx):
            sub = group.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            # The child's context hangs off its parent's (root: "memsched"), so usage reads "memsched calendar ...".
            sub_ctx = click.Context(sub, info_name=name, parent=ctx, terminal_width=100, max_content_width=100)
            lines.extend([f"## `{' '.join([*path, name])}`", "", "```", sub.get_help(sub_ctx).rstrip(), "```", ""])
            if isinstance(sub, click.Group):
                walk(sub, sub_ctx, [*path, name])

    lines.extend(["## `memsched`", "", "```", cli.get_help(root).rstrip(), "```", ""])
    walk(cli, root, ["memsched"])
    return "\n".join(lines)


@click.command("cli-reference", hidden=True)
def cli_reference_cmd() -> None:
    """Print docs/cli.md."""
    click.echo(cli_reference_markdown(), nl=False)
