"""Raw capture in the crawl: every response (and its request) into WARC files (archive/warc.py).

:class:`WarcCaptureMiddleware` is the Scrapy downloader middleware. It must sit
between the download handler and ``HttpCompressionMiddleware`` (590) so that it
sees bodies exactly as the server sent them; use 950::

    DOWNLOADER_MIDDLEWARES = {"crawler.middlewares.warc.WarcCaptureMiddleware": 950}

robots.txt requests made by ``RobotsTxtMiddleware`` go through the whole
downloader middleware chain too, so they are captured like feeds, sitemaps,
listings and releases. Every response that reaches it is written, including
redirects, 304s and error statuses that are later retried. Responses served by
``HttpCacheMiddleware`` (flag ``cached``) are not: they were not fetched now.

Settings: ``WARC_ENABLED`` (default True; False raises ``NotConfigured``),
``WARC_DIR`` (default: a ``warc`` folder next to ``ARCHIVE_DB``), ``WARC_MAX_SIZE``
(bytes, default 1 GB), ``WARC_PREFIX`` (default ``pressarchive``).
Stats: ``warc/records`` (responses captured), ``warc/bytes_written``,
``warc/files``, ``warc/errors`` and, for requests carrying a ``source_id``,
``pressarchive/<source_id>/warc_bytes``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

from scrapy import signals
from scrapy.exceptions import NotConfigured

from archive.warc import Headers, WarcWriter
from crawler import settings as defaults  # every default is declared once, there

logger = logging.getLogger(__name__)


def _scrapy_headers(headers) -> Headers:
    return [(name.decode("latin-1"), value.decode("latin-1"))
            for name, values in headers.items() for value in values]


class WarcCaptureMiddleware:
    """Downloader middleware writing every fetched response (and its request) to WARC files."""

    def __init__(self, crawler, writer: WarcWriter):
        self.crawler = crawler
        self.stats = crawler.stats
        self.writer = writer
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler):
        settings = crawler.settings
        if not settings.getbool("WARC_ENABLED", defaults.WARC_ENABLED):
            raise NotConfigured("WARC capture is off (WARC_ENABLED)")
        folder = settings.get("WARC_DIR") or Path(settings.get("ARCHIVE_DB", defaults.ARCHIVE_DB)).parent / "warc"
        info = {"robots": "obey" if settings.getbool("ROBOTSTXT_OBEY") else "ignore",
                "http-header-user-agent": settings.get("USER_AGENT")}
        writer = WarcWriter(Path(folder), settings.getint("WARC_MAX_SIZE", defaults.WARC_MAX_SIZE),
                            settings.get("WARC_PREFIX", defaults.WARC_PREFIX), info)
        logger.info("warc: writing raw responses to %s", folder)
        return cls(crawler, writer)

    def process_response(self, request, response):
        if "cached" in response.flags:
            return response
        latency = request.meta.get("download_latency")
        started = datetime.now(timezone.utc) - timedelta(seconds=latency or 0)
        before = self.writer.bytes_written
        files = len(self.writer.files)
        try:
            location = self.writer.write_exchange(
                response.url, _scrapy_headers(request.headers), request.method, response.status, None,
                _scrapy_headers(response.headers), response.body, response.protocol or "HTTP/1.1",
                date=started, ip_address=str(response.ip_address) if response.ip_address else None,
            )
        except OSError as exc:  # a full disk must not go unnoticed, nor stop the crawl
            self.stats.inc_value("warc/errors")
            logger.error("warc: could not write %s to %s: %s", response.url, self.writer.folder, exc)
            source_id = request.meta.get("source_id")
            if source_id:  # the release may be stored, but without its raw capture: the run is partial
                self.stats.inc_value(f"pressarchive/{source_id}/errors")
                self.stats.set_value(f"pressarchive/{source_id}/last_error",
                                     f"raw capture not written to {self.writer.folder}: {exc}")
            return response
        written = self.writer.bytes_written - before
        request.meta["warc"] = location.as_dict()
        self.stats.inc_value("warc/records")
        self.stats.inc_value("warc/bytes_written", written)
        self.stats.inc_value("warc/files", len(self.writer.files) - files)
        source_id = request.meta.get("source_id")
        if source_id:
            self.stats.inc_value(f"pressarchive/{source_id}/warc_bytes", written)
        return response

    def spider_closed(self, spider=None, reason=None):
        self.writer.close()
