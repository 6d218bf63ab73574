"""Listing pages: the "News" or "Press releases" pages of a site, page after page.

Many official sites have no feed or sitemap worth the name, only a paginated list.
On each page, links matching ``article_pattern`` are releases; the next page is found
by ``rel=next``, the source's ``pagination_pattern``, a "Next"/"下一页" link, or the
inline JavaScript pager of TRS sites (Chinese government and embassy sites:
``createPageHTML(total, current, "index", "htm")`` and ``index_1.htm``...). Paging
stops at the first page that lists only known releases (the archive already has
everything older), unless the run is deep (:class:`crawler.discovery.common.Scope`),
and at ``max_pages``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from scrapy.http import TextResponse

from crawler.discovery.common import Discovery, vetoed

logger = logging.getLogger(__name__)

# Anchor texts (lower-cased, stripped) that mean "next page" on official sites.
NEXT_TEXTS = {
    "next", "next page", "next ›", "next »", "next >", "older", "older posts", "older entries",
    "more", "›", "»", ">", ">>", "suivant", "page suivante", "weiter", "nächste seite",
    "下一页", "下页", "下一頁", "次へ", "次のページ", "다음", "siguiente", "próxima",
}
TRS_PAGES_RE = re.compile(r"createPageHTML\(\s*['\"]?(\d+)['\"]?\s*,\s*['\"]?(\d+)['\"]?\s*,\s*['\"]([^'\"]+)['\"]\s*,\s*['\"]([^'\"]+)['\"]")
TRS_COUNT_RE = re.compile(r"\bcountPage\s*=\s*['\"]?(\d+)")
TRS_INDEX_RE = re.compile(r"(?:^|/)(index)(?:_(\d+))?\.(s?html?)$")


def is_next_link(text: str, rel: str | None) -> bool:
    if rel and "next" in rel.lower().split():
        return True
    cleaned = " ".join(text.split()).lower()
    return cleaned in NEXT_TEXTS


def trs_next_page(page_url: str, html: str) -> str | None:
    """Next page of a TRS CMS listing, whose pager is written by inline JavaScript.

    TRS sites (Chinese government and embassy sites) print
    ``createPageHTML(total, current, "index", "htm")`` and name pages
    ``index.htm``, ``index_1.htm`` ... ``index_{total-1}.htm``.
    """
    total = current = None
    prefix, ext = "index", None
    match = TRS_PAGES_RE.search(html)
    if match:
        total, current = int(match.group(1)), int(match.group(2))
        prefix, ext = match.group(3), match.group(4)
    else:
        count = TRS_COUNT_RE.search(html)
        if count:
            total = int(count.group(1))
    if not total:
        return None
    path = urlsplit(page_url).path
    name_match = TRS_INDEX_RE.search(path)
    if name_match:
        current = int(name_match.group(2) or 0)
        ext = ext or name_match.group(3)
    elif path.endswith("/"):
        current = current or 0
    else:
        return None
    ext = ext or "htm"
    if current + 1 >= total:
        return None
    return urljoin(page_url, f"{prefix}_{current + 1}.{ext}")


@dataclass
class ListingLinks:
    releases: list[tuple[str, str | None]]  # (url, anchor text)
    pages: list[str]
    others: list[str] = field(default_factory=list)  # links of the source's domains that are neither


def listing_links(response, source) -> ListingLinks:
    """Release links, further listing pages and the other links of the source's domains
    (navigation, and after a redesign the releases under their new URLs) on one listing page."""
    releases, pages, others, seen = [], [], [], set()
    article_re, pagination_re = source.article_re, source.pagination_re
    for anchor in response.xpath("//a[@href] | //link[@rel][@href]"):
        href = anchor.attrib.get("href", "").strip()
        if not href or href.startswith(("javascript:", "mailto:", "tel:", "#")):
            continue
        url = response.urljoin(href).split("#", 1)[0]
        if not url.startswith(("http://", "https://")) or not source.allows(url):
            continue
        text = " ".join(anchor.xpath("string()").get("").split())
        if article_re.search(url):
            if url not in seen:
                seen.add(url)
                releases.append((url, text or None))
            continue
        rel = anchor.attrib.get("rel")
        if (pagination_re and pagination_re.search(url)) or is_next_link(text, rel):
            if url != response.url and url not in pages:
                pages.append(url)
        elif url != response.url and url not in seen and not vetoed(source, url):
            seen.add(url)
            others.append(url)
    trs = trs_next_page(response.url, response.text)
    if trs and source.allows(trs) and trs not in pages:
        pages.append(trs)
    return ListingLinks(releases, pages, [url for url in others if url not in pages])


class ListingDiscovery(Discovery):
    """The ``listings`` of a source and their further pages."""

    def parse_listing(self, response):
        source = self._source(response)
        if response.status == 304:
            yield self._entry_fetched(response, source)
            return
        if not isinstance(response, TextResponse):
            self._error(source.id, f"listing {response.url} is not an HTML page")
            return
        fetched = self._entry_fetched(response, source)
        links = listing_links(response, source)
        tally = self._tally(response, source, "listing")
        tally.match(len(links.releases))
        for url in links.others:
            self._miss(source, tally, url)
        yield from self._listing_requests(response, source, links, tally.url)
        # Last, as in the other parsers: in a distributed crawl the page's first item ends its
        # lease, and the requests it makes must be in the shared queue by then.
        yield from self._links_read(source, tally, fetched)

    def _listing_requests(self, response, source, links, entry):
        """New releases of a listing page, then its further pages (unless it lists only known ones)."""
        fresh = 0
        for url, _text in links.releases:
            request, new = self._discovered(source, url)
            fresh += new
            if request:
                yield request
        page = response.meta.get("page", 1)
        if links.releases and not fresh and not self.scope.deep(source.id):
            logger.info("source '%s': %s lists only known releases; not paging further", source.id, response.url)
            return
        if not self.scope.paging:
            return
        if page >= source.max_pages:
            if links.pages:
                logger.info("source '%s': stopped at %d listing pages (max_pages)", source.id, page)
            return
        for url in links.pages:
            if self._follows(source, url):
                yield self._entry_request(url, source, "listing", self.parse_listing, page=page + 1, entry=entry)
