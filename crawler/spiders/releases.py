"""The one spider: crawls every source of the registry from its feeds, sitemaps, listings and APIs.

Run by ``pressarchive crawl`` (which passes ``Source`` objects) or by
``scrapy crawl releases [-a sources_file=FILE] [-a ids=a,b]``. Each discovery family
is a mixin of :mod:`crawler.discovery` holding its parser and callbacks (its module
doc says how the family works); this class composes them and keeps what is the
spider's own: reading the settings, one download slot per host, the start requests
of each source, and the errback of every request. The state left by earlier crawls
comes from :mod:`archive.fetch_state`; cleaning and storage are in ``pipelines/``.

Incremental by default: entry points are fetched with conditional GET (a 304 ends
that branch), pagination stops at the first page of known releases, and known
releases are fetched again when the recheck schedule says so, which is how edits and
removals are noticed (:class:`crawler.discovery.common.Scope` decides how far a run
goes, ``sources check`` included). Stats are namespaced per source
(``pressarchive/<id>/...``) and become the ``crawl_runs`` rows, drift counts
(:class:`crawler.discovery.common.LinkTally`) included.

Only http(s) URLs of the source's own domains are ever requested, whatever a feed,
sitemap, listing, API or page links to; :mod:`crawler.middlewares.ssrf` vets every
request again (non-public addresses only at the source's own origins, redirects
within its domains).

Settings read: ``ARCHIVE_DB``, ``PRESSARCHIVE_SOURCES``, ``PRESSARCHIVE_BACKFILL``, ``PRESSARCHIVE_CHECK``,
``PRESSARCHIVE_MAX_RECHECKS``, ``PRESSARCHIVE_FOLLOW_PDFS``, ``PRESSARCHIVE_MAX_ATTACHMENTS``,
``PRESSARCHIVE_MAX_ATTACHMENTS_PER_RUN``, ``RELEASE_MAXSIZE``, ``PRESSARCHIVE_DISTRIBUTED``,
``PRESSARCHIVE_SEED``, ``REDIS_URL``, ``DOWNLOAD_SLOTS``.
"""

from __future__ import annotations

import logging
import sys
from urllib.parse import urlsplit

import scrapy
from scrapy import signals
from scrapy.exceptions import IgnoreRequest
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet.error import DNSLookupError, TCPTimedOutError, TimeoutError

from archive.clock import now_iso
from archive.fetch_state import load_state
from archive.items import ReleaseCheck
from archive.urls import normalise_url
from crawler.discovery.attachments import ReleasePages
from crawler.discovery.common import LinkTally, Scope
from crawler.discovery.feeds import FeedDiscovery
from crawler.discovery.json_api import JsonApiDiscovery
from crawler.discovery.listings import ListingDiscovery
from crawler.discovery.sitemaps import SitemapDiscovery
from crawler.discovery.wordpress import WordPressDiscovery
from crawler.logs import install_filters
from crawler.middlewares.ssrf import OffsiteRedirect, Refused
from crawler.middlewares.throttle import NO_DELAY
from crawler.sources import SourceError, load_sources, select_sources

logger = logging.getLogger(__name__)


class ReleasesSpider(FeedDiscovery, SitemapDiscovery, ListingDiscovery, JsonApiDiscovery, WordPressDiscovery,
                     ReleasePages, scrapy.Spider):
    name = "releases"

    def __init__(self, sources=None, sources_file=None, ids=None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if sources is None:
            sources = _registry_sources(sources_file, ids)
        self.sources = {s.id: s for s in sources}
        self.allowed_domains = sorted({d for s in sources for d in s.allowed_domains})
        self.state = {}  # source id -> archive.fetch_state.SourceState, loaded in from_crawler
        self.requested: set[str] = set()  # release URLs queued in this run
        self.links: dict[str, dict[str, LinkTally]] = {}  # source id -> entry point -> its links

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        if "sources_file" not in kwargs and "sources" not in kwargs:
            kwargs["sources_file"] = crawler.settings.get("PRESSARCHIVE_SOURCES") or None
        spider = super().from_crawler(crawler, *args, **kwargs)
        install_filters()
        spider._configure(crawler.settings)
        crawler.signals.connect(spider._count_request, signal=signals.request_reached_downloader)
        crawler.signals.connect(spider._dropped, signal=signals.request_dropped)
        crawler.signals.connect(spider._open_drift_stats, signal=signals.spider_opened)
        return spider

    def _configure(self, settings) -> None:
        slots = self._download_slots(settings)
        settings.set("PRESSARCHIVE_HOST_DELAYS", {h: v["delay"] for h, v in slots.items()}, priority="spider")
        if settings.getbool("PRESSARCHIVE_DISTRIBUTED"):
            # The shared Redis key spaces requests to a host across workers (crawler.middlewares.distributed);
            # a local delay on top would separate taking the turn from sending the request.
            slots = {host: dict(slot, delay=0) for host, slot in slots.items()}
        settings.set("DOWNLOAD_SLOTS", slots, priority="spider")
        self.release_maxsize = settings.getint("RELEASE_MAXSIZE")
        self.follow_pdfs = settings.getbool("PRESSARCHIVE_FOLLOW_PDFS")
        self.max_attachments = settings.getint("PRESSARCHIVE_MAX_ATTACHMENTS")
        self.attachment_budget = dict.fromkeys(self.sources, settings.getint("PRESSARCHIVE_MAX_ATTACHMENTS_PER_RUN"))
        self.state = load_state(settings.get("ARCHIVE_DB"), self.sources, now_iso(),
                                settings.getint("PRESSARCHIVE_MAX_RECHECKS"))
        self.scope = Scope(self.state, backfill=settings.getbool("PRESSARCHIVE_BACKFILL"),
                           check=settings.getbool("PRESSARCHIVE_CHECK"))  # `sources check`: one sample per source

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

    async def start(self):
        if self.settings.getbool("PRESSARCHIVE_DISTRIBUTED"):
            if not self.settings.getbool("PRESSARCHIVE_SEED"):
                return  # a worker only takes requests from the shared queue
            from crawler.middlewares.distributed import reset_frontier
            from pipelines.queue import connect

            reset_frontier(connect(self.settings.get("REDIS_URL")), self.name)
        for source in self.sources.values():
            for request in self._start_requests(source):
                yield request

    def _start_requests(self, source):
        """The releases due for a recheck, then every entry point of ``source``."""
        for url, etag, modified in self.scope.rechecks(source.id):
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

    # -- every request: counts and failures ------------------------------------------------

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

    def on_error(self, failure):
        request = failure.request
        source_id = request.meta.get("source_id", "?")
        role = request.meta.get("role", "page")
        if failure.check(OffsiteRedirect):
            return self._offsite_redirect(request, source_id, role)
        if failure.check(Refused):
            return None  # crawler.middlewares.ssrf logged it and counted it
        if _polite(failure):
            # robots.txt said no, or an offsite/duplicate filter: polite, not broken.
            self._stat(source_id, "ignored")
            logger.info("source '%s': skipped %s %s (%s)", source_id, role, request.url, failure.getErrorMessage())
            return None
        self._error(source_id, f"could not fetch {role} {request.url}: {_reason(failure)}", entry=role != "release")
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
            self._error(source_id, f"{role} {first} redirects off-site to {request.url}", logged=True)
        return None

    def closed(self, reason):
        self._log_drift()


def _polite(failure) -> bool:
    """robots.txt said no, or an offsite or duplicate filter dropped the request."""
    return bool(failure.check(IgnoreRequest) and not failure.check(HttpError) and any(
        word in failure.getErrorMessage() for word in ("robots.txt", "offsite", "uplicate")))


def _reason(failure) -> str:
    if failure.check(HttpError):
        return f"HTTP {failure.value.response.status}"
    if failure.check(DNSLookupError):
        return "DNS lookup failed"
    if failure.check(TimeoutError, TCPTimedOutError):
        return "timed out"
    return failure.getErrorMessage() or failure.type.__name__


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
