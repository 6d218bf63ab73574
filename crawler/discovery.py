"""Finding release URLs: RSS/Atom feeds, sitemaps and paginated listing pages.

Pure functions over bytes and Scrapy responses, so each can be unit-tested on
hand-built input. The spider decides what to request; this module only reads.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

from lxml import etree
from scrapy.utils.sitemap import Sitemap, sitemap_urls_from_robots

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
                category=_child_text(node, "category") or next(
                    (c.get("term") for c in node if _local(c.tag) == "category" and c.get("term")), None),
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
    except Exception:  # lxml raises various errors on non-XML bodies
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


def listing_links(response, source) -> ListingLinks:
    """Release links and further listing pages found on one listing page."""
    releases, pages, seen = [], [], set()
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
    trs = trs_next_page(response.url, response.text)
    if trs and source.allows(trs) and trs not in pages:
        pages.append(trs)
    return ListingLinks(releases, pages)


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
