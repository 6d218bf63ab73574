"""Store cleaned releases in the SQLite archive (sqlite-utils), and log the run.

Upserts by normalised URL: a release seen again with the same content hash
only gets ``last_seen`` moved; a changed one is updated in place (history of
versions is kept by a later stage). Writes are batched in transactions
(``ARCHIVE_BATCH_SIZE``) and the full-text index is updated in the same
transaction. At the end of the crawl one ``crawl_runs`` row per source records
requests, new, changed, unchanged, empty and errors, and a status.

Settings: ``ARCHIVE_DB``, ``ARCHIVE_BATCH_SIZE``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from scrapy import signals

from pipelines import search_index
from pipelines.schema import open_archive

logger = logging.getLogger(__name__)

CLEANED_FIELDS = (
    "title", "published", "date_source", "language", "text", "word_count", "content_hash",
    "canonical_url", "encoding", "extractor",
)


def utcnow() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class StorePipeline:
    def __init__(self, crawler):
        self.crawler = crawler
        self.db_path = crawler.settings.get("ARCHIVE_DB")
        self.batch_size = max(1, crawler.settings.getint("ARCHIVE_BATCH_SIZE", 25))
        self.pending = []
        self.db = None
        self.run_rows = {}
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    @property
    def sources(self):
        return getattr(self.crawler.spider, "sources", {})

    def open_spider(self):
        self.db = open_archive(self.db_path)
        search_index.ensure_search(self.db)
        started = utcnow()
        self.run_id = self.crawler.settings.get("PRESSARCHIVE_RUN_ID") or started
        with self.db.conn:
            for source in self.sources.values():
                self.db["sources"].upsert(source.as_row(), pk="id")
                cursor = self.db.execute(
                    "insert into crawl_runs (run_id, source_id, started, status) values (?, ?, ?, 'running')",
                    [self.run_id, source.id, started],
                )
                self.run_rows[source.id] = cursor.lastrowid
        logger.info("archive: writing to %s (run %s)", self.db_path, self.run_id)

    def process_item(self, item):
        self.pending.append(item)
        if len(self.pending) >= self.batch_size:
            self.flush()
        return item

    def close_spider(self):
        self.flush()

    def flush(self):
        if not self.pending or self.db is None:
            return
        items, self.pending = self.pending, []
        touched = []
        with self.db.conn:
            for item in items:
                outcome, release_id = self._upsert(item)
                self.crawler.stats.inc_value(f"pressarchive/{item.source_id}/{outcome}")
                self.crawler.stats.inc_value(f"archive/{outcome}")
                if outcome != "unchanged":
                    touched.append(release_id)
            if touched:
                search_index.index_releases(self.db, touched)
        logger.debug("archive: stored a batch of %d releases", len(items))

    def _upsert(self, item) -> tuple[str, int]:
        row = self.db.execute(
            "select id, content_hash, title from releases where url = ?", [item.url]
        ).fetchone()
        values = {field: getattr(item, field) for field in CLEANED_FIELDS}
        values.update(
            fetched_url=item.fetched_url,
            http_status=item.http_status,
            content_type=item.content_type,
            year=int(item.published[:4]) if item.published else None,
            last_seen=item.fetched_at,
        )
        if row is None:
            source = self.sources.get(item.source_id)
            values.update(
                source_id=item.source_id,
                url=item.url,
                summary=item.hints.get("summary"),
                country=source.country if source else None,
                kind=source.kind if source else None,
                first_seen=item.fetched_at,
            )
            columns = ", ".join(f"[{k}]" for k in values)
            marks = ", ".join("?" for _ in values)
            cursor = self.db.execute(f"insert into releases ({columns}) values ({marks})", list(values.values()))
            return "new", cursor.lastrowid
        release_id, old_hash, old_title = row
        if old_hash == item.content_hash and old_title == item.title:
            self.db.execute(
                "update releases set last_seen = ?, http_status = ?, fetched_url = ? where id = ?",
                [item.fetched_at, item.http_status, item.fetched_url, release_id],
            )
            return "unchanged", release_id
        assignments = ", ".join(f"[{k}] = ?" for k in values)
        self.db.execute(f"update releases set {assignments} where id = ?", [*values.values(), release_id])
        return "changed", release_id

    def spider_closed(self, spider, reason):
        if self.db is None:
            return
        self.flush()
        stats = self.crawler.stats
        finished = utcnow()
        with self.db.conn:
            for source_id, run_row in self.run_rows.items():
                counts = {
                    key: stats.get_value(f"pressarchive/{source_id}/{key}", 0)
                    for key in ("requests", "new", "changed", "unchanged", "empty", "errors")
                }
                entry_ok = stats.get_value(f"pressarchive/{source_id}/entry_ok", 0)
                if reason != "finished":
                    status = "interrupted"
                elif entry_ok == 0:
                    status = "failed"
                elif counts["errors"]:
                    status = "partial"
                else:
                    status = "ok"
                message = stats.get_value(f"pressarchive/{source_id}/last_error")
                self.db["crawl_runs"].update(
                    run_row, dict(counts, finished=finished, status=status, message=message)
                )
                logger.info(
                    "source '%s': %s: %d requests, %d new, %d changed, %d unchanged, %d without text, %d errors",
                    source_id, status, counts["requests"], counts["new"], counts["changed"],
                    counts["unchanged"], counts["empty"], counts["errors"],
                )
        self.db.close()
        self.db = None
