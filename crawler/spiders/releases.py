"""The one spider: crawls every source of the registry from its feeds, sitemaps and listings.

Run by ``pressarchive crawl`` (which passes ``Source`` objects) or by
``scrapy crawl releases [-a sources_file=FILE] [-a ids=a,b]``. Discovery
parsing lives in :mod:`crawler.discovery`, the state left by earlier crawls in
:mod:`crawler.state`; cleaning and storage in ``pipelines/``.

Incremental by default: feeds, sitemaps and listing pages are fetched with
conditional GET (a 304 ends that branch); listing pagination stops at the
first page that holds only known releases (unless ``PRESSARCHIVE_BACKFILL``
or the source's last run did not finish); feed and sitemap entries are
fetched only when new or dated after the release was last seen; known
releases are fetched again when the recheck schedule says so, which is how
edits and removals are noticed. Stats are namespaced per source
(``pressarchive/<id>/...``) and become the ``crawl_runs`` rows.

Drift (a redesign that moved the releases to URLs ``article_pattern`` no
longer matches) is counted per entry point (:class:`crawler.discovery.LinkTally`)
and recorded in the run: ``links_seen``, ``links_unmatched``, ``drift`` (the
verdict, NULL when no entry point drifts) and ``unmatched_sample``. An entry
point that drifts keeps no HTTP validators, so every run reads it in full and
reports the drift again until the registry or the site is fixed; a 304 would
otherwise make a broken source look quiet from its second run on.

Only http(s) URLs of the source's own domains are ever requested, whatever a
feed, sitemap, listing, API or page links to; :mod:`crawler.middlewares.ssrf` vets every
request again (non-public addresses only at the source's own origins,
redirects within its domains). PDFs linked from a new release are attached, at
most ``PRESSARCHIVE_MAX_ATTACHMENTS`` per release and
``PRESSARCHIVE_MAX_ATTACHMENTS_PER_RUN`` per source and run: a page linking
100,000 PDFs must not queue 100,000 downloads ahead of the listing pages.

Settings read: ``ARCHIVE_DB``, ``PRESSARCHIVE_SOURCES``, ``PRESSARCHIVE_BACKFILL``,
``PRESSARCHIVE_MAX_RECHECKS``, ``PRESSARCHIVE_FOLLOW_PDFS``, ``PRESSARCHIVE_MAX_ATTACHMENTS``,
``PRESSARCHIVE_MAX_ATTACHMENTS_PER_RUN``.
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import re
import sys
from urllib.parse import urlsplit

import scrapy
from scrapy import signals
from scrapy.exceptions import IgnoreRequest
from scrapy.http import TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.gz import gunzip
from twisted.internet.error import DNSLookupError, TCPTimedOutError, TimeoutError

from crawler import discovery
from crawler.clock import now_iso
from crawler.items import EntryFetch, ReleaseCheck, ReleaseItem
from crawler.logs import install_filters
from crawler.sources import SourceError, load_sources, select_sources
from crawler.middlewares.ssrf import OffsiteRedirect, Refused
from crawler.state import SourceState, load_state
from crawler.middlewares.throttle import NO_DELAY
from crawler.urls import is_http_url, normalise_url, scheme_twin
from pipelines import pdf

logger = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")
PDF_TYPE = "application/pdf"
RELEASE_PRIORITY = 10  # fetch releases before walking further listing pages
GONE = (404, 410)


class ReleasesSpider(scrapy.Spider):
    name = "releases"

    def __init__(self, sources=None, sources_file=None, ids=None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if sources is None:
            sources = _registry_sources(sources_file, ids)
        self.sources = {s.id: s for s in sources}
        self.allowed_domains = sorted({d for s in sources for d in s.allowed_domains})
        self.state: dict[str, SourceState] = {}
        self.requested: set[str] = set()  # release URLs queued in this run
        self.links: dict[str, dict[str, discovery.LinkTally]] = {}  # source id -> entry point -> its links

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        if "sources_file" not in kwargs and "sources" not in kwargs:
            kwargs["sources_file"] = crawler.settings.get("PRESSARCHIVE_SOURCES") or None
        spider = super().from_crawler(crawler, *args, **kwargs)
        install_filters()
        slots = spider._download_slots(crawler.settings)
        crawler.settings.set("PRESSARCHIVE_HOST_DELAYS", {h: v["delay"] for h, v in slots.items()}, priority="spider")
        if crawler.settings.getbool("PRESSARCHIVE_DISTRIBUTED"):
            # The shared Redis key spaces requests to a host across workers (crawler.middlewares.distributed);
            # a local delay on top would separate taking the turn from sending the request.
            slots = {host: dict(slot, delay=0) for host, slot in slots.items()}
        crawler.settings.set("DOWNLOAD_SLOTS", slots, priority="spider")
        crawler.signals.connect(spider._count_request, signal=signals.request_reached_downloader)
        crawler.signals.connect(spider._dropped, signal=signals.request_dropped)
        spider.release_maxsize = crawler.settings.getint("RELEASE_MAXSIZE", 0)
        spider.backfill = crawler.settings.getbool("PRESSARCHIVE_BACKFILL")
        spider.check = crawler.settings.getbool("PRESSARCHIVE_CHECK")  # `sources check`: one sample per source
        spider.sampled = set()
        spider.follow_pdfs = crawler.settings.getbool("PRESSARCHIVE_FOLLOW_PDFS", True)
        spider.max_attachments = crawler.settings.getint("PRESSARCHIVE_MAX_ATTACHMENTS", 5)
        spider.attachment_budget = dict.fromkeys(
            spider.sources, crawler.settings.getint("PRESSARCHIVE_MAX_ATTACHMENTS_PER_RUN", 200))
        spider.state = load_state(
            crawler.settings.get("ARCHIVE_DB"), spider.sources, now_iso(),
            crawler.settings.getint("PRESSARCHIVE_MAX_RECHECKS", 1000),
        )
        crawler.signals.connect(spider._open_drift_stats, signal=signals.spider_opened)
        return spider

    def _download_slots(self, settings) -> dict:
        """One slot per host, one request at a time, the strictest delay of the sources on it."""
        slots = dict(settings.getdict("DOWNLOAD_SLOTS"))
        for source in self.sources.values():
            hosts = {urlsplit(u).hostname for u in source.endpoint_urls}
            hosts |= set(source.allowed_domains)
            for host in filter(None, hosts):
                previous = slots.get(host, {}).get("delay")
                delay = max(source.delay if previous is None else max(previous, source.delay), NO_DELAY)
                slots[host] = {"delay": delay, "concurrency": 1}
        return slots

    # -- bookkeeping -------------------------------------------------------

    def _stat(self, source_id: str, key: str, count: int = 1) -> None:
        self.crawler.stats.inc_value(f"pressarchive/{source_id}/{key}", count)

    def _count_request(self, request, spider=None):
        source_id = request.meta.get("source_id")
        if source_id:
            self._stat(source_id, "requests")

    def _dropped(self, request, spider=None):
        """A redirect the duplicate filter dropped: a loop, or a page this run already fetched."""
        source_id, chain = request.meta.get("source_id"), request.meta.get("redirect_urls")
        if not source_id or not chain:
            return
        if request.url in chain:
            self._stat(source_id, "errors")
            logger.error("source '%s': redirect loop at %s (%s); not stored", source_id, chain[0],
                         " -> ".join([*chain, request.url]))
        else:
            logger.info("source '%s': %s redirects to %s, already fetched in this run", source_id, chain[0],
                        request.url)

    def _deep(self, source) -> bool:
        """Walk every listing page: asked for, or the last run of this source did not finish."""
        if self.check:
            return False
        return self.backfill or not self.state[source.id].complete

    def _paging(self) -> bool:
        return not self.check

    def _request(self, url, source, role, callback, priority=0, conditional=None, dont_filter=False, **meta):
        meta.update(source_id=source.id, role=role)
        headers = {}
        etag, modified = conditional or (None, None)
        if etag:
            headers["If-None-Match"] = etag
        if modified:
            headers["If-Modified-Since"] = modified
        if headers:
            meta["handle_httpstatus_list"] = [304, *meta.get("handle_httpstatus_list", [])]
        return scrapy.Request(url, callback=callback, errback=self.on_error, meta=meta, priority=priority,
                              headers=headers, dont_filter=dont_filter)

    def _entry_request(self, url, source, role, callback, dont_filter=False, **meta):
        conditional = None if self._deep(source) else self.state[source.id].validators.get(url)
        return self._request(url, source, role, callback, conditional=conditional, dont_filter=dont_filter, **meta)

    def _release_request(self, url, source, hints=None, recheck=None):
        """A request for a release page; ``recheck`` = (etag, last_modified) of a known release."""
        url = normalise_url(source.canonical(url))
        if url in self.requested or scheme_twin(url) in self.requested:
            return None
        if (hints or {}).get("date"):
            self.crawler.stats.max_value(f"pressarchive/{source.id}/newest", hints["date"])
        if self.check:
            if source.id in self.sampled:
                return None
            self.sampled.add(source.id)
        self.requested.add(url)
        meta = {"hints": hints or {}}
        if self.release_maxsize:
            meta["download_maxsize"] = self.release_maxsize  # a release is never 50 MB of HTML
        if recheck is not None:
            meta.update(recheck=True, handle_httpstatus_list=list(GONE))
            self._stat(source.id, "rechecked")
        # Rechecks skip Scrapy's duplicate filter so that a redirect to a page this run
        # already fetched (a removed release sent to the listing) still reaches parse_release.
        return self._request(url, source, "release", self.parse_release, RELEASE_PRIORITY, conditional=recheck,
                             dont_filter=recheck is not None, **meta)

    def on_error(self, failure):
        request = failure.request
        source_id = request.meta.get("source_id", "?")
        role = request.meta.get("role", "page")
        if failure.check(OffsiteRedirect):
            return self._offsite_redirect(request, source_id, role)
        if failure.check(Refused):
            return None  # crawler.middlewares.ssrf logged it and counted it
        polite = failure.check(IgnoreRequest) and not failure.check(HttpError) and any(
            word in failure.getErrorMessage() for word in ("robots.txt", "offsite", "uplicate"))
        if polite:
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
        return None

    def _offsite_redirect(self, request, source_id, role):
        """A redirect out of the source's domains, refused by crawler.middlewares.ssrf (which logged it).

        A known release sent elsewhere is no longer at its address: removed, as when a
        recheck lands on a page that is not a release. A feed, sitemap, listing or API
        sent elsewhere is a broken entry point: an error of the run.
        """
        first = request.meta["redirect_urls"][0]
        if request.meta.get("recheck"):
            status = (request.meta.get("redirect_reasons") or [None])[0]
            return [ReleaseCheck(source_id, normalise_url(first), "removed", now_iso(),
                                 status if isinstance(status, int) else None, f"redirected to {request.url}")]
        if role not in ("release", "attachment"):
            self._stat(source_id, "errors")
            self._stat(source_id, "entry_errors")
            self.crawler.stats.set_value(f"pressarchive/{source_id}/last_error",
                                         f"{role} {first} redirects off-site to {request.url}")
        return None

    # -- discovery ---------------------------------------------------------

    async def start(self):
        if self.settings.getbool("PRESSARCHIVE_DISTRIBUTED"):
            if not self.settings.getbool("PRESSARCHIVE_SEED"):
                return  # a worker only takes requests from the shared queue
            from crawler.middlewares.distributed import connect, reset_frontier

            reset_frontier(connect(self.settings.get("REDIS_URL")), self.name)
        for source in self.sources.values():
            for url, etag, modified in [] if self.check else self.state[source.id].due:
                request = self._release_request(url, source, recheck=(etag, modified))
                if request:
                    yield request
            # Start URLs skip the duplicate filter: two sources may share an endpoint, each needs it.
            for url in source.feeds:
                yield self._entry_request(url, source, "feed", self.parse_feed, dont_filter=True)
            for url in source.sitemaps:
                yield self._entry_request(url, source, "sitemap", self.parse_sitemap, dont_filter=True)
            for url in source.listings:
                yield self._entry_request(url, source, "listing", self.parse_listing, page=1, dont_filter=True)
            for index in range(len(source.json_api)):
                yield self._api_request(source, index, 1)
            for base in source.wp_rest:
                yield self._wp_request(source, base, 1)

    def _source(self, response):
        return self.sources[response.meta["source_id"]]

    def _entry_fetched(self, response, source):
        """Count a reachable entry point; its validators go to the store for the next conditional GET."""
        self._stat(source.id, "entry_ok")
        headers = response.headers
        fetched = EntryFetch(
            source_id=source.id, url=response.meta.get("redirect_urls", [response.url])[0],
            role=response.meta.get("role", "entry"),
            fetched_at=now_iso(), http_status=response.status,
            etag=_header(headers, b"ETag"), last_modified=_header(headers, b"Last-Modified"),
        )
        if response.status == 304:
            self._stat(source.id, "not_modified")
        return fetched

    def _open_drift_stats(self, spider=None):
        """Text, not counts: NULL in crawl_runs unless a link misses (the store reads 0 for unset stats)."""
        for source_id in self.sources:
            for key in ("drift", "unmatched_sample"):
                self.crawler.stats.set_value(f"pressarchive/{source_id}/{key}", None)

    def _tally(self, response, source, role) -> discovery.LinkTally:
        """The links of the entry point ``response`` belongs to (its further pages carry ``entry``)."""
        root = response.meta.get("entry") or response.meta.get("redirect_urls", [response.url])[0]
        tallies = self.links.setdefault(source.id, {})
        if root not in tallies:
            tallies[root] = discovery.LinkTally(role, root)
        return tallies[root]

    def _miss(self, source, tally, url) -> None:
        """A link of an entry point that is not a release of this source (unless article_exclude
        says so on purpose): evidence of drift."""
        if is_http_url(url) and not discovery.vetoed(source, source.canonical(url)):
            tally.miss(url)

    def _links_read(self, source, tally, fetched):
        """After an entry page: the run's link counts, drift verdict and sample go to the stats,
        then the page's validators, or none when its entry point drifts (see the module doc)."""
        tallies = self.links[source.id].values()
        verdict, sample = discovery.drift_report(tallies, name_urls=len(source.endpoint_urls) > 1)
        stats = self.crawler.stats
        stats.set_value(f"pressarchive/{source.id}/links_seen", sum(t.seen for t in tallies))
        stats.set_value(f"pressarchive/{source.id}/links_unmatched", sum(t.unmatched for t in tallies))
        stats.set_value(f"pressarchive/{source.id}/drift", verdict)
        stats.set_value(f"pressarchive/{source.id}/unmatched_sample",
                        json.dumps(sample, ensure_ascii=False) if sample else None)
        if not tally.drifting:
            yield fetched
            return
        yield dataclasses.replace(fetched, etag=None, last_modified=None)
        if fetched.url != tally.url and not tally.forgotten:
            tally.forgotten = True  # the entry point itself (a sitemap index, the first listing page)
            yield dataclasses.replace(fetched, url=tally.url, etag=None, last_modified=None)

    def closed(self, reason):
        for source_id, tallies in self.links.items():
            verdict, sample = discovery.drift_report(tallies.values())
            if verdict:
                logger.warning("source '%s': drift: %s (e.g. %s); check article_pattern", source_id, verdict,
                               ", ".join(sample[:3]))

    def _warn_malformed(self, source, role, url, body):
        problem = discovery.xml_error(body)
        if problem:
            self._stat(source.id, "warnings")
            logger.warning("source '%s': %s %s is not well-formed XML (%s); read what could be read",
                           source.id, role, url, problem)

    def _keep(self, source, url) -> bool:
        """A release URL of this source: http(s), on its domains, matching its article pattern."""
        url = source.canonical(url)
        return is_http_url(url) and source.allows(url) and bool(source.article_re.search(url))

    @staticmethod
    def _follows(source, url) -> bool:
        """A feed, sitemap or listing URL this source may request: http(s), on its domains."""
        return is_http_url(url) and source.allows(url)

    def _known_since(self, source, url) -> str | None:
        known, url = self.state[source.id].known, normalise_url(source.canonical(url))
        return known.get(url) or known.get(scheme_twin(url))

    def parse_feed(self, response):
        source = self._source(response)
        if response.status != 304 and not discovery.is_feed(response.body):
            self._stat(source.id, "errors")
            self._stat(source.id, "entry_errors")
            logger.error("source '%s': feed %s is not RSS or Atom (check `feeds` in the registry)", source.id, response.url)
            return
        fetched = self._entry_fetched(response, source)
        if response.status == 304:
            yield fetched
            return
        self._warn_malformed(source, "feed", response.url, response.body)
        tally = self._tally(response, source, "feed")
        for entry in discovery.parse_feed(response.body, response.url):
            if not self._keep(source, entry.url):
                self._miss(source, tally, entry.url)
                continue
            tally.match()
            self._stat(source.id, "discovered")
            hints = {"title": entry.title, "summary": entry.summary, "category": entry.category}
            if entry.date:
                hints.update(date=entry.date, date_source="feed")
            seen = self._known_since(source, entry.url)
            if seen is None:
                request = self._release_request(entry.url, source, hints)
            elif entry.updated and entry.updated > seen[:10]:
                request = self._release_request(entry.url, source, hints, recheck=(None, None))
            else:
                continue
            if request:
                yield request
        yield from self._links_read(source, tally, fetched)

    def parse_sitemap(self, response):
        source = self._source(response)
        body = response.body
        if urlsplit(response.url).path.endswith("/robots.txt"):
            urls = discovery.robots_sitemaps(body, response.url)
            if not urls:
                logger.warning("source '%s': %s names no Sitemap", source.id, response.url)
            self._stat(source.id, "entry_ok")
            entry = self._tally(response, source, "sitemap").url
            for url in urls:
                if self._follows(source, url):
                    yield self._entry_request(url, source, "sitemap", self.parse_sitemap, entry=entry)
            return
        if response.status == 304:
            yield self._entry_fetched(response, source)
            return
        if body[:2] == b"\x1f\x8b":
            try:
                body = gunzip(body, max_size=self.crawler.settings.getint("DOWNLOAD_MAXSIZE"))
            except Exception as exc:  # noqa: BLE001 - zlib, EOF and size errors alike: a broken sitemap
                self._stat(source.id, "errors")
                logger.error("source '%s': sitemap %s is not valid gzip: %s", source.id, response.url, exc)
                return
        sitemap = discovery.parse_sitemap(body)
        if sitemap is not None:
            self._warn_malformed(source, "sitemap", response.url, body)
        if sitemap is None:
            self._stat(source.id, "errors")
            self._stat(source.id, "entry_errors")
            logger.error("source '%s': %s is not a sitemap (check `sitemaps` in the registry)", source.id, response.url)
            return
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
            self._stat(source.id, "discovered")
            seen = self._known_since(source, url)
            if seen is None:
                request = self._release_request(url, source, {"lastmod": lastmod} if lastmod else {})
            elif lastmod and lastmod > seen[:10]:
                request = self._release_request(url, source, {"lastmod": lastmod}, recheck=(None, None))
            else:
                continue
            if request:
                yield request
        yield from self._links_read(source, tally, fetched)

    def parse_listing(self, response):
        source = self._source(response)
        if response.status == 304:
            yield self._entry_fetched(response, source)
            return
        if not isinstance(response, TextResponse):
            self._stat(source.id, "errors")
            logger.error("source '%s': listing %s is not an HTML page", source.id, response.url)
            return
        fetched = self._entry_fetched(response, source)
        links = discovery.listing_links(response, source)
        self._stat(source.id, "discovered", len(links.releases))
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
            if self._known_since(source, url) is None:
                fresh += 1
                request = self._release_request(url, source)
                if request:
                    yield request
        page = response.meta.get("page", 1)
        if links.releases and not fresh and not self._deep(source):
            logger.info("source '%s': %s lists only known releases; not paging further", source.id, response.url)
            return
        if not self._paging():
            return
        if page >= source.max_pages:
            if links.pages:
                logger.info("source '%s': stopped at %d listing pages (max_pages)", source.id, page)
            return
        for url in links.pages:
            if self._follows(source, url):
                yield self._entry_request(url, source, "listing", self.parse_listing, page=page + 1, entry=entry)

    # -- JSON APIs and WordPress REST --------------------------------------------

    def _api_request(self, source, index, page, entry=None):
        api = source.json_api[index]
        size = api.get("size", 50)

        def fill(template):
            return template.replace("{page}", str(page)).replace("{offset}", str((page - 1) * size)).replace(
                "{size}", str(size))

        request = self._entry_request(fill(api["url"]), source, "json_api", self.parse_json_api,
                                      dont_filter=page == 1, api_index=index, page=page, entry=entry)
        if api.get("method", "GET").upper() == "POST":
            headers = dict(request.headers.to_unicode_dict(), **{"Content-Type": "application/json"})
            request = request.replace(method="POST", body=fill(api.get("body", "")), headers=headers)
        return request

    def _wp_request(self, source, base, page, entry=None):
        url = f"{base}{'&' if '?' in base else '?'}per_page=100&page={page}"
        # WordPress answers 400 past the last page.
        return self._entry_request(url, source, "wp_rest", self.parse_wp_rest, dont_filter=page == 1,
                                   wp_base=base, page=page, handle_httpstatus_list=[400], entry=entry)

    def _json(self, response, source, role):
        try:
            return json.loads(response.body)
        except ValueError:
            self._stat(source.id, "errors")
            self._stat(source.id, "entry_errors")
            logger.error("source '%s': %s %s did not answer JSON (check `%s` in the registry)",
                         source.id, role, response.url, role)
            return None

    def _discovered(self, source, url, hints, recheck_if_newer=None):
        """A release found by an API: request it when new (or dated after it was last seen)."""
        self._stat(source.id, "discovered")
        seen = self._known_since(source, url)
        if seen is None:
            return self._release_request(url, source, hints), True
        if recheck_if_newer and recheck_if_newer > seen[:10]:
            return self._release_request(url, source, hints, recheck=(None, None)), False
        return None, False

    def parse_json_api(self, response):
        source = self._source(response)
        if response.status == 304:
            yield self._entry_fetched(response, source)
            return
        data = self._json(response, source, "json_api")
        if data is None:
            return
        fetched = self._entry_fetched(response, source)
        tally = self._tally(response, source, "json_api")
        api, page = source.json_api[response.meta["api_index"]], response.meta["page"]
        items = discovery.json_path(data, api["items"]) if api.get("items") else data
        if not isinstance(items, list):
            yield fetched
            self._stat(source.id, "errors")
            logger.error("source '%s': json_api %s has no list at '%s'", source.id, response.url, api.get("items"))
            return
        fresh = 0
        for entry in items:
            if not isinstance(entry, dict):
                continue
            if "url_field" in api:
                url = discovery.json_path(entry, api["url_field"])
            else:
                url = discovery.fill_template(api["url_template"], entry)
            if not url:
                continue
            url = source.canonical(response.urljoin(str(url)))
            if not self._keep(source, url):
                self._miss(source, tally, url)
                continue
            tally.match()
            hints = {"title": _plain(discovery.json_path(entry, api.get("title_field"))),
                     "summary": _plain(discovery.json_path(entry, api.get("summary_field")))}
            date = discovery.parse_any_date(discovery.json_path(entry, api.get("date_field")))
            if date:
                hints.update(date=date, date_source="feed")
            if "detail_url" in api:
                request, new = self._detail_request(source, api, entry, url, hints)
            else:
                request, new = self._discovered(source, url, hints)
            fresh += new
            if request:
                yield request
        total = discovery.json_path(data, api.get("total_field"))
        size = api.get("size", 50)
        more = bool(items) and page < api.get("max_pages", source.max_pages)
        if isinstance(total, (int, float)) or (isinstance(total, str) and total.isdigit()):
            more = more and page * size < int(total)
        if more and self._paging() and (fresh or self._deep(source)):
            yield self._api_request(source, response.meta["api_index"], page + 1, entry=tally.url)
        yield from self._links_read(source, tally, fetched)

    def _detail_request(self, source, api, entry, url, hints):
        """The JSON detail endpoint of a release whose own page is a JavaScript shell."""
        self._stat(source.id, "discovered")
        key = normalise_url(url)
        if self._known_since(source, url) is not None or key in self.requested:
            return None, False
        if self.check:
            if source.id in self.sampled:
                return None, False
            self.sampled.add(source.id)
        detail = discovery.fill_template(api["detail_url"], entry)
        if not detail or not is_http_url(detail):
            return None, False
        self.requested.add(key)
        return self._request(detail, source, "release", self.parse_json_detail, RELEASE_PRIORITY,
                             hints=hints, release_url=key, api_index=source.json_api.index(api)), True

    def parse_json_detail(self, response):
        source = self._source(response)
        data = self._json(response, source, "json_api")
        if data is None:
            return
        api = source.json_api[response.meta["api_index"]]
        hints = dict(response.meta.get("hints", {}))
        body = discovery.json_path(data, api["detail_body"])
        title = _plain(discovery.json_path(data, api.get("detail_title"))) or hints.get("title")
        date = discovery.parse_any_date(discovery.json_path(data, api.get("detail_date")))
        if date:
            hints.update(date=date, date_source="feed")
        if title:
            hints["title"] = title
        document = (f"<html><head><meta charset='utf-8'><title>{html.escape(title or '')}</title></head>"
                    f"<body><article><h1>{html.escape(title or '')}</h1>{body or ''}</article></body></html>")
        yield ReleaseItem(
            source_id=source.id, url=response.meta["release_url"], fetched_url=response.url,
            http_status=response.status, content_type="text/html", http_charset="utf-8",
            fetched_at=now_iso(), body=document.encode("utf-8"), hints=self._clean_hints(source, hints),
            warc=response.meta.get("warc"),
        )

    def parse_wp_rest(self, response):
        source = self._source(response)
        page = response.meta["page"]
        if response.status == 304:
            yield self._entry_fetched(response, source)
            return
        if response.status == 400:
            if page == 1:
                self._stat(source.id, "errors")
                self._stat(source.id, "entry_errors")
                logger.error("source '%s': wp_rest %s answered HTTP 400", source.id, response.url)
            return
        data = self._json(response, source, "wp_rest")
        if data is None:
            return
        fetched = self._entry_fetched(response, source)
        tally = self._tally(response, source, "wp_rest")
        fresh = 0
        for entry in data if isinstance(data, list) else []:
            url = entry.get("link") if isinstance(entry, dict) else None
            if not url or not isinstance(url, str):
                continue
            if not self._keep(source, url):
                self._miss(source, tally, url)
                continue
            tally.match()
            hints = {"title": _plain(discovery.json_path(entry, "title.rendered"))}
            date = discovery.parse_any_date(entry.get("date_gmt") or entry.get("date"))
            if date:
                hints.update(date=date, date_source="feed")
            modified = discovery.parse_any_date(entry.get("modified_gmt"))
            request, new = self._discovered(source, url, hints,
                                            recheck_if_newer=modified if modified != date else None)
            fresh += new
            if request:
                yield request
        pages = response.headers.get(b"X-WP-TotalPages")
        more = int(pages) > page if pages and pages.isdigit() else len(data) >= 100
        if more and self._paging() and page < source.max_pages and (fresh or self._deep(source)):
            yield self._wp_request(source, response.meta["wp_base"], page + 1, entry=tally.url)
        yield from self._links_read(source, tally, fetched)

    # -- releases ------------------------------------------------------------

    def parse_release(self, response):
        source = self._source(response)
        requested = response.meta.get("redirect_urls", [response.url])[0]
        url = normalise_url(requested)
        recheck = response.meta.get("recheck", False)
        if response.status == 304:
            self._stat(source.id, "not_modified")
            yield ReleaseCheck(source.id, url, "not_modified", now_iso(), 304)
            return
        if response.status in GONE:
            yield ReleaseCheck(source.id, url, "removed", now_iso(), response.status, f"HTTP {response.status}")
            return
        if response.url != requested and not self._keep(source, response.url):
            if recheck:
                yield ReleaseCheck(source.id, url, "removed", now_iso(), response.status,
                                   f"redirected to {response.url}")
                return
            self._stat(source.id, "offsite_redirects")
            logger.warning("source '%s': %s redirected to %s, which is not a release; not stored",
                           source.id, requested, response.url)
            return
        item = self._page_item(response, source, url)
        if item is None:
            return
        item.recheck = recheck
        yield item
        if item.content_type != PDF_TYPE and not recheck and self.follow_pdfs:
            yield from self._attachments(response, source, url)

    def _attachments(self, response, source, url):
        """Requests for the PDFs a new release links to ("Full statement (PDF)"), within the caps."""
        # pdf_links parses the whole page on the reactor thread: only when a PDF may be linked.
        body = response.body.lower()
        if b".pdf" not in body and b"application/pdf" not in body:
            return
        links = pdf.pdf_links(response)
        room = min(self.max_attachments, self.attachment_budget[source.id])
        taken = 0
        for index, link in enumerate(links):
            if taken >= room:
                self._attachments_capped(source, url, len(links) - index)
                return
            if self._follows(source, link) and not self._keep(source, link) and link not in self.requested:
                self.requested.add(link)
                taken += 1
                self.attachment_budget[source.id] -= 1
                yield self._request(link, source, "attachment", self.parse_attachment, RELEASE_PRIORITY,
                                    parent_url=url)

    def _attachments_capped(self, source, url, skipped):
        """One line per release whose PDFs went over a cap (the run's cap: only where it was reached)."""
        self._stat(source.id, "attachments_skipped", skipped)
        if self.attachment_budget[source.id] > 0:
            self._stat(source.id, "warnings")
            logger.warning("source '%s': %s links more PDFs than PRESSARCHIVE_MAX_ATTACHMENTS (%d); "
                           "skipped %d", source.id, url, self.max_attachments, skipped)
        elif not self.crawler.stats.get_value(f"pressarchive/{source.id}/attachments_run_cap"):
            self.crawler.stats.set_value(f"pressarchive/{source.id}/attachments_run_cap", url)
            self._stat(source.id, "warnings")
            logger.warning("source '%s': PRESSARCHIVE_MAX_ATTACHMENTS_PER_RUN (%d) reached at %s: skipped %d "
                           "PDF links there, and every PDF of later releases in this run",
                           source.id, self.crawler.settings.getint("PRESSARCHIVE_MAX_ATTACHMENTS_PER_RUN", 200),
                           url, skipped)

    def parse_attachment(self, response):
        source = self._source(response)
        item = self._page_item(response, source, normalise_url(response.meta.get("redirect_urls", [response.url])[0]))
        if item is not None:
            item.parent_url = response.meta["parent_url"]
            yield item

    @staticmethod
    def _clean_hints(source, hints: dict) -> dict:
        """Discovery hints plus the source's cleaning options, for the cleaning worker."""
        hints = dict(hints)
        if source.selectors:
            hints["selectors"] = source.selectors
        if source.date_from_url:
            hints["date_from_url"] = source.date_from_url
        return hints

    def _page_item(self, response, source, url) -> ReleaseItem | None:
        """The fetched page as an item for the pipelines, or None for a type we do not archive."""
        content_type = response.headers.get("Content-Type", b"").decode("latin-1").strip()
        mime = content_type.split(";")[0].strip().lower()
        if pdf.is_pdf(response.body, mime):
            mime = PDF_TYPE
        elif mime and mime not in HTML_TYPES and not mime.startswith("text/"):
            self._stat(source.id, "skipped_non_html")
            logger.warning("source '%s': %s is %s, neither HTML nor PDF; not stored", source.id, response.url, mime)
            return None
        charset = None
        if "charset=" in content_type.lower():
            charset = content_type.lower().split("charset=", 1)[1].split(";")[0].strip(" \"'") or None
        return ReleaseItem(
            source_id=source.id,
            url=url,
            fetched_url=response.url,
            http_status=response.status,
            content_type=mime or None,
            http_charset=charset,
            fetched_at=now_iso(),
            body=response.body,
            hints=self._clean_hints(source, response.meta.get("hints", {})),
            etag=_header(response.headers, b"ETag"),
            last_modified=_header(response.headers, b"Last-Modified"),
            warc=response.meta.get("warc"),
        )


def _plain(value) -> str | None:
    """Text of an API field that may hold HTML (WordPress titles) or entities."""
    if value is None:
        return None
    text = html.unescape(re.sub(r"<[^>]+>", "", str(value)))
    return " ".join(text.split()) or None


def _header(headers, name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value else None


def _registry_sources(sources_file, ids) -> list:
    """The sources of ``scrapy crawl releases -a sources_file=FILE -a ids=a,b``.

    A registry problem or an unknown id is one line on stderr and exit code 2, as in
    ``pressarchive crawl``: raised from here, an exception would end the crawl in a
    traceback and ``scrapy crawl`` would carry on starting the engine.
    """
    where = str(sources_file or "bundled catalogue")
    try:
        registry = load_sources(sources_file or None)
        wanted = [i.strip() for i in (ids or "").split(",") if i.strip()]
        known = {s.id for s in registry}
        unknown = [i for i in wanted if i not in known]
        if unknown:
            names = ", ".join(f"'{i}'" for i in unknown)
            raise SourceError(f"{where}: unknown source id{'s' if len(unknown) > 1 else ''} {names} "
                              f"(see `pressarchive sources`)")
        return select_sources(registry, wanted, where)
    except SourceError as exc:
        print(f"Error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
