"""What every command shares: ``--db`` and ``--sources``, exit codes, and one error style.

Every user error (bad registry, unknown source, missing file, an unusable ``--db``)
ends in one line on stderr (``Error: ...``) and exit code 2, never a traceback.
:func:`check_db` is the one place every command that takes ``--db`` checks it, before
anything opens the file (archive/files.py says what is wrong).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from archive.files import db_problem
from crawler.settings import ARCHIVE_DB
from crawler.sources import SourceError, bundled_catalogue, load_sources, select_sources

EXIT_SOURCE_FAILED = 1  # a source failed, or the crawl was interrupted
EXIT_USAGE = 2  # bad options, registry or files
EXIT_LOCKED = 3  # another crawl holds the archive


def db_option(help: str = "SQLite archive file (created if missing).", default=Path(ARCHIVE_DB)):
    """``--db PATH``: the archive. Its type has no ``dir_okay=False`` (click's own error is four
    lines): :func:`check_db` says what is wrong in one."""
    return click.option("--db", "db_path", type=click.Path(path_type=Path), default=default,
                        show_default=default is not None, help=help)


sources_option = click.option(
    "--sources", "sources_file", type=click.Path(path_type=Path), default=None,
    help="Source registry (TOML). Default: the bundled catalogue.",
)
contact_option = click.option(
    "--contact", metavar="URL", envvar="PRESSARCHIVE_CONTACT",
    help="Contact URL or mailto: put in the User-Agent [env PRESSARCHIVE_CONTACT].",
)


def fail(message: str, code: int = EXIT_USAGE):
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def check_db(db_path, *, write: bool, create: bool = False) -> Path:
    """Stop with one line on stderr and exit 2 when ``--db`` cannot be the archive a command needs
    (``write``: the command writes it; ``create``: a missing file becomes a new archive)."""
    path = Path(db_path)
    problem = db_problem(path, write=write, create=create)
    if problem:
        fail(problem)
    return path


def load_registry(sources_file):
    try:
        return load_sources(sources_file)
    except SourceError as exc:
        fail(str(exc))


def chosen_sources(sources_file, source_ids) -> list:
    """The registry's sources named by ``source_ids`` (default: every enabled one), or exit 2."""
    registry = load_registry(sources_file)
    try:
        return select_sources(registry, source_ids, str(sources_file or bundled_catalogue()))
    except SourceError as exc:
        fail(str(exc))
