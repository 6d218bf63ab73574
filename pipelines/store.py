"""The crawl's side of storing: batches cleaned items into the archive's writer, and logs the run.

:class:`StorePipeline` hands items to :class:`archive.writer.ArchiveWriter` (the one writer
of the archive, which ``pressarchive ingest`` uses too) in batches of ``ARCHIVE_BATCH_SIZE``,
and at the end of the run turns the crawl's stats into one ``crawl_runs`` row per source.

A batch the archive refuses (a full disk, ``ARCHIVE_MAX_BYTES``, a file gone
read-only) is neither stored nor counted as stored: its releases are errors of
their sources (``not_stored`` in ``crawl_runs``), the crawl stops with one log
line, and the next crawl fetches them again. A second Ctrl-C/SIGTERM
(``abort_now``) stores the waiting batch before the process stops.

Settings: ``ARCHIVE_DB``, ``ARCHIVE_BATCH_SIZE``, ``ARCHIVE_MAX_BYTES``, ``PRESSARCHIVE_RECHECK_HOURS``.
"""

from __future__ import annotations

import logging
import sqlite3

from scrapy import signals

from archive.clock import now_iso
from archive.items import EntryFetch
from archive.writer import RUN_COUNTS, ArchiveWriter, run_status

logger = logging.getLogger(__name__)

# A signal (Scrapy's signal manager): the process is about to stop without a graceful shutdown
# (a second Ctrl-C or SIGTERM, crawler/runner.py); store what is waiting and close the runs now.
abort_now = object()

class StorePipeline:
    """The crawl's side of the writer: batches items, turns stats into crawl_runs rows."""

    def __init__(self, crawler):
        self.crawler = crawler
        settings = crawler.settings
        self.db_path = settings.get("ARCHIVE_DB")
        self.batch_size = max(1, settings.getint("ARCHIVE_BATCH_SIZE"))
        hours = settings.getlist("PRESSARCHIVE_RECHECK_HOURS")
        self.schedule = tuple(float(h) for h in hours)
        self.pending = []
        self.entry_fetches: dict[str, list[EntryFetch]] = {}
        self.writer = None
        self.run_rows = {}
        self.failure: str | None = None  # why the archive refused a write, once it has
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(self.abort, signal=abort_now)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    @property
    def sources(self):
        return getattr(self.crawler.spider, "sources", {})

    def open_spider(self):
        self.run_id = self.crawler.settings.get("PRESSARCHIVE_RUN_ID") or now_iso()
        try:
            self.writer = ArchiveWriter(self.db_path, self.schedule, self.sources,
                                        max_bytes=self.crawler.settings.getint("ARCHIVE_MAX_BYTES"))
            self.run_rows = self.writer.start_runs(self.run_id, self.sources.values(), now_iso())
        except (sqlite3.Error, OSError) as exc:
            if self.writer is not None:
                self.writer.close()
                self.writer = None
            self._write_failed(exc, [])
            return
        logger.info("archive: writing to %s (run %s)", self.db_path, self.run_id)

    def process_item(self, item):
        if isinstance(item, EntryFetch):
            self.entry_fetches.setdefault(item.source_id, []).append(item)
            return item
        if self.failure is not None:
            self._not_stored([item])
            return item
        self.pending.append(item)
        if len(self.pending) >= self.batch_size:
            self.flush()
        return item

    def close_spider(self):
        self.flush()

    def flush(self):
        if not self.pending or self.writer is None:
            return
        items, self.pending = self.pending, []
        try:
            self.writer.write(items)
        except (sqlite3.Error, OSError) as exc:
            self._write_failed(exc, items)
            return
        logger.debug("archive: stored a batch of %d items", len(items))

    def _write_failed(self, exc, items):
        """The archive refused a batch (a full disk, a read-only or broken file): nothing of it is
        stored, so nothing of it is counted as stored; every item is an error of its source, and
        the crawl stops, as every later write would fail the same way. The next crawl fetches
        these releases again: they are not in the archive, and a run with errors keeps no feed
        or listing validators."""
        first = self.failure is None
        if first:
            self.failure = f"archive {self.db_path} could not be written: {exc}"
            self.crawler.stats.set_value("pressarchive/store_failure", self.failure)
            logger.error("%s; stopping the crawl (the releases fetched but not stored are fetched "
                         "again by the next crawl)", self.failure)
        self._not_stored(items)
        if first and self.crawler.engine is not None and self.crawler.engine.running:
            from twisted.internet import reactor

            # Not from inside the item chain: the engine closes the spider on its own turn.
            reactor.callLater(0, self._close_spider_failed)

    def _close_spider_failed(self):
        from scrapy.utils.defer import deferred_from_coro

        engine = self.crawler.engine
        if engine is not None and engine.running and engine.spider is not None:
            deferred_from_coro(engine.close_spider_async(reason="archive_write_failed"))

    def _not_stored(self, items):
        stats = self.crawler.stats
        stats.inc_value("pressarchive/not_stored", len(items))
        for item in items:
            source_id = getattr(item, "source_id", None)
            if source_id:
                stats.inc_value(f"pressarchive/{source_id}/errors")
                stats.inc_value(f"pressarchive/{source_id}/not_stored")
                stats.set_value(f"pressarchive/{source_id}/last_error", self.failure)

    def spider_closed(self, spider, reason):
        if self.writer is None:
            return
        self.flush()
        self._finish_runs(reason)

    def abort(self, reason: str):
        """Store what waits in the batch and close the run rows now, before the process stops
        without a graceful shutdown (a second Ctrl-C or SIGTERM, see crawler/runner.py)."""
        if self.writer is None:
            return
        self.flush()
        self._finish_runs(reason)

    def _finish_runs(self, reason):
        stats = self.crawler.stats
        if self.failure is not None:
            reason = "archive_write_failed"
        for source_id, run_row in self.run_rows.items():
            counts = {key: stats.get_value(f"pressarchive/{source_id}/{key}", 0) for key in RUN_COUNTS}
            counts.update({key: self.writer.counts[(source_id, key)]
                           for key in ("new", "changed", "unchanged", "removed", "restored")})
            status = run_status(reason, stats.get_value(f"pressarchive/{source_id}/entry_ok", 0), counts["errors"])
            counts["newest_seen"] = stats.get_value(f"pressarchive/{source_id}/newest")
            message = stats.get_value(f"pressarchive/{source_id}/last_error")
            if reason != "finished":
                message = f"crawl ended early ({reason})" + (f"; {message}" if message else "")
            if self.failure is not None:
                message = f"{self.failure}; {counts['not_stored']} fetched releases not stored"
            try:
                self.writer.finish_run(run_row, source_id, counts, status, message, now_iso(),
                                       self.entry_fetches.get(source_id, []))
            except (sqlite3.Error, OSError) as exc:  # the run row stays 'running': the CLI says why
                if self.failure is None:
                    self.failure = f"archive {self.db_path} could not be written: {exc}"
                    self.crawler.stats.set_value("pressarchive/store_failure", self.failure)
                logger.error("source '%s': the run could not be recorded: %s", source_id, exc)
        self.writer.close()
        self.writer = None
