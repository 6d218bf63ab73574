"""The one spider: crawls every source of the registry from its feeds, sitemaps and listings.

Run by ``pressarchive crawl`` (which passes ``Source`` objects) or by
``scrapy crawl releases [-a sources_file=FILE] [-a ids=a,b]``. Discovery
parsing lives in :mod:`crawler.discovery`; cleaning and storage in
``pipelines/``. Stats are namespaced per source (``pressarchive/<id>/...``)
and become the ``crawl_runs`` rows.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from urllib.parse import urlsplit

import scrapy
from scrapy import signals
from scrapy.exceptions import IgnoreRequest
from scrapy.http import TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.gz import gunzip
from twisted.internet.error import DNSLookupError, TCPTimedOutError, TimeoutError

from crawler import discovery
from crawler.logs import install_filters
from crawler.items import ReleaseItem
from crawler.sources import load_sources, select_sources
from crawler.urls import normalise_url

logger = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")
RELEASE_PRIORITY = 10  # fetch releases before walking further listing pages


def utcnow() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class ReleasesSpider(scrapy.Spider):
    name = "releases"

    def __init__(self, sources=None, sources_file=None, ids=None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if sources is None:
            registry = load_sources(sources_file or None)
            wanted = [i for i in (ids or "").split(",") if i]
            sources = select_sources(registry, wanted, str(sources_file or "bundled catalogue"))
        self.sources = {s.id: s for s in sources}
        self.allowed_domains = sorted({d for s in sources for d in s.allowed_domains})

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        if "sources_file" not in kwargs and "sources" not in kwargs:
            kwargs["sources_file"] = crawler.settings.get("PRESSARCHIVE_SOURCES") or None
        spider = super().from_crawler(crawler, *args, **kwargs)
        install_filters()
        crawler.settings.set("DOWNLOAD_SLOTS", spider._download_slots(crawler.settings), priority="spider")
        crawler.signals.connect(spider._count_request, signal=signals.request_reached_downloader)
        return spider

    def _download_slots(self, settings) -> dict:
        """One slot per host, one request at a time, the strictest delay of the sources on it."""
        slots = dict(settings.getdict("DOWNLOAD_SLOTS"))
        for source in self.sources.values():
            hosts = {urlsplit(u).hostname for u in source.feeds + source.sitemaps + source.listings}
            hosts |= {d for d in source.allowed_domains}
            for host in filter(None, hosts):
                previous = slots.get(host, {}).get("delay")
                delay = source.delay if previous is None else max(previous, source.delay)
                slots[host] = {"delay": delay, "concurrency": 1}
        return slots

    # -- bookkeeping -------------------------------------------------------

    def _stat(self, source_id: str, key: str, count: int = 1) -> None:
        self.crawler.stats.inc_value(f"pressarchive/{source_id}/{key}", count)

    def _count_request(self, request, spider=None):
        source_id = request.meta.get("source_id")
        if source_id:
            self._stat(source_id, "requests")

    def _request(self, url, source, role, callback, priority=0, **meta):
        meta.update(source_id=source.id, role=role)
        return scrapy.Request(url, callback=callback, errback=self.on_error, meta=meta, priority=priority)

    def _release_request(self, url, source, hints=None):
        url = normalise_url(url)
        return self._request(url, source, "release", self.parse_release, RELEASE_PRIORITY, hints=hints or {})

    def on_error(self, failure):
        request = failure.request
        source_id = request.meta.get("source_id", "?")
        role = request.meta.get("role", "page")
        if failure.check(IgnoreRequest) and not failure.check(HttpError):
            # robots.txt said no, or an offsite/duplicate filter: polite, not broken.
            self._stat(source_id, "ignored")
            logger.info("source '%s': skipped %s %s (%s)", source_id, role, request.url, failure.getErrorMessage())
            return
        if failure.check(HttpError):
            reason = f"HTTP {failure.value.response.status}"
        elif failure.check(DNSLookupError):
            reason = "DNS lookup failed"
        elif failure.check(TimeoutError, TCPTimedOutError):
            reason = "timed out"
        else:
            reason = failure.getErrorMessage() or failure.type.__name__
        self._stat(source_id, "errors")
        if role != "release":
            self._stat(source_id, "entry_errors")
        message = f"could not fetch {role} {request.url}: {reason}"
        self.crawler.stats.set_value(f"pressarchive/{source_id}/last_error", message)
        logger.error("source '%s': %s", source_id, message)

    # -- discovery ---------------------------------------------------------

    async def start(self):
        for source in self.sources.values():
            for url in source.feeds:
                yield self._request(url, source, "feed", self.parse_feed)
            for url in source.sitemaps:
                yield self._request(url, source, "sitemap", self.parse_sitemap)
            for url in source.listings:
                yield self._request(url, source, "listing", self.parse_listing, page=1)

    def _source(self, response):
        return self.sources[response.meta["source_id"]]

    def _entry_ok(self, source):
        self._stat(source.id, "entry_ok")

    def _keep(self, source, url) -> bool:
        return source.allows(url) and bool(source.article_re.search(url))

    def parse_feed(self, response):
        source = self._source(response)
        if not discovery.is_feed(response.body):
            self._stat(source.id, "errors")
            self._stat(source.id, "entry_errors")
            logger.error("source '%s': feed %s is not RSS or Atom (check `feeds` in the registry)", source.id, response.url)
            return
        self._entry_ok(source)
        for entry in discovery.parse_feed(response.body, response.url):
            if not self._keep(source, entry.url):
                continue
            hints = {"title": entry.title, "summary": entry.summary}
            if entry.date:
                hints.update(date=entry.date, date_source="feed")
            yield self._release_request(entry.url, source, hints)

    def parse_sitemap(self, response):
        source = self._source(response)
        body = response.body
        if urlsplit(response.url).path.endswith("/robots.txt"):
            urls = discovery.robots_sitemaps(body, response.url)
            if not urls:
                logger.warning("source '%s': %s names no Sitemap", source.id, response.url)
            self._entry_ok(source)
            for url in urls:
                if source.allows(url):
                    yield self._request(url, source, "sitemap", self.parse_sitemap)
            return
        if body[:2] == b"\x1f\x8b":
            try:
                body = gunzip(body, max_size=self.crawler.settings.getint("DOWNLOAD_MAXSIZE"))
            except Exception as exc:
                self._stat(source.id, "errors")
                logger.error("source '%s': sitemap %s is not valid gzip: %s", source.id, response.url, exc)
                return
        sitemap = discovery.parse_sitemap(body)
        if sitemap is None:
            self._stat(source.id, "errors")
            self._stat(source.id, "entry_errors")
            logger.error("source '%s': %s is not a sitemap (check `sitemaps` in the registry)", source.id, response.url)
            return
        self._entry_ok(source)
        for loc, lastmod in sitemap.entries:
            url = response.urljoin(loc)
            if sitemap.kind == "sitemapindex":
                if source.allows(url):
                    yield self._request(url, source, "sitemap", self.parse_sitemap)
            elif self._keep(source, url):
                yield self._release_request(url, source, {"lastmod": lastmod} if lastmod else {})

    def parse_listing(self, response):
        source = self._source(response)
        if not isinstance(response, TextResponse):
            self._stat(source.id, "errors")
            logger.error("source '%s': listing %s is not an HTML page", source.id, response.url)
            return
        self._entry_ok(source)
        links = discovery.listing_links(response, source)
        for url, _text in links.releases:
            yield self._release_request(url, source)
        page = response.meta.get("page", 1)
        if page >= source.max_pages:
            if links.pages:
                logger.info("source '%s': stopped at %d listing pages (max_pages)", source.id, page)
            return
        for url in links.pages:
            yield self._request(url, source, "listing", self.parse_listing, page=page + 1)

    # -- releases ------------------------------------------------------------

    def parse_release(self, response):
        source = self._source(response)
        content_type = response.headers.get("Content-Type", b"").decode("latin-1").strip()
        mime = content_type.split(";")[0].strip().lower()
        if response.url != response.request.url and not source.allows(response.url):
            self._stat(source.id, "offsite_redirects")
            logger.warning("source '%s': %s redirected off the source to %s; not stored",
                           source.id, response.request.url, response.url)
            return
        if mime and mime not in HTML_TYPES and not mime.startswith("text/"):
            self._stat(source.id, "skipped_non_html")
            logger.warning("source '%s': %s is %s, not HTML; not stored", source.id, response.url, mime)
            return
        charset = None
        if "charset=" in content_type.lower():
            charset = content_type.lower().split("charset=", 1)[1].split(";")[0].strip(" \"'") or None
        yield ReleaseItem(
            source_id=source.id,
            url=normalise_url(response.meta.get("redirect_urls", [response.url])[0]),
            fetched_url=response.url,
            http_status=response.status,
            content_type=mime or None,
            http_charset=charset,
            fetched_at=utcnow(),
            body=response.body,
            hints=response.meta.get("hints", {}),
        )
