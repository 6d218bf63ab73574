"""What every discovery family shares: the spider's bookkeeping, and the drift tally.

Each family (feeds, sitemaps, listings, JSON APIs, WordPress REST, release pages) asks
the same questions of what it reads, and this module answers them once:

- Is this URL a release of the source, or a page it may follow? (:meth:`Discovery._keep`,
  :meth:`Discovery._follows`)
- Known, or recheck? A release URL the archive does not have is new; one it has is
  fetched again only when the entry point dates a change after it was last seen
  (:meth:`Discovery._known_or_recheck`). Everything else an entry point lists is skipped,
  which is what makes a crawl incremental.
- How far does this run go? One :class:`Scope` decides for every family: a crawl stops
  paging at the first page of known releases, a backfill (or a source whose last run did
  not finish) walks every page, and ``sources check`` takes one sample release per source
  from first pages only.
- What went wrong? An entry point that cannot be read is one error of the run, its
  reason kept as the run's message and logged once (:meth:`Discovery._error`).
- Did the site change its URL scheme? Each entry point (a feed, a sitemap with its child
  sitemaps, a listing with its further pages, an API) counts the links it yielded that
  match ``article_pattern`` and the candidate links that do not, and keeps a few of the
  latter, the most release-like, as evidence (:class:`LinkTally`). A redesign leaves the
  feed or listing answering and linking to releases, none of which match any more: the
  crawl would find nothing and fail nothing.
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import re
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import urlsplit

import scrapy
from lxml import etree

from archive.clock import now_iso
from archive.fetch_state import SourceState
from archive.items import EntryFetch
from archive.urls import is_http_url, normalise_url, scheme_twin
from crawler.sources import MAX_URL_CHARS
from pipelines.dates import parse_date_value

logger = logging.getLogger(__name__)

RELEASE_PRIORITY = 10  # fetch releases before walking further listing pages
GONE = (404, 410)
NEW, RECHECK = "new", "recheck"  # the verdicts of Discovery._known_or_recheck


# -- drift: entry points whose links stopped matching article_pattern ----------------------
#
# An entry point drifts when it yielded candidate links but none of them match
# article_pattern, or almost none: at least DRIFT_MIN_LINKS candidates of which at most
# DRIFT_MATCH_SHARE match (a redesign that left an old link or two in a sidebar). Candidates are
# every entry of a feed or API (lists of releases by design) and, on listings and sitemaps,
# the links that look like one page of content (ARTICLE_*), so that menus, footers and a
# sitemap's section pages do not dilute the share.

DRIFT_MIN_LINKS = 10
DRIFT_MATCH_SHARE = 0.1
DRIFT_SAMPLE = 5  # unmatched URLs kept per entry point and per run, the most release-like first
ROLES = {"feed": ("in", "feed"), "sitemap": ("in", "sitemap"), "listing": ("on", "listing"),
         "json_api": ("in", "JSON API"), "wp_rest": ("in", "WordPress API")}
# Links every page of a site carries whatever its URL scheme (assets, feeds) are never candidates.
ASSET_RE = re.compile(r"\.(css|js|mjs|json|xml|rss|atom|ico|png|jpe?g|gif|svg|webp|avif|bmp|tiff?|woff2?|ttf|otf"
                      r"|eot|mp[34]|m4a|webm|avi|mov|zip|gz|rar|7z|exe|dmg)$", re.IGNORECASE)
ARTICLE_ID_RE = re.compile(r"\d{4,}")  # a date (2026/02, 20260201) or a numeric id, in the path or query
ARTICLE_SLUG_RE = re.compile(r"[^\W_]+(?:[-_+][^\W_]+){3,}")  # a title made a path: four words or more


def article_score(url: str, host: str | None = None) -> int:
    """How much ``url`` looks like the page of one release: 0 when it does not (a section,
    the home page, an asset); 2 for a date or numeric id, plus 1 each for a title slug,
    a path three folders deep and being on ``host`` (the entry point's)."""
    try:
        parts = urlsplit(url)
        url_host = parts.hostname
    except ValueError:
        return 0
    if ASSET_RE.search(parts.path):
        return 0
    segments = [segment for segment in parts.path.split("/") if segment]
    last = segments[-1].rsplit(".", 1)[0] if segments else ""
    numbered = bool(ARTICLE_ID_RE.search(parts.path) or ARTICLE_ID_RE.search(parts.query))
    slug = bool(ARTICLE_SLUG_RE.fullmatch(last))
    if not (numbered or slug):
        return 0
    return 2 * numbered + slug + (len(segments) >= 3) + (host is not None and url_host == host)


@dataclass
class LinkTally:
    """The links one entry point yielded in a run: matched, and candidates that did not match."""

    role: str  # feed, sitemap, listing, json_api, wp_rest
    url: str  # the entry point: feed, first sitemap or listing page, first API page
    matched: int = 0
    unmatched: int = 0
    sample: list[tuple[int, int, str]] = field(default_factory=list)  # (-score, order, url), best first
    forgotten: bool = False  # the spider dropped the entry point's validators (Discovery._links_read)

    @property
    def seen(self) -> int:
        return self.matched + self.unmatched

    @cached_property
    def host(self) -> str | None:
        try:
            return urlsplit(self.url).hostname
        except ValueError:
            return None

    def match(self, count: int = 1) -> None:
        self.matched += count

    def miss(self, url: str) -> None:
        """A link that does not match article_pattern: a candidate when it may be a release."""
        score = article_score(url, self.host)
        if score == 0 and self.role in ("listing", "sitemap"):
            return  # navigation, a section page, an asset
        self.unmatched += 1
        entry = (-score, self.unmatched, url)
        if len(self.sample) < DRIFT_SAMPLE or entry < self.sample[-1]:
            self.sample = sorted([*self.sample, entry])[:DRIFT_SAMPLE]

    @property
    def drifting(self) -> bool:
        if not self.unmatched:
            return False
        return not self.matched or (self.seen >= DRIFT_MIN_LINKS and self.matched <= DRIFT_MATCH_SHARE * self.seen)

    def describe(self, name_url: bool = False) -> str:
        """``40 links on the listing, none match article_pattern`` (with the entry point's URL
        when the source has several)."""
        preposition, name = ROLES.get(self.role, ("in", self.role))
        where = f"{preposition} {name} {self.url}" if name_url else f"{preposition} the {name}"
        if self.matched:
            return f"{self.matched} of {self.seen} links {where} match article_pattern"
        if self.seen == 1:
            return f"1 link {where} does not match article_pattern"
        return f"{self.seen} links {where}, none match article_pattern"


def drift_report(tallies, name_urls: bool = False) -> tuple[str | None, list[str]]:
    """What a run's entry points say: the drift verdict and, as its evidence, up to DRIFT_SAMPLE
    unmatched URLs of the drifting entry points, the most release-like first; (None, []) when
    no entry point drifts (the links a healthy source does not want stay out of the log)."""
    drifting = [t for t in tallies if t.drifting]
    verdict = "; ".join(t.describe(name_urls) for t in drifting) or None
    sample = []
    for _, _, url in sorted(entry for tally in drifting for entry in tally.sample):
        if url not in sample:
            sample.append(url)
    return verdict, sample[:DRIFT_SAMPLE]


def vetoed(source, url: str) -> bool:
    """``url`` matches ``article_pattern`` but ``article_exclude`` says it is not a release."""
    pattern = source.article_re
    return (pattern.exclude is not None and len(url) <= MAX_URL_CHARS and pattern.regex.search(url) is not None
            and pattern.exclude.search(url) is not None)


# -- what discovery tells the cleaning worker ------------------------------------------------


def iso_date(value) -> str | None:
    """A date an entry point gives (feed, sitemap, API field) as YYYY-MM-DD, else None."""
    found = parse_date_value(value)
    return found.isoformat() if found else None


def discovery_hints(date: str | None = None, **fields) -> dict:
    """Hints about a release from the entry point that listed it (title, summary, category...);
    its date ranks as a ``feed`` date for the cleaning worker (pipelines/dates.py)."""
    hints = dict(fields)
    if date:
        hints.update(date=date, date_source="feed")
    return hints


def clean_hints(source, hints: dict) -> dict:
    """Discovery hints plus the source's cleaning options, for the cleaning worker."""
    hints = dict(hints)
    if source.selectors:
        hints["selectors"] = source.selectors
    if source.date_from_url:
        hints["date_from_url"] = source.date_from_url
    return hints


def plain(value) -> str | None:
    """Text of an API field that may hold HTML (WordPress titles) or entities."""
    if value is None:
        return None
    text = html.unescape(re.sub(r"<[^>]+>", "", str(value)))
    return " ".join(text.split()) or None


def header(headers, name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value else None


_STRICT_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def xml_error(body: bytes) -> str | None:
    """Why ``body`` is not well-formed XML, or None. Feeds and sitemaps are read leniently
    anyway; this is for the log, so a truncated feed does not go unnoticed."""
    try:
        etree.fromstring(body, parser=_STRICT_PARSER)
    except etree.XMLSyntaxError as exc:
        return str(exc).splitlines()[0]
    except ValueError as exc:
        return str(exc)
    return None


# -- how far a run goes ------------------------------------------------------------------


@dataclass
class Scope:
    """How far this run reaches, decided once from the settings; every family asks it.

    A crawl is incremental: a listing or API stops at its first page of known releases,
    unless ``PRESSARCHIVE_BACKFILL`` or the source's last run did not finish (then it is
    deep: every page). ``sources check`` (``PRESSARCHIVE_CHECK``) samples: first pages
    only, no rechecks, one new release per source.
    """

    state: dict[str, SourceState]
    backfill: bool = False
    check: bool = False
    sampled: set[str] = field(default_factory=set)  # check: sources whose sample is requested

    @property
    def paging(self) -> bool:
        """Further pages of listings and APIs are followed at all."""
        return not self.check

    def deep(self, source_id: str) -> bool:
        """Walk every page, and send no conditional GETs: asked for, or the last run did not finish."""
        return not self.check and (self.backfill or not self.state[source_id].complete)

    def next_page(self, source_id: str, fresh: bool) -> bool:
        """Fetch the page after one that listed ``fresh`` (new) releases, or none."""
        return self.paging and (fresh or self.deep(source_id))

    def rechecks(self, source_id: str) -> list:
        """Known releases due to be fetched again: (url, etag, last_modified)."""
        return [] if self.check else self.state[source_id].due

    def take(self, source_id: str) -> bool:
        """Whether a new release of the source may be requested (in a check, only the first)."""
        if not self.check:
            return True
        if source_id in self.sampled:
            return False
        self.sampled.add(source_id)
        return True


# -- the spider side -----------------------------------------------------------------------


class Discovery:
    """The helpers every family's callbacks use; mixed into :class:`crawler.spiders.releases.ReleasesSpider`,
    which sets ``sources``, ``state``, ``scope``, ``requested``, ``links`` and ``release_maxsize``."""

    def _stat(self, source_id: str, key: str, count: int = 1) -> None:
        self.crawler.stats.inc_value(f"pressarchive/{source_id}/{key}", count)

    def _error(self, source_id: str, message: str, *, entry: bool = True, logged: bool = False) -> None:
        """One error of the run: counted (``entry``: of an entry point, not of a release), kept
        as the run's message (``last_error``) and logged once (unless a middleware already did)."""
        self._stat(source_id, "errors")
        if entry:
            self._stat(source_id, "entry_errors")
        self.crawler.stats.set_value(f"pressarchive/{source_id}/last_error", message)
        if not logged:
            logger.error("source '%s': %s", source_id, message)

    def _source(self, response):
        return self.sources[response.meta["source_id"]]

    # -- which URLs ---------------------------------------------------------------------

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

    def _known_or_recheck(self, source, url, changed: str | None = None) -> str | None:
        """NEW when the archive does not have this release; RECHECK when it does but the entry
        point dates a change (``changed``, YYYY-MM-DD: a feed's ``updated``, a sitemap's
        ``lastmod``, WordPress's ``modified``) after the release was last seen; else None."""
        seen = self._known_since(source, url)
        if seen is None:
            return NEW
        if changed and changed > seen[:10]:
            return RECHECK
        return None

    # -- requests -----------------------------------------------------------------------

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
        """A feed, sitemap, listing or API page: a conditional GET unless the run is deep."""
        conditional = None if self.scope.deep(source.id) else self.state[source.id].validators.get(url)
        return self._request(url, source, role, callback, conditional=conditional, dont_filter=dont_filter, **meta)

    def _discovered(self, source, url, hints=None, changed=None):
        """A release URL an entry point listed: (its request or None, whether it is new)."""
        self._stat(source.id, "discovered")
        verdict = self._known_or_recheck(source, url, changed)
        if verdict == NEW:
            return self._release_request(url, source, hints), True
        if verdict == RECHECK:
            return self._release_request(url, source, hints, recheck=(None, None)), False
        return None, False

    def _release_request(self, url, source, hints=None, recheck=None):
        """A request for a release page; ``recheck`` = (etag, last_modified) of a known release."""
        url = normalise_url(source.canonical(url))
        if url in self.requested or scheme_twin(url) in self.requested:
            return None
        if (hints or {}).get("date"):
            self.crawler.stats.max_value(f"pressarchive/{source.id}/newest", hints["date"])
        if not self.scope.take(source.id):
            return None
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

    # -- entry points: validators and drift ---------------------------------------------

    def _entry_fetched(self, response, source) -> EntryFetch:
        """Count a reachable entry point; its validators go to the store for the next conditional GET."""
        self._stat(source.id, "entry_ok")
        fetched = EntryFetch(
            source_id=source.id, url=response.meta.get("redirect_urls", [response.url])[0],
            role=response.meta.get("role", "entry"),
            fetched_at=now_iso(), http_status=response.status,
            etag=header(response.headers, b"ETag"), last_modified=header(response.headers, b"Last-Modified"),
        )
        if response.status == 304:
            self._stat(source.id, "not_modified")
        return fetched

    def _json(self, response, source, role):
        """The response's JSON, or None (an error of the entry point)."""
        try:
            return json.loads(response.body)
        except ValueError:
            self._error(source.id, f"{role} {response.url} did not answer JSON (check `{role}` in the registry)")
            return None

    def _warn_malformed(self, source, role, url, body) -> None:
        problem = xml_error(body)
        if problem:
            self._stat(source.id, "warnings")
            logger.warning("source '%s': %s %s is not well-formed XML (%s); read what could be read",
                           source.id, role, url, problem)

    def _tally(self, response, source, role) -> LinkTally:
        """The links of the entry point ``response`` belongs to (its further pages carry ``entry``)."""
        root = response.meta.get("entry") or response.meta.get("redirect_urls", [response.url])[0]
        tallies = self.links.setdefault(source.id, {})
        if root not in tallies:
            tallies[root] = LinkTally(role, root)
        return tallies[root]

    def _miss(self, source, tally, url) -> None:
        """A link of an entry point that is not a release of this source (unless article_exclude
        says so on purpose): evidence of drift."""
        if is_http_url(url) and not vetoed(source, source.canonical(url)):
            tally.miss(url)

    def _open_drift_stats(self, spider=None) -> None:
        """Text, not counts: NULL in crawl_runs unless a link misses (the store reads 0 for unset stats)."""
        for source_id in self.sources:
            for key in ("drift", "unmatched_sample"):
                self.crawler.stats.set_value(f"pressarchive/{source_id}/{key}", None)

    def _links_read(self, source, tally, fetched):
        """After an entry page: the run's link counts, drift verdict and sample go to the stats,
        then the page's validators, or none when its entry point drifts: a 304 would otherwise
        make a broken source look quiet from its second run on."""
        tallies = self.links[source.id].values()
        verdict, sample = drift_report(tallies, name_urls=len(source.endpoint_urls) > 1)
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

    def _log_drift(self) -> None:
        """At the end of the run: one warning per drifting source, with evidence."""
        for source_id, tallies in self.links.items():
            verdict, sample = drift_report(tallies.values())
            if verdict:
                logger.warning("source '%s': drift: %s (e.g. %s); check article_pattern", source_id, verdict,
                               ", ".join(sample[:3]))
