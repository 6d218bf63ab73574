"""Finding release URLs: RSS/Atom feeds, sitemaps and paginated listing pages.

Pure functions over bytes and Scrapy responses, so each can be unit-tested on
hand-built input. The spider decides what to request; this module only reads.

It also tells a redesign from a quiet week (:class:`LinkTally`): when a site
changes its URL scheme, its feed or listing still answers and still links to
releases, but none of them match the source's ``article_pattern`` any more, so
the crawl finds nothing and fails nothing. Each entry point (a feed, a sitemap
with its child sitemaps, a listing with its further pages, an API) counts the
links it yielded that match and the candidate links that do not, and keeps a
few of the latter, the ones that look most like releases, as evidence.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from functools import cached_property
from urllib.parse import urljoin, urlsplit

from lxml import etree
from scrapy.utils.sitemap import Sitemap, sitemap_urls_from_robots

from crawler.sources import MAX_URL_CHARS

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

_XML_PARSER = etree.XMLParser(recover=True, resolve_entities=False, no_network=True, huge_tree=False)


@dataclass
class FeedEntry:
    url: str
    title: str | None = None
    date: str | None = None  # YYYY-MM-DD: publication
    summary: str | None = None
    updated: str | None = None  # YYYY-MM-DD: last update the feed announces, when it says
    category: str | None = None


def _local(tag) -> str:
    return etree.QName(tag).localname.lower() if isinstance(tag, str) else ""


def _child_text(node, *names: str) -> str | None:
    for child in node:
        if _local(child.tag) in names and (child.text or "").strip():
            return child.text.strip()
    return None


def _categories(node) -> str | None:
    """Every category of a feed item, joined by " | " (RSS ``<category>`` text, Atom ``term``/``label``).

    A statement is often filed under several ("News", "Readouts"): the type rules
    (pipelines/statement_type.py) look at all of them.
    """
    names = []
    for child in node:
        if _local(child.tag) == "category":
            name = (child.text or "").strip() or (child.get("label") or child.get("term") or "").strip()
            if name and name not in names:
                names.append(name)
    return " | ".join(names)[:500] or None


def parse_date(value: str | None) -> str | None:
    """A feed or sitemap date (RFC 822 or ISO 8601) as YYYY-MM-DD, else None."""
    if not value:
        return None
    value = value.strip()
    try:
        return parsedate_to_datetime(value).date().isoformat()
    except (TypeError, ValueError, IndexError):
        pass
    match = re.match(r"(\d{4})-(\d{2})-(\d{2})", value)
    if match:
        try:
            return datetime(*map(int, match.groups()), tzinfo=timezone.utc).date().isoformat()
        except ValueError:
            return None
    return None


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


def is_feed(body: bytes) -> bool:
    head = body[:2048].lstrip().lower()
    return b"<rss" in head or b"<feed" in head or b"<rdf:rdf" in head


def parse_feed(body: bytes, base_url: str) -> list[FeedEntry]:
    """Entries of an RSS 2.0 / RSS 1.0 / Atom feed; unparseable input gives []."""
    try:
        root = etree.fromstring(body, parser=_XML_PARSER)
    except (etree.XMLSyntaxError, ValueError):
        return []
    if root is None:
        return []
    entries = []
    for node in root.iter():
        name = _local(node.tag)
        if name not in ("item", "entry"):
            continue
        link = None
        for child in node:
            if _local(child.tag) != "link":
                continue
            href = child.get("href")
            if href and child.get("rel", "alternate") == "alternate":
                link = href
                break
            if not href and (child.text or "").strip():
                link = child.text.strip()
                break
        if not link:
            guid = next((c for c in node if _local(c.tag) == "guid"), None)
            if guid is not None and guid.get("isPermaLink", "true") != "false" and (guid.text or "").startswith("http"):
                link = guid.text.strip()
        if not link:
            continue
        date = parse_date(_child_text(node, "pubdate", "published", "date", "issued", "updated", "modified"))
        updated = parse_date(_child_text(node, "updated", "modified"))
        entries.append(
            FeedEntry(
                url=urljoin(base_url, link),
                title=_child_text(node, "title"),
                date=date,
                summary=_child_text(node, "description", "summary"),
                updated=updated if updated and updated != date else None,
                category=_categories(node),
            )
        )
    return entries


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
    entries = [(e["loc"], parse_date(e.get("lastmod"))) for e in sitemap if e.get("loc")]
    return SitemapResult(sitemap.type, entries)


def robots_sitemaps(body: bytes, base_url: str) -> list[str]:
    return list(sitemap_urls_from_robots(body, base_url=base_url))


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


def vetoed(source, url: str) -> bool:
    """``url`` matches ``article_pattern`` but ``article_exclude`` says it is not a release."""
    pattern = source.article_re
    return (pattern.exclude is not None and len(url) <= MAX_URL_CHARS and pattern.regex.search(url) is not None
            and pattern.exclude.search(url) is not None)


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
    forgotten: bool = False  # the spider dropped the entry point's validators (see the spider)

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


def json_path(data, path: str | None):
    """``data`` at a dotted path (``feed.entry``, ``title.rendered``, ``items.0.link``); None if absent."""
    if path is None:
        return None
    for part in filter(None, path.split(".")):
        if isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        elif isinstance(data, dict):
            data = data.get(part)
        else:
            return None
    return data


_FIELD_RE = re.compile(r"\{([A-Za-z0-9_.]+)((?:\|[a-z]+)*)\}")


def fill_template(template: str, item: dict) -> str | None:
    """``{field}`` / ``{field|lower}`` / ``{field|slug}`` filled from a JSON item; None if a field is missing."""
    missing = []

    def value(match):
        found = json_path(item, match.group(1))
        if found is None:
            missing.append(match.group(1))
            return ""
        text = str(found)
        for flt in filter(None, match.group(2).split("|")):
            if flt == "lower":
                text = text.lower()
            elif flt == "slug":
                text = re.sub(r"[/\s]+", "_", text).lower()
        return text

    filled = _FIELD_RE.sub(value, template)
    return None if missing else filled


def parse_any_date(value) -> str | None:
    """A date from an API field: ISO 8601, RFC 822, ``dd.mm.yyyy`` or ``ddmmyyyy``-free forms."""
    if value is None:
        return None
    text = str(value).strip()
    match = re.match(r"(\d{1,2})\.(\d{1,2})\.(\d{4})$", text)
    if match:
        day, month, year = map(int, match.groups())
        try:
            return datetime(year, month, day).date().isoformat()
        except ValueError:
            return None
    if re.fullmatch(r"\d{12,13}", text):  # milliseconds since the epoch
        return datetime.fromtimestamp(int(text) / 1000, tz=timezone.utc).date().isoformat()
    return parse_date(text)
