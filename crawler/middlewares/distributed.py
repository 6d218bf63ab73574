"""Distributed crawling: many workers share one frontier in Redis (scrapy-redis).

``pressarchive crawl --redis URL`` turns the crawl into a worker:

* the request queue and the duplicate filter live in Redis (scrapy-redis'
  ``Scheduler`` and ``RFPDupeFilter``), so any number of workers on any number
  of machines share one frontier and fetch each request once;
* :class:`SharedPolitenessMiddleware` keeps each source's per-host delay across
  workers: last before the download (after robots.txt), a worker must win a Redis key
  for that host (``SET NX PX delay``, plus a margin for the time the request takes to leave);
* :class:`LeaseMiddleware`, first in the chain, leases every request it takes (a Redis hash of
  in-flight requests, tied to the worker's heartbeat key). A lease ends when
  what the response produced is in the item list (``RedisItemPipeline``), or
  when it produced no item (:class:`LeaseSpiderMiddleware`), or when the
  download failed. When a worker dies, an idle worker finds its leases
  orphaned and puts those requests back on the queue, so nothing a dead worker
  held is lost (at worst a page is fetched twice; storing it twice is harmless);
* cleaned items go to a Redis list (``pipelines.queue.RedisItemPipeline``)
  instead of SQLite: ``pressarchive ingest`` is the archive's single writer;
* ``--seed`` makes a worker start a new frontier (clears the queue and the
  duplicate filter) and enqueue the start requests of the chosen sources
  once; workers without it only take requests from the queue;
* a worker ends when the shared queue has been empty, with no live leases,
  for ``--idle-exit`` seconds (0: never).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import socket
import time

import redis
from scrapy import signals
from scrapy.exceptions import DontCloseSpider, NotConfigured
from scrapy.utils.httpobj import urlparse_cached
from scrapy.utils.request import request_from_dict
from twisted.internet import task

from crawler import settings as defaults  # every default is declared once, there
from pipelines.queue import LEASES_KEY, PREFIX, connect, release

logger = logging.getLogger(__name__)

QUEUE_KEY = f"{PREFIX}:%(spider)s:requests"
DUPEFILTER_KEY = f"{PREFIX}:%(spider)s:dupefilter"
HEARTBEAT_TTL = 15  # seconds a worker counts as alive after its last heartbeat


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def redis_overrides(url: str, seed: bool, idle_exit: float) -> dict:
    """Settings that turn a crawl into a worker of the shared frontier at ``url``."""
    wid = worker_id()
    return {
        "REDIS_URL": url,
        "SCHEDULER": "scrapy_redis.scheduler.Scheduler",
        "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter",
        "SCHEDULER_QUEUE_CLASS": "scrapy_redis.queue.PriorityQueue",
        "SCHEDULER_QUEUE_KEY": QUEUE_KEY,
        "SCHEDULER_DUPEFILTER_KEY": DUPEFILTER_KEY,
        "SCHEDULER_PERSIST": True,  # the frontier outlives any one worker
        "PRESSARCHIVE_DISTRIBUTED": True,
        # A worker takes few requests at a time from the shared queue, so idle workers find work.
        "CONCURRENT_REQUESTS": 2,
        "PRESSARCHIVE_SEED": seed,
        "PRESSARCHIVE_IDLE_EXIT": idle_exit,
        "PRESSARCHIVE_WORKER_ID": wid,
        "WARC_PREFIX": f"pressarchive-{wid}",
        # Dict settings are merged into the project's (crawler.runner.build_settings).
        "ITEM_PIPELINES": {"pipelines.store.StorePipeline": None, "pipelines.queue.RedisItemPipeline": 800},
        # Leases first (before robots.txt and SSRF checks hold a request), the host's turn last
        # (after robots.txt, cookies and proxies; before the download).
        "DOWNLOADER_MIDDLEWARES": {"crawler.middlewares.distributed.LeaseMiddleware": 20,
                                   "crawler.middlewares.distributed.SharedPolitenessMiddleware": 800},
        "SPIDER_MIDDLEWARES": {"crawler.middlewares.distributed.LeaseSpiderMiddleware": 10},
        "EXTENSIONS": {"crawler.middlewares.distributed.WorkerLifecycle": 10},
    }


def reset_frontier(server: redis.Redis, spider_name: str) -> None:
    server.delete(QUEUE_KEY % {"spider": spider_name}, DUPEFILTER_KEY % {"spider": spider_name}, LEASES_KEY)


# The host's key is won before the request goes through the rest of the middlewares and out
# of the socket; on a busy machine that takes tens of milliseconds longer for one worker than
# for the next, which would bring two requests closer than the delay as the site sees them.
# The key is held this much longer (at most a fifth of the delay), so the site sees the delay.
SEND_JITTER = 0.1


class _WorkerComponent:
    """What every component of a distributed worker has: the crawler, the shared Redis, the
    worker's id. Off (``NotConfigured``) in a crawl that is not distributed."""

    def __init__(self, crawler):
        settings = crawler.settings
        if not settings.getbool("PRESSARCHIVE_DISTRIBUTED"):
            raise NotConfigured
        self.crawler = crawler
        self.server = connect(settings.get("REDIS_URL"))
        self.worker = settings.get("PRESSARCHIVE_WORKER_ID")

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)


class LeaseMiddleware(_WorkerComponent):
    """A lease on every request in flight, taken first thing: a request that waits in this
    worker (for robots.txt, for its host's turn) has already left the shared queue, and a
    worker killed meanwhile must not take it to the grave."""

    def process_request(self, request):
        lease = lease_id(request)
        if lease:
            record = {"worker": self.worker, "request": request.to_dict(spider=self.crawler.spider)}
            self.server.hset(LEASES_KEY, lease, pickle.dumps(record))

    def process_exception(self, request, exception):
        release(self.server, lease_id(request))


class SharedPolitenessMiddleware(_WorkerComponent):
    """Per-host delay across workers, taken last before the download (after robots.txt: a
    request that waited for its site's robots.txt must not have spent its turn meanwhile, or
    it leaves together with the others that waited)."""

    def __init__(self, crawler):
        super().__init__(crawler)
        self.default_delay = crawler.settings.getfloat("DOWNLOAD_DELAY")

    def _delay(self, host: str) -> float:
        delays = self.crawler.settings.getdict("PRESSARCHIVE_HOST_DELAYS")
        return float(delays.get(host, self.default_delay))

    async def process_request(self, request):
        host = (urlparse_cached(request).hostname or "").lower()
        delay = self._delay(host)
        if delay > 0:
            key = f"{PREFIX}:polite:{host}"
            hold = delay + min(SEND_JITTER, delay * 0.2)
            while not self.server.set(key, self.worker, nx=True, px=max(1, int(hold * 1000))):
                wait = self.server.pttl(key)
                await asyncio.sleep(max(wait, 50) / 1000)


def lease_id(request) -> str | None:
    return f"{request.method} {request.url}" if request.meta.get("source_id") else None


class LeaseSpiderMiddleware:
    """Hands a response's lease to the items it produced, or ends it when there are none."""

    def __init__(self, crawler):
        if not crawler.settings.getbool("PRESSARCHIVE_DISTRIBUTED"):
            raise NotConfigured
        self.server = connect(crawler.settings.get("REDIS_URL"))
        crawler.signals.connect(self.item_dropped, signal=signals.item_dropped)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    async def process_spider_output_async(self, response, result):
        lease, items = lease_id(response.request), 0
        async for entry in result:
            if hasattr(entry, "lease"):
                entry.lease = lease
                items += 1
            yield entry
        if not items:
            release(self.server, lease)

    def process_spider_output(self, response, result):
        lease, items = lease_id(response.request), 0
        for entry in result:
            if hasattr(entry, "lease"):
                entry.lease = lease
                items += 1
            yield entry
        if not items:
            release(self.server, lease)

    def process_spider_exception(self, response, exception):
        release(self.server, lease_id(response.request))

    def item_dropped(self, item, response, exception, spider=None):
        release(self.server, getattr(item, "lease", None))


class WorkerLifecycle(_WorkerComponent):
    """Heartbeat, orphaned-lease recovery and the idle exit of a worker."""

    def __init__(self, crawler):
        super().__init__(crawler)
        self.idle_exit = crawler.settings.getfloat("PRESSARCHIVE_IDLE_EXIT", defaults.PRESSARCHIVE_IDLE_EXIT)
        self.idle_since = None
        self.beat = task.LoopingCall(self.heartbeat)
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_idle, signal=signals.spider_idle)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    def heartbeat(self):
        self.server.set(f"{PREFIX}:worker:{self.worker}", "alive", ex=HEARTBEAT_TTL)

    def spider_opened(self, spider):
        self.heartbeat()
        self.beat.start(HEARTBEAT_TTL / 3, now=False)
        logger.info("worker %s joined the frontier at %s", self.worker, self.crawler.settings.get("REDIS_URL"))

    def recover_orphans(self, spider) -> int:
        """Requeue requests leased by workers whose heartbeat has expired."""
        recovered = 0
        scheduler = self.crawler.engine._slot.scheduler
        for lease_id, raw in self.server.hgetall(LEASES_KEY).items():
            lease = pickle.loads(raw)
            if self.server.exists(f"{PREFIX}:worker:{lease['worker']}"):
                continue
            if self.server.hdel(LEASES_KEY, lease_id):  # only one worker wins each orphan
                request = request_from_dict(lease["request"], spider=spider)
                scheduler.queue.push(request.replace(dont_filter=True))
                recovered += 1
        if recovered:
            logger.warning("worker %s: requeued %d requests left in flight by a worker that stopped",
                           self.worker, recovered)
        return recovered

    def spider_idle(self, spider):
        if self.recover_orphans(spider):
            self.idle_since = None
            raise DontCloseSpider
        live_leases = self.server.hlen(LEASES_KEY)
        if live_leases or self.idle_exit <= 0:
            self.idle_since = None
            raise DontCloseSpider
        self.idle_since = self.idle_since or time.monotonic()
        if time.monotonic() - self.idle_since < self.idle_exit:
            raise DontCloseSpider
        logger.info("worker %s: the shared queue has been empty for %gs; stopping", self.worker, self.idle_exit)

    def spider_closed(self, spider, reason):
        if self.beat.running:
            self.beat.stop()
        # A clean stop: whatever this worker still holds was finished or will be found again.
        for lease, raw in self.server.hgetall(LEASES_KEY).items():
            if pickle.loads(raw)["worker"] == self.worker:
                self.server.hdel(LEASES_KEY, lease)
        self.server.delete(f"{PREFIX}:worker:{self.worker}")
