"""Run the ``releases`` spider in this process for a list of sources.

Used by ``pressarchive crawl`` and ``pressarchive demo``. Twisted's reactor
cannot be restarted, so this runs once per process.

Stopping: the first SIGINT/SIGTERM lets what is in flight finish (Scrapy's
graceful stop). A second one stops at once, as Scrapy's does, but first the
releases already fetched and cleaned are stored and every run row is closed
as ``interrupted`` (:class:`ArchivingCrawlerProcess`), so nothing fetched is
lost and no run stays ``running``.

What the terminal shows: called with a :class:`crawler.progress.CrawlOutput`
(``pressarchive crawl`` and ``demo`` do), the full log goes to a rotated file next
to the archive, the terminal gets warnings and errors (or, with ``verbose``, the
full log) and, when it is a terminal, a live table of the sources
(:class:`crawler.progress.CrawlDisplay`). Called without one (``sources check``,
scripts), Scrapy logs to stderr as it always does.
"""

from __future__ import annotations

import logging
import secrets
import signal
from datetime import datetime, timezone

from scrapy.crawler import CrawlerProcess
from scrapy.settings import Settings
from scrapy.utils.ossignal import install_shutdown_handlers, signal_names

from archive.clock import now_iso
from archive.runs import close_unfinished, run_rows
from crawler import __version__
from crawler.spiders.releases import ReleasesSpider
from pipelines.store import abort_now

logger = logging.getLogger(__name__)


def build_settings(db_path, contact=None, log_level="INFO", log_file=None, overrides=None) -> Settings:
    settings = Settings()
    settings.setmodule("crawler.settings", priority="project")
    settings.set("ARCHIVE_DB", str(db_path), priority="cmdline")
    if contact:
        settings.set("PRESSARCHIVE_CONTACT", contact, priority="cmdline")
        settings.set(
            "USER_AGENT", f"pressarchive/{__version__} (+{contact}; archive of official statements)", priority="cmdline"
        )
    settings.set("LOG_LEVEL", log_level, priority="cmdline")
    if log_file:
        settings.set("LOG_FILE", str(log_file), priority="cmdline")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    settings.set("PRESSARCHIVE_RUN_ID", f"{stamp}-{secrets.token_hex(3)}", priority="cmdline")
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and key in settings:
            value = {**settings.getdict(key), **value}  # add to component dicts, do not replace them
        settings.set(key, value, priority="cmdline")
    return settings


class ArchivingCrawlerProcess(CrawlerProcess):
    """Scrapy's CrawlerProcess, whose forced stop (a second signal) stores first."""

    display = None  # a CrawlDisplay, told when a first signal starts the graceful stop
    stopped_by: str | None = None  # the name of the signal that stopped the crawl

    def _signal_shutdown(self, signum, _):
        self.stopped_by = self.stopped_by or signal_names.get(signum, str(signum))
        if self.display is not None:
            self.display.stopping = True
        super()._signal_shutdown(signum, _)

    def _signal_kill(self, signum, _):
        from twisted.internet import reactor

        install_shutdown_handlers(signal.SIG_IGN)
        reactor.callFromThread(self._abort, signum)

    def _abort(self, signum):
        logger.info("Received %s twice, storing what was fetched and stopping now", signal_names.get(signum, signum))
        for crawler in list(self.crawlers):
            crawler.signals.send_catch_log(signal=abort_now, reason=f"shutdown ({signal_names.get(signum, signum)} twice)")
        self._stop_reactor()


class ArchiveError(Exception):
    """The archive cannot be opened for writing (not SQLite, read-only, a full disk...)."""


def prepare_archive(db_path) -> None:
    """Create or upgrade the archive before any request is made, so that an archive that
    cannot be written stops the crawl with one message instead of a crawl that stores nothing."""
    import sqlite3

    from archive.schema import open_archive
    from archive.search_index import ensure_search

    try:
        db = open_archive(db_path)
        try:
            ensure_search(db)
        finally:
            db.close()
    except (sqlite3.Error, OSError) as exc:
        raise ArchiveError(f"archive {db_path} cannot be written: {exc}") from None


def run_crawl(sources, settings: Settings, output=None) -> list[dict]:
    """Crawl ``sources``; return this run's ``crawl_runs`` rows.

    ``output`` (a :class:`crawler.progress.CrawlOutput`) says where the log goes and
    whether a live table is drawn; None leaves logging to Scrapy (stderr).

    Raises :class:`ArchiveError` before crawling when the archive cannot be
    written. A row still open after a stop signal (one that came while the
    archive was being opened, before the store pipeline could close it) is
    closed as ``interrupted``; a row the crawl could not close (the archive
    refused writes later, e.g. a full disk) is returned as ``failed`` with the reason.
    """
    if not settings.getbool("PRESSARCHIVE_DISTRIBUTED"):
        prepare_archive(settings.get("ARCHIVE_DB"))
    display = None
    if output is not None:
        settings.set("LOG_INSTALL_ROOT_HANDLER", False, priority="cmdline")
        display = _display(output, settings)
    process = ArchivingCrawlerProcess(settings)
    handlers = []
    if output is not None:
        from scrapy.utils.log import log_scrapy_info

        from crawler.progress import route_logs

        handlers = route_logs(settings, output.log_path, output.console if display else None, output.verbose)
        log_scrapy_info(settings)  # logged by CrawlerProcess before these handlers were there: to the file
        logger.info("pressarchive crawl: run %s, archive %s", settings.get("PRESSARCHIVE_RUN_ID"),
                    settings.get("ARCHIVE_DB"))
    crawler = process.create_crawler(ReleasesSpider)
    if display is not None:
        display.attach(crawler, [source.id for source in sources])
        process.display = display
    process.crawl(crawler, sources=sources)
    try:
        if display is not None:
            display.start()
        process.start()
    finally:
        if display is not None:
            display.stop()
        if handlers:
            from crawler.progress import unroute_logs

            unroute_logs(handlers)
    failure = crawler.stats.get_value("pressarchive/store_failure")
    if process.stopped_by and not failure:
        # A signal that came while the archive was being opened can stop the crawl before the
        # store pipeline closes its runs: they were interrupted, and the next run walks them in full.
        close_unfinished(settings.get("ARCHIVE_DB"), settings.get("PRESSARCHIVE_RUN_ID"), "interrupted",
                         f"crawl ended early (shutdown by {process.stopped_by}, before the run was recorded)",
                         now_iso())
    rows = run_rows(settings.get("ARCHIVE_DB"), settings.get("PRESSARCHIVE_RUN_ID"))
    for row in rows:
        if row["status"] == "running":
            row.update(status="failed", message=failure or "the crawl stopped before this run was recorded")
    return rows


def _display(output, settings: Settings):
    """The live table, when ``output`` has a terminal for it; its components are switched on here.

    Not for a distributed worker: it takes requests from a queue other workers empty too, and
    what is new or changed is decided by ``pressarchive ingest``. Per-source "done" needs
    Scrapy's own scheduler (counted); under another one, sources show "crawling" to the end.
    """
    if output.console is None or output.verbose or settings.getbool("PRESSARCHIVE_DISTRIBUTED"):
        return None
    from crawler.progress import CrawlDisplay

    if settings.get("SCHEDULER") == "scrapy.core.scheduler.Scheduler":
        settings.set("SCHEDULER", "crawler.middlewares.progress.SourceCountingScheduler", priority="cmdline")
    middlewares = {**settings.getdict("SPIDER_MIDDLEWARES"), "crawler.middlewares.progress.StartTracker": 10}
    settings.set("SPIDER_MIDDLEWARES", middlewares, priority="cmdline")
    return CrawlDisplay(output.console, settings.get("ARCHIVE_DB"), output.log_path,
                        settings.getint("ARCHIVE_BATCH_SIZE"))
