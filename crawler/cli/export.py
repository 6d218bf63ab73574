"""``pressarchive export``: a citable snapshot of the archive, or of exactly what a search matches."""

from __future__ import annotations

import json
from pathlib import Path

import click

from crawler.cli.options import check_db, db_option


@click.command("export")
@db_option(help="Archive to export.")
@click.option("--out", "out_dir", default="exports", show_default=True,
              type=click.Path(path_type=Path), help="Folder that holds the snapshot folders.")
@click.option("--source", "sources", multiple=True, metavar="ID",
              help="Only this source (repeatable).")
@click.option("--since", metavar="DATE", help="Only releases published on or after DATE (YYYY-MM-DD).")
@click.option("--until", metavar="DATE", help="Only releases published on or before DATE (YYYY-MM-DD).")
@click.option("--search", metavar="QUERY",
              help="Only releases matching QUERY, as in the search box: words ANDed, \"phrases\", "
                   "OR, -word, word*; Chinese/Japanese/Korean without spaces. Needs the search index.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv",
              show_default=True, help="Data file format.")
@click.option("--excel", is_flag=True,
              help="CSV for spreadsheets: UTF-8 BOM so Chinese displays, formula-like cells neutralised.")
@click.option("--keep", type=click.IntRange(min=1), metavar="N",
              help="Keep only the N newest snapshots in --out (other files are never touched).")
def export_command(db_path, out_dir, sources, since, until, search, fmt, excel, keep):
    """Write a citable snapshot of the archive to OUT/<UTC timestamp>/.

    The folder holds one file per table, manifest.json (row counts,
    sha256 of every file, filters, versions) and a README.md describing the
    columns. Prints the folder's path. In a terminal, a progress bar shows
    the rows written of each table.
    """
    from archive.export import (  # (slow to import: only when the command runs)
        ExportError,
        Options,
        build_filters,
        export_snapshot,
    )
    from crawler.progress import progress_bar

    check_db(db_path, write=False)
    if excel and fmt != "csv":
        raise ExportError("--excel applies to --format csv only")
    filters = build_filters(sources, since, until, search)
    with progress_bar("exporting") as bar:
        progress = (lambda table, done, total: bar(done, total, f"exporting {table}")) if bar else None
        folder = export_snapshot(db_path, out_dir, filters, Options(fmt, excel), keep=keep, progress=progress)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    counts = ", ".join(f"{f['rows']} {f['table']}" for f in manifest["files"] if "rows" in f)
    click.echo(f"exported {counts}", err=True)
    click.echo(str(folder))
