"""``pressarchive demo``: the built-in demo sites, served on 127.0.0.1, crawled offline.

The demo sites keep stable addresses (``crawler.demo``), so the demo run again
on the same archive adds nothing, and ``--serve`` serves them there beside the
archive, so the archive's original URLs answer.
"""

from __future__ import annotations

import sys

import click

from crawler.cli.options import check_db, db_option
from crawler.demo import DEMO_SITES_PORT


@click.command("demo")
@db_option()
@click.option("--serve/--no-serve", default=False,
              help="Afterwards serve the archive in Datasette and the demo sites at their addresses (so the "
                   "archive's original URLs answer), until Ctrl-C.")
@click.option("--port", type=click.IntRange(0, 65535), default=8001, show_default=True,
              help="With --serve: Datasette's port (0: any free port, printed).")
@click.option("--sites-port", type=click.IntRange(1, 65534), default=DEMO_SITES_PORT, show_default=True,
              help="Port of the first demo site's address (the second site has the next one). The archive's "
                   "URLs of demo releases name it: keep it the same for the same archive.")
def demo(db_path, serve, port, sites_port):
    """Crawl the built-in demo sites (served on 127.0.0.1) into the archive; offline.

    Run again on the same archive, it adds nothing: the demo sites keep their
    addresses (http://127.0.0.1:28461 and :28462 by default).
    """
    from crawler.cli.crawl import crawl_sources
    from crawler.demo import run_demo
    from crawler.demo.server import demo_bases

    check_db(db_path, write=True, create=True)
    code = run_demo(db_path, crawl_sources, sites_port=sites_port)
    sites = " and ".join(f"{base}/" for base in demo_bases(sites_port).values())
    click.echo(
        "\nLook at the result:\n"
        f"  pressarchive demo --serve --db {db_path}   the archive at http://127.0.0.1:8001/{db_path.stem}, and the\n"
        f"      demo sites at {sites}, where the archive's original URLs point\n"
        f"  pressarchive serve --db {db_path}          the archive only\n"
        f"  pressarchive export --db {db_path}         CSV snapshot in ./exports/\n"
        "Running the demo again adds nothing: the demo sites keep their addresses."
    )
    if serve and code == 0:
        serve_with_sites(db_path, port, sites_port)
    sys.exit(code)


def serve_with_sites(db_path, port: int, sites_port: int) -> None:
    """``pressarchive serve`` on the archive, with the demo sites up at their addresses meanwhile."""
    from crawler.cli.serve import serve_command
    from crawler.demo import serve_demo_sites
    from crawler.demo.server import stop_all

    servers, lines = serve_demo_sites(sites_port)
    try:
        for line in lines:
            click.echo(line, err=True)
        serve_command.main(["--db", str(db_path), "--port", str(port)], standalone_mode=True)
    finally:
        stop_all(servers)
