"""RSS 2.0, RSS 1.0 and Atom feeds: the cheapest way to hear of new releases.

A feed lists the newest releases with their title, date, summary and categories, all
of which travel with the release to the cleaning worker as hints (a feed date is
trusted above most dates a page prints; the categories feed the statement-type rules).
An entry the feed says was ``updated`` after the release was last seen is fetched
again. Feeds are read leniently (a truncated feed still gives its first entries; the
log says it was not well-formed) and never resolve entities or fetch DTDs.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin

from lxml import etree

from crawler.discovery.common import Discovery, discovery_hints, iso_date

_XML_PARSER = etree.XMLParser(recover=True, resolve_entities=False, no_network=True, huge_tree=False)
DATE_TAGS = ("pubdate", "published", "date", "issued", "updated", "modified")  # first found: publication
UPDATED_TAGS = ("updated", "modified")


@dataclass
class FeedEntry:
    url: str
    title: str | None = None
    date: str | None = None  # YYYY-MM-DD: publication
    summary: str | None = None
    updated: str | None = None  # YYYY-MM-DD: last update the feed announces, when it says
    category: str | None = None


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
    items = (node for node in root.iter() if _local(node.tag) in ("item", "entry"))
    return [entry for entry in (_entry(node, base_url) for node in items) if entry is not None]


def _entry(node, base_url: str) -> FeedEntry | None:
    link = _link(node)
    if not link:
        return None
    date = iso_date(_child_text(node, *DATE_TAGS))
    updated = iso_date(_child_text(node, *UPDATED_TAGS))
    return FeedEntry(
        url=urljoin(base_url, link),
        title=_child_text(node, "title"),
        date=date,
        summary=_child_text(node, "description", "summary"),
        updated=updated if updated and updated != date else None,
        category=_categories(node),
    )


def _link(node) -> str | None:
    """An item's link: Atom ``<link rel="alternate" href>``, RSS ``<link>`` text, else a
    permalink ``<guid>``."""
    for child in node:
        if _local(child.tag) != "link":
            continue
        href = child.get("href")
        if href and child.get("rel", "alternate") == "alternate":
            return href
        if not href and (child.text or "").strip():
            return child.text.strip()
    guid = next((c for c in node if _local(c.tag) == "guid"), None)
    if guid is not None and guid.get("isPermaLink", "true") != "false" and (guid.text or "").startswith("http"):
        return guid.text.strip()
    return None


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
    (archive/statement_type.py) look at all of them.
    """
    names = []
    for child in node:
        if _local(child.tag) == "category":
            name = (child.text or "").strip() or (child.get("label") or child.get("term") or "").strip()
            if name and name not in names:
                names.append(name)
    return " | ".join(names)[:500] or None


class FeedDiscovery(Discovery):
    """The ``feeds`` of a source."""

    def parse_feed(self, response):
        source = self._source(response)
        if response.status != 304 and not is_feed(response.body):
            self._error(source.id, f"feed {response.url} is not RSS or Atom (check `feeds` in the registry)")
            return
        fetched = self._entry_fetched(response, source)
        if response.status == 304:
            yield fetched
            return
        self._warn_malformed(source, "feed", response.url, response.body)
        tally = self._tally(response, source, "feed")
        for entry in parse_feed(response.body, response.url):
            if not self._keep(source, entry.url):
                self._miss(source, tally, entry.url)
                continue
            tally.match()
            hints = discovery_hints(entry.date, title=entry.title, summary=entry.summary, category=entry.category)
            request, _ = self._discovered(source, entry.url, hints, changed=entry.updated)
            if request:
                yield request
        yield from self._links_read(source, tally, fetched)
