"""Every command and option says what it does, and the README's command docs are the CLI's own.

As sqlite-utils does: the README's command table and command reference are generated
from ``--help`` (``tests/cli_reference.py``, run by ``cog -r README.md``), and this test
fails when the README differs from what they generate now.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from cli_reference import commands, help_text
from click.testing import CliRunner

from crawler.cli import cli

ROOT = Path(__file__).resolve().parent.parent
ALL = list(commands())
IDS = [" ".join(path) for path, _ in ALL]


def test_there_are_commands_to_check():
    names = {path[0] for path, _ in ALL}
    assert {"crawl", "demo", "serve", "export", "status", "sources", "extract", "reextract", "ingest",
            "reindex"} <= names
    assert ("sources", "check") in {path for path, _ in ALL}


@pytest.mark.parametrize(("path", "command"), ALL, ids=IDS)
def test_every_command_and_option_has_help(path, command):
    assert (command.help or "").strip(), f"{' '.join(path)}: no help text"
    for param in command.params:
        if isinstance(param, click.Option):
            assert (param.help or "").strip(), f"{' '.join(path)} {param.opts[0]}: no help text"
        else:  # arguments have no help of their own: the command's text must name them
            assert param.human_readable_name.upper() in command.help, \
                f"{' '.join(path)}: help does not mention {param.human_readable_name.upper()}"


@pytest.mark.parametrize("path", [path for path, _ in ALL], ids=IDS)
def test_help_runs_and_shows_every_option(path):
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="pressarchive")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: pressarchive {' '.join(path)} ")
    command = dict(ALL)[path]
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.opts[0] in result.output
    assert help_text(path).split("\n", 1)[0] == result.output.split("\n", 1)[0]


def test_readme_command_docs_are_generated_from_help():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "## Command reference" in readme
    for path, _ in ALL:
        assert f"### pressarchive {' '.join(path)}\n" in readme
    check = subprocess.run([sys.executable, "-m", "cogapp", "--check", "--diff", "README.md"], check=False, cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, "README.md is out of date: run `cog -r README.md`\n" + check.stdout[-3000:]
