"""``pressarchive reindex``: bring an archive's search index up to date (``serve`` never writes)."""

from __future__ import annotations

import sqlite3

import click

from crawler.cli.options import EXIT_LOCKED, check_db, db_option, fail


@click.command("reindex")
@db_option(help="SQLite archive file.")
def reindex(db_path):
    """Bring the archive's search index up to date (after copying in an archive made by an
    older version; `crawl`, `reextract` and `ingest` keep it up to date themselves).

    `serve` never writes, so an archive whose index is missing or from an older format
    is served with a warning until this (or a crawl) has run. Resumable: the index is
    built in batches of their own transactions.
    """
    from archive.lock import ArchiveLocked, archive_lock
    from archive.runs import release_count
    from archive.schema import open_archive
    from archive.search_index import ensure_search

    check_db(db_path, write=True)
    try:
        with archive_lock(db_path):
            db = open_archive(db_path)
            try:
                ensure_search(db)
                count = release_count(db)
            finally:
                db.close()
    except ArchiveLocked as exc:
        fail(str(exc), EXIT_LOCKED)
    except sqlite3.Error as exc:
        fail(f"archive {db_path} could not be re-indexed: {exc}")
    click.echo(f"search index of {db_path} is up to date ({count:,} releases)")
