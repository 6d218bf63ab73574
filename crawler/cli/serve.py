"""``pressarchive serve``: Datasette on the archive, read-only, with exact search."""

from __future__ import annotations

from pathlib import Path

import click

from crawler.cli.options import db_option, fail


@click.command("serve")
@db_option(help="Archive database to serve (read-only).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8001, show_default=True, type=int,
              help="Port to listen on (0: any free port, printed).")
@click.option("--warc-dir", type=click.Path(path_type=Path),
              help="Folder of the WARC files, for the archived originals (default: warc/ next to the archive).")
def serve_command(db_path: Path, host: str, port: int, warc_dir: Path | None) -> None:
    """Browse and search the archive in Datasette (read-only: never writes the archive)."""
    from archive.site.serve import (  # (slow to import: only when the command runs)
        ServeError,
        bind_socket,
        inspect_archive,
        make_datasette,
        site_url,
    )

    try:
        archive = inspect_archive(db_path)
        sock = bind_socket(host, port)
    except ServeError as error:
        fail(str(error))
    import uvicorn

    if archive.index_problem:
        click.echo(f"Warning: {db_path}: {archive.index_problem.message}; serving it as it is", err=True)
    ds = make_datasette(db_path, immutable=archive.immutable, warc_dir=warc_dir)
    how = " (read-only folder: opened immutable, a later crawl is not seen)" if archive.immutable else ""
    click.echo(f"Serving {db_path} at {site_url(host, sock, db_path.stem)}{how}", err=True)
    uvicorn.Server(uvicorn.Config(ds.app(), log_level="warning")).run(sockets=[sock])
