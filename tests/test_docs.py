"""Tests keep the docs honest: every command has help, appears in docs/cli.md and the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from recsim_cli.cli import app

REPO = Path(__file__).resolve().parent.parent


def _commands() -> list[str]:
    """Every command path, e.g. 'ingest', 'simulate' (and subcommands as 'simulate abtest')."""
    root = typer.main.get_command(app)
    paths: list[str] = []

    def walk(cmd: object, prefix: str) -> None:
        children = getattr(cmd, "commands", {}) or {}
        for name, child in sorted(children.items()):
            path = f"{prefix} {name}".strip()
            paths.append(path)
            walk(child, path)

    walk(root, "")
    return paths


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help(command: str, invoke) -> None:
    result = invoke([*command.split(), "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.stdout
    root = typer.main.get_command(app)
    cmd = root
    for part in command.split():
        cmd = cmd.commands[part]  # type: ignore[attr-defined]
    assert cmd.help and len(cmd.help.strip()) > 20, f"`recsim {command}` needs a docstring"


@pytest.mark.parametrize("command", _commands())
def test_every_command_is_documented(command: str) -> None:
    cli_doc = (REPO / "docs" / "cli.md").read_text()
    assert re.search(rf"^#+ `recsim {re.escape(command)}", cli_doc, re.M), (
        f"docs/cli.md has no section for `recsim {command}`"
    )
    assert f"recsim {command}" in (REPO / "README.md").read_text()


def test_readme_shows_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make demo" in readme
    assert "make test" in readme


def test_exit_codes_in_docs_match_the_code() -> None:
    from recsim_cli.errors import ExitCode

    cli_doc = (REPO / "docs" / "cli.md").read_text()
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \|", cli_doc, re.M), f"exit code {int(code)} missing"
