"""Clean a fetched release: decode, extract text, title, date and language.

Reads ``ReleaseItem.body`` and fills the cleaned fields via
:func:`pipelines.extraction.extract`. A page that yields no main text is
dropped with one log line and counted (``pressarchive/<source>/empty``), never
stored as an empty release.
"""

from __future__ import annotations

import logging
from datetime import datetime

from scrapy.exceptions import DropItem

from crawler.items import ReleaseItem
from pipelines import extraction

logger = logging.getLogger(__name__)


class CleanPipeline:
    def __init__(self, crawler):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def _languages(self, source_id):
        spider = self.crawler.spider
        source = getattr(spider, "sources", {}).get(source_id)
        return list(source.languages) if source else None

    def process_item(self, item):
        if not isinstance(item, ReleaseItem):
            return item  # checks and fetch records have nothing to clean
        fetched_at = datetime.fromisoformat(item.fetched_at.replace("Z", "+00:00"))
        try:
            result = extraction.extract(
                item.body,
                item.fetched_url,
                http_charset=item.http_charset,
                fetched_at=fetched_at,
                hints=item.hints,
                languages=self._languages(item.source_id),
            )
        except Exception as exc:  # one bad page must not stop the crawl
            self.crawler.stats.inc_value(f"pressarchive/{item.source_id}/errors")
            logger.error("source '%s': could not clean %s: %s: %s", item.source_id, item.url, type(exc).__name__, exc)
            raise DropItem(f"extraction failed for {item.url}", log_level="DEBUG") from None
        if not result.text.strip():
            self.crawler.stats.inc_value(f"pressarchive/{item.source_id}/empty")
            logger.warning("source '%s': no main text in %s; not stored", item.source_id, item.url)
            raise DropItem(f"no main text in {item.url}", log_level="DEBUG")
        item.title = result.title or item.hints.get("title")
        item.text = result.text
        item.published = result.published
        item.date_source = result.date_source
        item.language = result.language
        item.encoding = result.encoding
        item.canonical_url = result.canonical_url
        item.content_hash = extraction.content_hash(result.text)
        item.word_count = extraction.word_count(result.text)
        item.extractor = extraction.EXTRACTOR_VERSION
        return item
