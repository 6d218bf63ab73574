"""Where each source of a running crawl stands: the crawl's side of the live progress display.

One spider crawls every source at once, so "is source X finished?" has no answer in
Scrapy's stats. A source is *finished* when none of its requests is waiting in the
scheduler, none is being downloaded or scraped (a response stays in the engine until
its callback's output, the next requests included, has been handled), and no start
request of it can still come. Three small parts keep that exact:

- :class:`SourceCountingScheduler`, Scrapy's own scheduler counting the requests of
  each source it holds (``SCHEDULER``);
- :class:`StartTracker`, a spider middleware that sees the start requests go by: the
  spider yields each source's start requests together, so once a request of a later
  source (or the end) has come, an earlier source has no start request left;
- :class:`SourceProgress`, which reads those, the engine's requests in progress, the
  crawl's per-source stats (``pressarchive/<id>/requests`` and ``errors``: the numbers
  that become ``crawl_runs``) and the store pipeline's counts of what it has written
  (new, changed, removed: counted when a batch is committed, as ``crawl_runs`` counts them).

:func:`crawler.runner.run_crawl` turns these on only when a progress display is
shown (:mod:`crawler.progress`): a distributed worker takes requests from a shared
queue that other workers empty too, and cannot say when a source is finished.
Reading the counts costs a few dictionary lookups per source, four times a second.
"""

from __future__ import annotations

import weakref
from collections import Counter
from dataclasses import dataclass

from scrapy import signals
from scrapy.core.scheduler import Scheduler

from archive.writer import run_status

_TRACKERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def tracker_of(crawler) -> SourceProgress:
    """The crawl's :class:`SourceProgress` (one per crawler, made on first use)."""
    if crawler not in _TRACKERS:
        _TRACKERS[crawler] = SourceProgress(crawler)
    return _TRACKERS[crawler]


class SourceCountingScheduler(Scheduler):
    """Scrapy's scheduler, counting the requests it holds per source (``meta['source_id']``)."""

    @classmethod
    def from_crawler(cls, crawler):
        scheduler = super().from_crawler(crawler)
        tracker_of(crawler).queued = scheduler.queued = Counter()
        return scheduler

    def enqueue_request(self, request) -> bool:
        stored = super().enqueue_request(request)
        if stored:
            self.queued[request.meta.get("source_id")] += 1
        return stored

    def next_request(self):
        request = super().next_request()
        if request is not None:
            source_id = request.meta.get("source_id")
            # A request restored from a JOBDIR was never counted in: never below zero.
            self.queued[source_id] = max(0, self.queued[source_id] - 1)
        return request


class StartTracker:
    """Spider middleware: notes whose start requests have all been yielded."""

    def __init__(self, crawler):
        self.tracker = tracker_of(crawler)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    async def process_start(self, start):
        async for request_or_item in start:
            meta = getattr(request_or_item, "meta", None)
            if meta is not None and meta.get("source_id"):
                self.tracker.start_seen(meta["source_id"])
            yield request_or_item
        self.tracker.start_done = True


@dataclass
class SourceState:
    source_id: str
    state: str  # waiting, crawling, done, failed
    requests: int = 0
    new: int = 0
    changed: int = 0
    removed: int = 0
    errors: int = 0


class SourceProgress:
    """Per-source state and counts of one crawl, read on demand (:meth:`states`)."""

    def __init__(self, crawler):
        self.crawler = crawler
        self.queued: Counter | None = None  # the scheduler's counts, when it is SourceCountingScheduler
        self.started: set[str] = set()  # sources whose start requests have begun
        self.last_started: str | None = None
        self.start_complete: set[str] = set()  # sources with no start request left to come
        self.start_done = False
        self._writer = None  # the StorePipeline's ArchiveWriter, found on first use
        self.closed = False  # the spider has closed: nothing of any source is left to do
        crawler.signals.connect(self._spider_closed, signal=signals.spider_closed)

    def _spider_closed(self, spider=None, reason=None):
        self.closed = True

    def start_seen(self, source_id: str) -> None:
        if source_id != self.last_started and self.last_started is not None:
            self.start_complete.add(self.last_started)
        self.started.add(source_id)
        self.last_started = source_id

    def _in_progress(self) -> Counter | None:
        """Requests of each source in the engine (downloading, or their response being scraped)."""
        engine = self.crawler.engine
        slot = getattr(engine, "_slot", None)
        requests = getattr(slot, "inprogress", None)
        if requests is None:
            return None
        return Counter(request.meta.get("source_id") for request in list(requests))

    def _stored(self) -> Counter:
        """The store pipeline's counts of written outcomes ((source_id, outcome) -> n).

        Read from its writer each time, the writer kept once found: a batch the archive
        refuses puts the writer's counts back to what they were (a copy kept here would go
        stale), and the pipeline lets go of its writer when the runs are closed, after the
        last batch, when the final counts are the ones ``crawl_runs`` got."""
        if self._writer is None:
            from pipelines.store import StorePipeline

            manager = getattr(getattr(self.crawler.engine, "scraper", None), "itemproc", None)
            store = next((p for p in getattr(manager, "middlewares", ()) if isinstance(p, StorePipeline)), None)
            self._writer = getattr(store, "writer", None)
        return self._writer.counts if self._writer is not None else Counter()

    def _finished(self, source_id: str, in_progress: Counter | None) -> bool:
        if self.closed:
            return True
        if self.queued is None or in_progress is None:
            return False  # not knowable: "crawling" until the crawl ends
        no_more_start = self.start_done or source_id in self.start_complete
        return no_more_start and not self.queued[source_id] and not in_progress[source_id]

    def states(self, source_ids) -> list[SourceState]:
        stats = self.crawler.stats
        stored = self._stored()
        in_progress = self._in_progress()
        rows = []
        for source_id in source_ids:
            def stat(key, source_id=source_id):
                return (stats.get_value(f"pressarchive/{source_id}/{key}", 0) or 0) if stats else 0

            row = SourceState(source_id, "waiting", stat("requests"),
                              stored[(source_id, "new")], stored[(source_id, "changed")],
                              stored[(source_id, "removed")], stat("errors"))
            if source_id in self.started or row.requests:
                row.state = "crawling"
                if self._finished(source_id, in_progress):
                    failed = run_status("finished", stat("entry_ok"), row.errors) == "failed"
                    row.state = "failed" if failed else "done"
            rows.append(row)
        return rows
