"""``pressarchive serve``: the archive in Datasette, read-only, searchable.

The database is served under its file stem (``archive.db`` -> ``/archive``)
with the project's metadata, canned queries, plugin and CSS from
``crawler/datasette/`` (shipped as package data). Datasette opens a mutable
file with ``mode=ro`` and the plugin makes every connection ``query_only``;
the archive is in WAL mode, so a crawl can write while the site is read.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from pathlib import Path

import click
import yaml

CONFIG_DIR = Path(__file__).parent / "datasette"

# Facet suggestions scan every column of the result: seconds on a large
# archive, and the configured facets already cover what is useful.
DEFAULT_SETTINGS = {
    "suggest_facets": False,
    "facet_time_limit_ms": 500,
    # The ranked search scores every match: "the" in 600,000 of a million releases takes ~0.7 s.
    "sql_time_limit_ms": 2000,
    "allow_download": False,
}

logger = logging.getLogger(__name__)


def load_metadata(db_name: str) -> dict:
    """metadata.yaml with its "archive" database renamed to ``db_name``."""
    metadata = yaml.safe_load((CONFIG_DIR / "metadata.yaml").read_text(encoding="utf-8"))
    metadata["databases"] = {db_name: metadata["databases"].pop("archive")}
    metadata["description_html"] = metadata["description_html"].replace(
        'href="/archive/', f'href="/{db_name}/'
    )
    return metadata


def make_datasette(db_path, **kw):
    """A Datasette app serving ``db_path`` read-only with the project's config.

    Keyword arguments go to ``datasette.app.Datasette``; ``settings`` is
    merged over DEFAULT_SETTINGS.
    """
    from datasette.app import Datasette

    path = Path(db_path)
    settings = {**DEFAULT_SETTINGS, **kw.pop("settings", {})}
    templates = CONFIG_DIR / "templates"
    return Datasette(
        [str(path)],
        metadata=load_metadata(path.stem),
        plugins_dir=str(CONFIG_DIR / "plugins"),
        template_dir=str(templates) if templates.is_dir() else None,
        static_mounts=[("pressarchive-static", str(CONFIG_DIR / "static"))],
        settings=settings,
        **kw,
    )


def update_search_index(path: Path) -> None:
    """Index releases the crawl left unindexed (normally none).

    Skipped with a warning when the file cannot be written: read-only media,
    or a crawl holding the write lock (it indexes as it stores).
    """
    from pipelines.schema import open_archive
    from pipelines.search_index import ensure_search

    try:
        db = open_archive(path)
        db.conn.execute("pragma busy_timeout = 2000")
        ensure_search(db)
        db.close()
    except sqlite3.OperationalError as error:
        logger.warning("search index not updated (%s); serving as is", error)


@click.command("serve")
@click.option(
    "--db",
    "db_path",
    default="archive.db",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Archive database to serve (read-only).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8001, show_default=True, type=int, help="Port to listen on.")
def serve_command(db_path: Path, host: str, port: int) -> None:
    """Browse and search the archive in Datasette (read-only)."""
    if not db_path.is_file():
        click.echo(
            f"Error: no archive at {db_path}: run 'pressarchive crawl' first or pass --db PATH",
            err=True,
        )
        sys.exit(2)
    import uvicorn

    try:
        update_search_index(db_path)
    except sqlite3.DatabaseError as error:
        click.echo(f"Error: {db_path} is not a readable SQLite archive ({error})", err=True)
        sys.exit(2)
    ds = make_datasette(db_path)
    click.echo(f"Serving {db_path} at http://{host}:{port}/{db_path.stem}", err=True)
    uvicorn.run(ds.app(), host=host, port=port, log_level="warning")
