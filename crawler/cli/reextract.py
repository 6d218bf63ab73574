"""``pressarchive reextract``: clean the stored raw capture again, without the network."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import click

from crawler.cli.options import EXIT_SOURCE_FAILED, check_db, db_option, fail


@click.command("reextract")
@click.argument("source_ids", nargs=-1)
@db_option(help="SQLite archive file.")
@click.option("--warc-dir", type=click.Path(path_type=Path),
              help="Folder of the WARC files (default: warc/ next to the archive).")
def reextract_command(source_ids, db_path, warc_dir):
    """Clean the stored raw capture of SOURCE_IDS (default: all) again with the current extractor.

    No network. Changed text becomes a new version labelled `extraction`;
    changed dates and languages are updated in place. In a terminal, a
    progress bar shows how many releases are done.

    Exit codes: 0 every release re-extracted; 1 some could not be (a WARC file
    missing or unreadable: said on stderr, the rest is done); 2 nothing done
    (no archive, an unknown source id, no raw capture folder).
    """
    from archive.reextract import (
        ReextractRefused,
        reextract,
    )
    from crawler.progress import progress_bar
    from pipelines.cleaning import (
        clean_capture,  # (slow to import: only when the command runs)
    )

    check_db(db_path, write=True)
    try:
        with progress_bar("re-extracting releases") as bar:
            counts = reextract(db_path, clean_capture, source_ids, warc_dir, progress=bar)
    except ReextractRefused as exc:
        fail(str(exc))
    except sqlite3.Error as exc:
        fail(f"re-extraction stopped, archive {db_path}: {exc}", EXIT_SOURCE_FAILED)
    click.echo(
        f"{counts['releases']} releases re-extracted: {counts['text_changed']} new text (new versions), "
        f"{counts['metadata_changed']} new metadata, {counts['unchanged']} unchanged, "
        f"{counts['unreadable']} without a readable capture"
    )
    if counts["unreadable"]:
        raise SystemExit(EXIT_SOURCE_FAILED)
