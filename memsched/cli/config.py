"""Commands about the config file: config show, config defaults, config reference."""

from __future__ import annotations

import click

from memsched.cli.common import app, common_options, echo_json, handle_errors, json_option
from memsched.config import docs


@click.group("config")
def config_group() -> None:
    """Show the effective config or the documented defaults."""


@config_group.command("show")
@json_option
@common_options
@handle_errors
def show_cmd(as_json: bool) -> None:
    """Print the effective config (file merged over the built-in defaults), as TOML or --json.

    Durations are in seconds in both, as a bare number is in the config file: either output,
    saved as a config file, loads back as the same config."""
    config = app().config()
    if as_json:
        document = docs.effective_document(config)
        jobs = document.pop("jobs")
        echo_json({"source": str(config.source) if config.source else None, "durations": "seconds", "settings": document, "jobs": jobs})
        return
    click.echo(f"# effective config; source: {config.source or 'built-in defaults'}; durations in seconds")
    click.echo(docs.effective_toml(config), nl=False)


@config_group.command("defaults")
@handle_errors
def defaults_cmd() -> None:
    """Print every key with its default and description, as commented TOML."""
    click.echo(docs.defaults_toml(), nl=False)


@config_group.command("reference")
@handle_errors
def reference_cmd() -> None:
    """Print the Markdown config reference (docs/config.md) generated from the schema."""
    click.echo(docs.reference_markdown(), nl=False)
