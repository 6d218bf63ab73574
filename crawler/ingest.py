"""``pressarchive ingest``: the single writer of a distributed crawl.

Workers (``crawl --redis URL``) push cleaned items to a Redis list; this
command moves them, a batch at a time, to a ``processing`` list (Redis
``LMOVE``), stores them with the same writer as a local crawl (upserts,
versions, removals, search index), and only then drops the batch. Killed at
any moment, it loses nothing: on restart it first stores whatever is left in
``processing`` (storing an item twice is harmless: the second time it is
"unchanged"). Counts go to ``crawl_runs`` as they are stored; a worker's
``run_finished`` message closes its rows.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

from archive.items import EntryFetch
from archive.runs import OUTCOMES, add_outcomes, run_row_ids, run_started
from archive.schema import CRAWL_RUNS_COLUMNS
from archive.writer import RUN_COUNTS, ArchiveWriter, run_status
from crawler.sources import Source
from pipelines.queue import ITEMS_KEY, PROCESSING_KEY, connect, decode

logger = logging.getLogger(__name__)

# Worker stats that are text (the drift verdict and sample): NULL, not 0, when a worker has none.
TEXT_STATS = tuple(key for key in RUN_COUNTS if CRAWL_RUNS_COLUMNS.get(key) is str)


class Ingester:
    def __init__(self, url: str, db_path: Path):
        self.server = connect(url)
        self.db_path = db_path
        self.writer = ArchiveWriter(db_path, cache_mb=128)  # the single writer of many workers: bulk batches
        self.entries: dict[tuple[str, str], list[EntryFetch]] = {}
        self.stored = 0
        self.runs_closed = False  # since the watches last ran
        self.watched_at = 0  # self.stored when the watches last ran

    def take_batch(self, size: int) -> list[bytes]:
        leftover = self.server.lrange(PROCESSING_KEY, 0, -1)
        if leftover:
            return leftover  # a previous ingester took these and may not have stored them
        first = self.server.blmove(ITEMS_KEY, PROCESSING_KEY, 1, "LEFT", "RIGHT")
        if first is None:
            return []
        batch = [first]
        while len(batch) < size:
            message = self.server.lmove(ITEMS_KEY, PROCESSING_KEY, "LEFT", "RIGHT")
            if message is None:
                break
            batch.append(message)
        return batch

    def store(self, messages: list[bytes]) -> None:
        items: list[tuple[str, object]] = []
        for message in messages:
            kind, run_id, payload = decode(message)
            if kind in ("release", "check"):
                items.append((run_id, payload))
                continue
            self._store_items(items)
            items = []
            if kind == "entry":
                self.entries.setdefault((run_id, payload.source_id), []).append(payload)
            elif kind == "run_started":
                self._start_run(run_id, payload)
            elif kind == "run_finished":
                self._finish_run(run_id, payload)
        self._store_items(items)

    def _store_items(self, items) -> None:
        by_run: dict[str, list] = {}
        for run_id, item in items:
            by_run.setdefault(run_id, []).append(item)
        for run_id, group in by_run.items():
            before = Counter(self.writer.counts)
            self.writer.write(group)
            delta = self.writer.counts - before
            add_outcomes(self.writer.db, run_id, delta)
            self.stored += len(group)

    def _start_run(self, run_id, payload) -> None:
        if run_started(self.writer.db, run_id):
            return
        sources = [Source.from_row(row) for row in payload["sources"]]
        self.writer.sources.update({s.id: s for s in sources})
        self.writer.start_runs(run_id, sources, payload["started"])

    def _finish_run(self, run_id, payload) -> None:
        rows = run_row_ids(self.writer.db, run_id)
        for source_id, stats in payload["sources"].items():
            if source_id not in rows:
                continue
            stored = self.writer.db["crawl_runs"].get(rows[source_id])
            counts = {key: stats.get(key) or stored.get(key) or (None if key in TEXT_STATS else 0)
                      for key in RUN_COUNTS}
            for key in OUTCOMES:
                counts[key] = stored.get(key) or 0
            # Only the seeding worker fetches entry points; the others cannot fail at them.
            entry_ok = stats.get("entry_ok", 0) if payload.get("seed", True) else 1
            status = run_status(payload["reason"], entry_ok, counts["errors"])
            message = stats.get("last_error")
            self.writer.finish_run(rows[source_id], source_id, counts, status, message, payload["finished"],
                                   self.entries.pop((run_id, source_id), []))
        self.runs_closed = True

    def run_watches(self) -> None:
        """Saved searches (crawler/cli/watch.py) after a worker's run closed, and before the ingester
        exits when anything was stored since they last ran; errors never stop the ingester."""
        if self.stored == self.watched_at and not self.runs_closed:
            return
        from crawler.cli.watch import after_crawl

        after_crawl(self.db_path)
        self.runs_closed, self.watched_at = False, self.stored

    def run(self, idle_exit: float, batch: int = 200) -> int:
        idle_since = time.monotonic()
        while True:
            messages = self.take_batch(batch)
            if not messages:
                if idle_exit and time.monotonic() - idle_since >= idle_exit:
                    self.run_watches()
                    return self.stored
                continue
            self.store(messages)
            self.server.delete(PROCESSING_KEY)  # stored and committed: the batch can go
            if self.runs_closed:  # a worker's run ended: the watches see what it crawled
                self.run_watches()
            idle_since = time.monotonic()
