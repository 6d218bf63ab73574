"""Sitemaps: every release a site wants indexed, with the date each last changed.

A source's ``sitemaps`` may name a sitemap, a sitemap index (whose children are
followed, within the source's domains), either gzipped, or a robots.txt whose
``Sitemap:`` lines are followed. A release already archived is fetched again only
when its ``<lastmod>`` is after it was last seen. A sitemap index and all its
children count as one entry point for drift.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from scrapy.utils.gz import gunzip
from scrapy.utils.sitemap import Sitemap, sitemap_urls_from_robots

from crawler.discovery.common import Discovery, iso_date

logger = logging.getLogger(__name__)


@dataclass
class SitemapResult:
    kind: str  # "sitemapindex" or "urlset"
    entries: list[tuple[str, str | None]]  # (loc, lastmod as YYYY-MM-DD)


def parse_sitemap(body: bytes) -> SitemapResult | None:
    """A sitemap or sitemap index; None when the body is not a sitemap."""
    try:
        sitemap = Sitemap(body)
    except Exception:  # noqa: BLE001 - lxml raises various errors on non-XML bodies
        return None
    if sitemap.type not in ("sitemapindex", "urlset"):
        return None
    entries = [(e["loc"], iso_date(e.get("lastmod"))) for e in sitemap if e.get("loc")]
    return SitemapResult(sitemap.type, entries)


def robots_sitemaps(body: bytes, base_url: str) -> list[str]:
    return list(sitemap_urls_from_robots(body, base_url=base_url))


class SitemapDiscovery(Discovery):
    """The ``sitemaps`` of a source."""

    def parse_sitemap(self, response):
        source = self._source(response)
        if urlsplit(response.url).path.endswith("/robots.txt"):
            yield from self._robots_sitemaps(response, source)
            return
        if response.status == 304:
            yield self._entry_fetched(response, source)
            return
        body = self._sitemap_body(response, source)
        if body is None:
            return
        sitemap = parse_sitemap(body)
        if sitemap is None:
            self._error(source.id, f"{response.url} is not a sitemap (check `sitemaps` in the registry)")
            return
        self._warn_malformed(source, "sitemap", response.url, body)
        fetched = self._entry_fetched(response, source)
        tally = self._tally(response, source, "sitemap")
        for loc, lastmod in sitemap.entries:
            url = response.urljoin(loc)
            if sitemap.kind == "sitemapindex":
                if self._follows(source, url):
                    yield self._entry_request(url, source, "sitemap", self.parse_sitemap, entry=tally.url)
                continue
            if not self._keep(source, url):
                self._miss(source, tally, url)
                continue
            tally.match()
            request, _ = self._discovered(source, url, {"lastmod": lastmod} if lastmod else {}, changed=lastmod)
            if request:
                yield request
        yield from self._links_read(source, tally, fetched)

    def _robots_sitemaps(self, response, source):
        """The ``Sitemap:`` lines of a robots.txt, each read as a sitemap of the same entry point."""
        urls = robots_sitemaps(response.body, response.url)
        if not urls:
            logger.warning("source '%s': %s names no Sitemap", source.id, response.url)
        self._stat(source.id, "entry_ok")
        entry = self._tally(response, source, "sitemap").url
        for url in urls:
            if self._follows(source, url):
                yield self._entry_request(url, source, "sitemap", self.parse_sitemap, entry=entry)

    def _sitemap_body(self, response, source) -> bytes | None:
        """The sitemap's XML, gunzipped when it came gzipped; None (an error) when that fails."""
        body = response.body
        if body[:2] != b"\x1f\x8b":
            return body
        try:
            return gunzip(body, max_size=self.crawler.settings.getint("DOWNLOAD_MAXSIZE"))
        except Exception as exc:  # noqa: BLE001 - zlib, EOF and size errors alike: a broken sitemap
            self._error(source.id, f"sitemap {response.url} is not valid gzip: {exc}")
            return None
