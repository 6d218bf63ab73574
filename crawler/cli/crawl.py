"""``pressarchive crawl``: the sources into the archive (and :func:`crawl_sources`, which ``demo`` uses)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from crawler.cli.options import (
    EXIT_LOCKED,
    EXIT_SOURCE_FAILED,
    check_db,
    chosen_sources,
    contact_option,
    db_option,
    fail,
    sources_option,
)


@click.command("crawl")
@click.argument("source_ids", nargs=-1)
@sources_option
@db_option()
@contact_option
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default="INFO",
              show_default=True, help="How much goes to the log file (and to stderr with --verbose).")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path),
              help="The full log, rotated at 10 MB, 5 older files kept (FILE.1 ...). "
                   "[default: the archive's path + .log, e.g. archive.db.log]")
@click.option("-v", "--verbose", is_flag=True,
              help="Print the full log on stderr too (Scrapy's start-up report included), instead of the "
                   "progress table in a terminal, or of only warnings and errors without one.")
@click.option("--backfill", is_flag=True,
              help="Walk every listing page (up to max_pages), not only up to the first page of known releases.")
@click.option("--no-warc", is_flag=True, help="Do not write the raw capture (WARC files under warc/ next to the archive).")
@click.option("--redis", "redis_url", metavar="URL",
              help="Run as a distributed worker sharing the frontier in this Redis; items go to `pressarchive ingest`.")
@click.option("--seed", is_flag=True, help="With --redis: start a new frontier with the sources' start requests.")
@click.option("--idle-exit", type=float, default=30, show_default=True,
              help="With --redis: stop after the shared queue has been empty this many seconds (0: never).")
def crawl(source_ids, sources_file, db_path, contact, log_level, log_file, verbose, backfill, no_warc, redis_url,
          seed, idle_exit):
    """Crawl SOURCE_IDS (default: every enabled source) into the archive.

    Incremental: only new or changed feed/sitemap entries, listings until a
    page of known releases, conditional GET, and rechecks of known releases
    on a decaying schedule (edits and removals are recorded, never deleted).

    Exit codes: 0 every source reached; 1 a source failed or the crawl was
    interrupted (SIGINT/SIGTERM finish what is in flight first); 2 usage or
    registry error; 3 another crawl is writing the same archive.

    Output: in a terminal, a live table of the sources (state, requests, new,
    changed, removed, errors); without one (cron), warnings and errors on
    stderr only. Then one summary line per source on stdout. The full log
    is in the log file (--log-file).
    """
    if not redis_url:
        check_db(db_path, write=True, create=True)
    selected = chosen_sources(sources_file, source_ids)
    overrides = {"PRESSARCHIVE_BACKFILL": backfill, "WARC_ENABLED": not no_warc}
    if seed and not redis_url:
        fail("--seed needs --redis URL")
    if redis_url:
        from crawler.middlewares.distributed import redis_overrides

        overrides.update(redis_overrides(redis_url, seed, idle_exit))
    code = crawl_sources(selected, db_path, contact=contact, log_level=log_level, log_file=log_file,
                         overrides=overrides, lock=not redis_url, verbose=verbose)
    sys.exit(code)


def crawl_sources(selected, db_path, lock=True, verbose=False, **options) -> int:
    """Crawl ``selected`` into ``db_path`` and print one summary line per source; return the exit code.

    The full log goes to ``--log-file`` (default ``<archive>.log``); the terminal gets the
    live table or, without one, warnings and errors (crawler/progress.py)."""
    # Imported here: Scrapy's import is slow, and only crawling needs it.
    import time
    from contextlib import nullcontext

    from archive.lock import ArchiveLocked, archive_lock
    from crawler.progress import CrawlOutput, default_log_path, terminal
    from crawler.runner import ArchiveError, build_settings, run_crawl

    if lock:  # a distributed worker does not write the archive (the ingester does): no check, no lock
        check_db(db_path, write=True, create=True)
    settings = build_settings(db_path, **options)
    log_path = Path(options.get("log_file") or default_log_path(db_path))
    output = CrawlOutput(log_path, verbose=verbose, console=terminal())
    started = time.monotonic()
    try:
        with archive_lock(db_path) if lock else nullcontext():
            rows = run_crawl(selected, settings, output)
    except ArchiveLocked as exc:
        fail(str(exc), EXIT_LOCKED)
    except ArchiveError as exc:  # refused before any request (e.g. SQLite: a read-only database)
        fail(str(exc))
    if settings.getbool("PRESSARCHIVE_DISTRIBUTED"):
        click.echo(f"worker {settings.get('PRESSARCHIVE_WORKER_ID')} done; items are in Redis for `pressarchive ingest`")
        _where_the_log_is(output, started)
        return 0
    failed = [r for r in rows if r["status"] in ("failed", "interrupted")]
    for row in rows:
        if row["new"] is None:  # the run row could not be closed (a full disk): no figure is known
            click.echo(f"{row['source_id']}: {row['status']} (its figures could not be written to the archive; "
                       "see the error above)")
            continue
        click.echo(
            f"{row['source_id']}: {row['status']} ({row['new']} new, {row['changed']} changed, "
            f"{row['unchanged']} unchanged, {row['removed']} removed, {row['errors']} errors, "
            f"{row['requests']} requests)"
        )
    stored_nothing = {row["message"].split(";")[0] for row in rows if row.get("not_stored")}
    for message in sorted(stored_nothing):  # a full disk, a file gone read-only: say it, not only count it
        click.echo(f"Error: {message}; {sum(r['not_stored'] or 0 for r in rows)} fetched releases were not "
                   "stored (the next crawl fetches them again)", err=True)
    if rows:  # the runs are closed: the watches see everything this crawl stored
        from crawler.cli.watch import after_crawl

        after_crawl(db_path)
    click.echo(f"Archive: {db_path}")
    _where_the_log_is(output, started)
    return EXIT_SOURCE_FAILED if failed or not rows else 0


def _where_the_log_is(output, started: float) -> None:
    """In a terminal: how long the crawl took and where its full log is (cron mail stays the summary)."""
    import time
    from datetime import timedelta

    if output.console is not None:
        took = timedelta(seconds=round(time.monotonic() - started))
        click.echo(f"Log: {output.log_path} (the full log; the crawl took {took})")
