"""Hand cleaned items to the archive's single writer through a Redis list.

Used instead of the store pipeline by distributed workers (``crawl --redis``).
Each message is JSON: ``{"type": ..., "run_id": ..., "data": {...}}`` with
types ``run_started`` (the worker's sources), ``release``, ``check``,
``entry`` (HTTP validators) and ``run_finished`` (the worker's per-source
counts, and the drift verdict and sample of the entry points it read). Raw
bodies are not sent: the worker's WARC files keep them.
``pressarchive ingest`` (crawler/ingest.py) reads the list.
"""

from __future__ import annotations

import dataclasses
import json

import redis
from scrapy import signals

from archive.clock import now_iso
from archive.items import EntryFetch, ReleaseCheck, ReleaseItem

# Redis keys of a distributed crawl (the frontier's own are crawler/middlewares/distributed.py's).
PREFIX = "pressarchive"
ITEMS_KEY = f"{PREFIX}:items"  # cleaned items, for `pressarchive ingest`
PROCESSING_KEY = f"{PREFIX}:items:processing"  # the batch the ingester is storing
LEASES_KEY = f"{PREFIX}:inflight"  # requests in flight, by worker (leases end when their items are here)


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def release(server, lease: str | None) -> None:
    """End a request's lease: what its response produced is in the item list (or nothing was)."""
    if lease:
        server.hdel(LEASES_KEY, lease)


TYPES = {ReleaseItem: "release", ReleaseCheck: "check", EntryFetch: "entry"}
CLASSES = {name: cls for cls, name in TYPES.items()}
WORKER_STATS = ("requests", "errors", "empty", "not_modified", "rechecked", "discovered", "warc_bytes", "entry_ok",
                "refused", "warnings", "links_seen", "links_unmatched", "drift", "unmatched_sample")


def encode(item, run_id: str) -> str:
    data = dataclasses.asdict(item)
    data.pop("body", None)
    data.pop("lease", None)
    data.pop("minhash", None)  # (numbers, not JSON: the ingester signs the text itself)
    return json.dumps({"type": TYPES[type(item)], "run_id": run_id, "data": data}, ensure_ascii=False)


def decode(message: bytes | str) -> tuple[str, str, object]:
    payload = json.loads(message)
    kind, data = payload["type"], payload["data"]
    if kind in CLASSES:
        return kind, payload["run_id"], CLASSES[kind](**data)
    return kind, payload["run_id"], data


class RedisItemPipeline:
    def __init__(self, crawler):
        self.crawler = crawler
        self.server = connect(crawler.settings.get("REDIS_URL"))
        self.run_id = crawler.settings.get("PRESSARCHIVE_RUN_ID") or now_iso()
        self.started = None
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    @property
    def sources(self):
        return getattr(self.crawler.spider, "sources", {})

    def _push(self, kind, data):
        self.server.rpush(ITEMS_KEY, json.dumps({"type": kind, "run_id": self.run_id, "data": data},
                                                ensure_ascii=False))

    def open_spider(self):
        self.started = now_iso()
        self._push("run_started", {"started": self.started,
                                   "sources": [dict(s.as_row(), enabled=s.enabled) for s in self.sources.values()]})

    def process_item(self, item):
        if type(item) in TYPES:
            self.server.rpush(ITEMS_KEY, encode(item, self.run_id))
            release(self.server, item.lease)  # the item is safe in the list: the request is done
        return item

    def spider_closed(self, spider, reason):
        stats = self.crawler.stats
        self._push("run_finished", {
            "finished": now_iso(), "reason": reason,
            "seed": self.crawler.settings.getbool("PRESSARCHIVE_SEED"),
            "sources": {
                sid: dict({k: stats.get_value(f"pressarchive/{sid}/{k}", 0) for k in WORKER_STATS},
                          last_error=stats.get_value(f"pressarchive/{sid}/last_error"))
                for sid in self.sources
            },
        })
