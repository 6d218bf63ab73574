"""``pressarchive link``: find the statement families of an existing archive (archive/families.py).

A crawl links what it stores as it goes; this command links what an older version stored
(releases never looked at), or with ``--rebuild`` recomputes every link and family from the
releases (after a change of the thresholds, or to check the incremental result).
"""

from __future__ import annotations

import sqlite3

import click

from crawler.cli.options import EXIT_LOCKED, check_db, db_option, fail


@click.command("link")
@db_option(help="SQLite archive file.")
@click.option("--rebuild", is_flag=True,
              help="Recompute every repost link, translation link and family from the releases, "
                   "instead of linking only the releases not looked at yet.")
def link_command(db_path, rebuild):
    """Link reposts and translations into statement families (crawls do it as they store;
    run this once on an archive made by an older version).

    Reposts: near-identical texts on other pages (MinHash, then the exact Jaccard
    similarity). Translations: language versions the pages or the registry declare.
    Prints exact counts: releases looked at, releases in families, links, families.
    """
    from archive import families, translations
    from archive.lock import ArchiveLocked, archive_lock
    from archive.schema import open_archive

    check_db(db_path, write=True)
    try:
        with archive_lock(db_path):
            db = open_archive(db_path)
            try:
                with db.conn:
                    if rebuild:
                        looked_at = families.counts(db)["releases"]
                        families.rebuild(db)
                    else:
                        ids = families.unsigned(db)
                        looked_at = len(ids)
                        families.link_all(db, ids)
                        translations.link_all(db)
                counts = families.counts(db)
            finally:
                db.close()
    except ArchiveLocked as exc:
        fail(str(exc), EXIT_LOCKED)
    except sqlite3.Error as exc:
        fail(f"archive {db_path} could not be linked: {exc}")
    click.echo(
        f"{looked_at:,} releases looked at ({'all, rebuilt' if rebuild else 'not linked before'}); "
        f"{counts['linked']:,} of {counts['releases']:,} releases in {counts['families']:,} families; "
        f"{counts['reposts'] + counts['translations']:,} links ({counts['reposts']:,} reposts, "
        f"{counts['translations']:,} translations)")
