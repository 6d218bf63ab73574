"""The README's command table and command reference, generated from the CLI's own ``--help``.

README.md holds two `cog <https://cog.readthedocs.io>`_ blocks that call :func:`table`
and :func:`reference`; ``tests/test_cli_help.py`` fails when the README is not what they
give, so the README cannot drift from the code. After changing a command or its help::

    cog -r README.md
"""

from __future__ import annotations

import click

from crawler.cli import cli

PROG = "pressarchive"


def commands(group: click.Group = cli, path: tuple[str, ...] = ()):
    """Every command as (path of names, command), groups before their subcommands, by name."""
    for name in sorted(group.commands):
        command = group.commands[name]
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


def context(path: tuple[str, ...]) -> click.Context:
    """The context ``pressarchive PATH --help`` would run in (with the group's context settings)."""
    ctx = cli.make_context(PROG, [], resilient_parsing=True)
    command = cli
    for name in path:
        command = command.commands[name]
        ctx = command.make_context(name, [], parent=ctx, resilient_parsing=True)
    return ctx


def usage(path: tuple[str, ...]) -> str:
    ctx = context(path)
    return " ".join([ctx.command_path, *ctx.command.collect_usage_pieces(ctx)])


def help_text(path: tuple[str, ...]) -> str:
    ctx = context(path)
    formatter = ctx.make_formatter()
    formatter.width = 100
    ctx.command.format_help(ctx, formatter)
    return formatter.getvalue().rstrip() + "\n"


def table() -> str:
    lines = ["| command | what it does |", "|---|---|"]
    for path, command in commands():
        summary = command.get_short_help_str(limit=300).replace("|", "\\|")
        lines.append(f"| `{usage(path)}` | {summary} |")
    return "\n".join(lines) + "\n"


def reference() -> str:
    parts = []
    for path, _command in commands():
        parts.append(f"### {PROG} {' '.join(path)}\n\n```\n{help_text(path)}```\n")
    return "\n".join(parts)
