"""``pressarchive ingest``: the single archive writer of a distributed crawl."""

from __future__ import annotations

import logging
import sqlite3

import click

from crawler.cli.options import check_db, db_option, fail


@click.command("ingest")
@click.option("--redis", "redis_url", required=True, metavar="URL", help="Redis URL the workers push items to.")
@db_option()
@click.option("--idle-exit", type=float, default=0, show_default=True,
              help="Stop after this many seconds without items (0: run until stopped).")
@click.option("--batch", type=int, default=200, show_default=True, help="Items stored per transaction.")
def ingest_command(redis_url, db_path, idle_exit, batch):
    """Store what distributed workers (`crawl --redis URL`) crawled: the archive's single writer."""
    import redis

    from crawler.ingest import Ingester

    check_db(db_path, write=True, create=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(name)s] %(levelname)s: %(message)s")
    try:
        ingester = Ingester(redis_url, db_path)
        ingester.server.ping()
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot reach Redis at {redis_url}: {exc}") from None
    except sqlite3.Error as exc:
        fail(f"archive {db_path} cannot be written: {exc}")
    try:
        stored = ingester.run(idle_exit, batch)
    except KeyboardInterrupt:
        stored = ingester.stored
    click.echo(f"ingested {stored} items into {db_path}")
