"""``pressarchive demo``: the built-in demo sites, served on 127.0.0.1, crawled offline."""

from __future__ import annotations

import sys

import click

from crawler.cli.options import check_db, db_option


@click.command("demo")
@db_option()
@click.option("--serve/--no-serve", default=False, help="Start Datasette on the result afterwards.")
def demo(db_path, serve):
    """Crawl the built-in demo sites (served on 127.0.0.1) into the archive; offline."""
    from crawler.cli.crawl import crawl_sources
    from crawler.demo import run_demo

    check_db(db_path, write=True, create=True)
    code = run_demo(db_path, crawl_sources)
    click.echo(
        "\nLook at the result:\n"
        f"  pressarchive serve --db {db_path}      then open http://127.0.0.1:8001/{db_path.stem}/releases\n"
        f"  search: http://127.0.0.1:8001/{db_path.stem}/releases?_search=cyber-enabled+theft\n"
        f"  pressarchive export --db {db_path}     CSV snapshot in ./exports/"
    )
    if serve and code == 0:
        from crawler.cli.serve import serve_command

        serve_command.main(["--db", str(db_path)], standalone_mode=True)
    sys.exit(code)
