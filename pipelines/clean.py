"""The cleaning step of the crawl: a Scrapy pipeline that hands each fetched release to a
pool of worker processes and fills its cleaned fields.

What a worker does with a page (decode; extract text, title, date and language; refuse a
page with no main text) is :mod:`pipelines.cleaning`. A page that yields no main text is
dropped with one log line and counted (``pressarchive/<source>/empty``), never stored as
an empty release; so is a PDF without a text layer.

Extraction costs 20-50 ms a page and Scrapy's reactor runs on one core, so the
work runs in a pool of worker processes (``CLEAN_WORKERS``, default: one per
CPU; 0 = clean on the reactor thread, for debugging). Only the body and a few
fields cross to a worker; the cleaned fields come back. A worker that dies
(a crash in lxml, the OOM killer) does not stop the crawl: the pool is
recreated, the page is tried once more, and a page that kills a worker twice
is counted as an error. The pool starts with the first page to clean and is shut
down when the spider closes.

Settings: ``CLEAN_WORKERS``, ``CLEAN_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from scrapy import signals
from scrapy.exceptions import DropItem

from archive.items import ReleaseItem
from pipelines.cleaning import NoText, _init_worker, clean_for_archive

logger = logging.getLogger(__name__)

# What the forkserver imports before it forks a worker: everything a page needs, so that an
# import is never counted in a page's CLEAN_TIMEOUT and no worker imports it again.
WORKER_PRELOAD = ["pipelines.cleaning", "pipelines.extraction", "archive.search_index", "archive.families"]


class CleanTimeout(Exception):
    """A page whose cleaning took longer than ``CLEAN_TIMEOUT`` seconds."""


async def _started(future, poll: float = 0.02) -> None:
    """Wait until a worker has taken ``future``'s page (or it is done): a page queued behind others,
    or behind a worker that is still starting, has not begun its CLEAN_TIMEOUT yet."""
    while not future.running() and not future.done():
        await asyncio.sleep(poll)


class CleanPipeline:
    def __init__(self, crawler):
        self.crawler = crawler
        workers = crawler.settings.get("CLEAN_WORKERS")
        self.workers = (os.cpu_count() or 1) if workers in (None, "") else int(workers)
        self.pool: ProcessPoolExecutor | None = None
        self.generation = 0  # bumped each time a broken pool is replaced
        self.timeout = crawler.settings.getfloat("CLEAN_TIMEOUT") or None
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    # -- the pool --------------------------------------------------------------

    def start_pool(self) -> None:
        """Start the pool (the first page to clean does, :meth:`_run`). Its workers start as pages
        come: a page's CLEAN_TIMEOUT counts from when a worker takes it (:func:`_started`), never
        a worker's start."""
        # forkserver: workers start from a clean interpreter, not a fork of the
        # running reactor and its threads.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(WORKER_PRELOAD)
        self.pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker,
                                        initargs=(os.getpid(),))
        self.generation += 1

    def open_spider(self):
        """Nothing starts here: a crawl that finds nothing to clean (feeds and pages unchanged,
        a site that is down) starts no process, and the others start theirs with the first page."""

    def close_spider(self):
        self._shutdown()

    def spider_closed(self, spider, reason):
        self._shutdown()

    def _kill_pool(self) -> None:
        pool, self.pool = self.pool, None
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def _shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    # -- items -----------------------------------------------------------------

    def _languages(self, source_id):
        spider = self.crawler.spider
        source = getattr(spider, "sources", {}).get(source_id)
        return list(source.languages) if source else None

    async def _run(self, item: ReleaseItem, args: tuple) -> dict:
        if self.workers <= 0:
            return clean_for_archive(*args)
        for attempt in (1, 2):
            if self.pool is None:
                self.start_pool()
            generation = self.generation
            future = self.pool.submit(clean_for_archive, *args)
            try:
                await _started(future)  # CLEAN_TIMEOUT is the page's own time, not its wait in the queue
                return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.timeout)
            except asyncio.TimeoutError:
                # A page no cleaner should take this long on (trafilatura is quadratic in the links of
                # one paragraph: 100,000 links would take half an hour): its worker is stopped, the
                # pool replaced, and the pages the other workers held are cleaned again.
                if generation == self.generation and self.pool is not None:
                    self._kill_pool()
                raise CleanTimeout(f"cleaning took more than {self.timeout:g} s (CLEAN_TIMEOUT)") from None
            except BrokenProcessPool:
                if generation == self.generation and self.pool is not None:  # first to notice: replace it
                    logger.warning("source '%s': a cleaning worker died while cleaning %s; restarting the pool",
                                   item.source_id, item.url)
                    self.pool.shutdown(wait=False, cancel_futures=True)
                    self.pool = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def process_item(self, item):
        if not isinstance(item, ReleaseItem):
            return item  # checks and fetch records have nothing to clean
        args = (item.body, item.fetched_url, item.content_type, item.http_charset, item.fetched_at,
                item.hints or {}, self._languages(item.source_id))
        try:
            cleaned = await self._run(item, args)
        except NoText as exc:
            self.crawler.stats.inc_value(f"pressarchive/{item.source_id}/empty")
            logger.warning("source '%s': %s in %s; not stored", item.source_id, exc, item.url)
            raise DropItem(f"{exc} in {item.url}", log_level="DEBUG") from None
        except BrokenProcessPool:
            self._error(item, "the cleaning worker crashed twice on this page")
        except CleanTimeout as exc:
            self._error(item, str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad page must not stop the crawl
            self._error(item, f"{type(exc).__name__}: {exc}")
        for note in cleaned.pop("notes"):
            self.crawler.stats.inc_value(f"pressarchive/{item.source_id}/warnings")
            logger.warning("source '%s': %s in %s; stored", item.source_id, note, item.url)
        for name, value in cleaned.items():
            setattr(item, name, value)
        return item

    def _error(self, item, reason: str):
        self.crawler.stats.inc_value(f"pressarchive/{item.source_id}/errors")
        logger.error("source '%s': could not clean %s: %s", item.source_id, item.url, reason)
        raise DropItem(f"extraction failed for {item.url}", log_level="DEBUG")
