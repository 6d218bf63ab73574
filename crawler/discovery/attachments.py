"""Release pages, and the PDFs they link to ("Full statement (PDF)").

Every family ends here: a release URL is fetched and handed to the pipelines as a
:class:`archive.items.ReleaseItem`, HTML or PDF (anything else is skipped with one
line). A recheck of a known release may instead find it unchanged (304), gone (404,
410) or redirected to something that is not a release (removed): a
:class:`archive.items.ReleaseCheck`.

:func:`pdf_links` reads the PDF links out of a release page: a new release may link PDFs
that are the statement itself, or its annex; they are fetched and archived as
attachments of the release (``parent_url``), at most
``PRESSARCHIVE_MAX_ATTACHMENTS`` per release and ``PRESSARCHIVE_MAX_ATTACHMENTS_PER_RUN``
per source and run: a page linking 100,000 PDFs must not queue 100,000 downloads ahead
of the listing pages. PDFs that are releases of their own (matching ``article_pattern``)
are left to discovery.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urljoin, urlsplit

import lxml.html

from archive.clock import now_iso
from archive.items import ReleaseCheck, ReleaseItem
from archive.urls import normalise_url
from crawler.discovery.common import (
    GONE,
    RELEASE_PRIORITY,
    Discovery,
    clean_hints,
    header,
)
from pipelines.cleaning import is_pdf
from pipelines.encoding import decode_html

logger = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")
PDF_TYPE = "application/pdf"
PDF_LINK_TEXT_RE = re.compile(r"\bpdf\b|full (text|statement|release)|download|下载|全文|附件", re.IGNORECASE)
# Elements that may point at a PDF, outside page furniture (nav, header, footer, aside: site-wide
# reports, annual plans), selected in one XPath pass: linear however many links a page holds.
PDF_CANDIDATES_XPATH = ("(//a[@href] | //link[@type='application/pdf'] | //embed[@src] | //iframe[@src]"
                        " | //object[@data])"
                        "[not(ancestor::nav or ancestor::header or ancestor::footer or ancestor::aside)]")


def may_link_pdfs(body: bytes) -> bool:
    """Cheap test before parsing a whole page for PDF links (on the reactor thread)."""
    body = body.lower()
    return b".pdf" in body or b"application/pdf" in body


def media_type(response) -> tuple[str, str | None]:
    """(MIME type, charset) of a fetched page; a PDF is a PDF whatever its server says."""
    content_type = response.headers.get("Content-Type", b"").decode("latin-1").strip()
    mime = content_type.split(";")[0].strip().lower()
    if is_pdf(response.body, mime):
        mime = PDF_TYPE
    charset = None
    if "charset=" in content_type.lower():
        charset = content_type.lower().split("charset=", 1)[1].split(";")[0].strip(" \"'") or None
    return mime, charset


def _looks_like_pdf(href: str) -> bool:
    path = href.split("#", 1)[0].split("?", 1)[0]
    if "//" in path:  # absolute or scheme-relative: the host is not the path
        path = urlsplit(path).path
    return path.lower().endswith(".pdf")


def _absolute(base: str, origin: str, href: str) -> str:
    """``urljoin(base, href)``, with a fast path for the common ``/path/file.pdf`` (no dot segments)."""
    if href.startswith("/") and not href.startswith("//") and "/." not in href:
        return origin + href
    return urljoin(base, href)


def pdf_links(response_or_html, base_url: str | None = None) -> list[str]:
    """Absolute URLs of the PDF versions an HTML release links to, in page order, without repeats.

    Accepts a Scrapy response, HTML text or bytes. A link counts when its path ends in
    ``.pdf``, it says ``type="application/pdf"``, or its text names a PDF ("Full
    statement (PDF, 245 KB)", "下载全文"). Links inside nav, header, footer and aside
    (site-wide reports, annual plans) are ignored. Linear in the size of the page: a
    hostile page with 100,000 PDF links is read in about a second (the caller caps how
    many it fetches, see ``PRESSARCHIVE_MAX_ATTACHMENTS``).
    """
    if hasattr(response_or_html, "body") and hasattr(response_or_html, "url"):
        base_url = base_url or response_or_html.url
        html = getattr(response_or_html, "text", None) or decode_html(response_or_html.body)[0]
    elif isinstance(response_or_html, bytes):
        html = decode_html(response_or_html)[0]
    else:
        html = response_or_html or ""
    if not html.strip():
        return []
    tree = lxml.html.fromstring(html)
    base = urljoin(base_url or "", (tree.xpath("//base/@href") or [""])[0].strip())
    parts = urlsplit(base)
    origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None
    found: dict[str, None] = {}  # ordered, with O(1) membership
    for element in tree.xpath(PDF_CANDIDATES_XPATH):
        href = (element.get("href") if element.tag == "a" else
                element.get("href") or element.get("src") or element.get("data"))
        href = (href or "").strip()
        if not href or href.startswith(("#", "mailto:", "javascript:", "tel:", "data:")):
            continue
        if not (_looks_like_pdf(href) or _typed_pdf(element) or _named_pdf(element, href)):
            continue
        url = _absolute(base, origin, href) if origin else urljoin(base, href)
        if url.startswith(("http://", "https://")):
            found.setdefault(url)
    return list(found)


def _typed_pdf(element) -> bool:
    return (element.get("type") or "").lower().startswith(PDF_TYPE)


def _named_pdf(element, href: str) -> bool:
    """An anchor whose text names a PDF ("Full statement (PDF)")."""
    if element.tag != "a":
        return False
    text = element.text_content() or ""
    return bool(PDF_LINK_TEXT_RE.search(text)) and "pdf" in (text + href).lower()


class ReleasePages(Discovery):
    """Release pages and their PDF attachments; ``follow_pdfs``, ``max_attachments`` and
    ``attachment_budget`` (per source) are set by the spider from the settings."""

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

    def parse_attachment(self, response):
        source = self._source(response)
        item = self._page_item(response, source, normalise_url(response.meta.get("redirect_urls", [response.url])[0]))
        if item is not None:
            item.parent_url = response.meta["parent_url"]
            yield item

    def _attachments(self, response, source, url):
        """Requests for the PDFs a new release links to, within the caps."""
        if not may_link_pdfs(response.body):
            return
        links = pdf_links(response)
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
                           source.id, self.crawler.settings.getint("PRESSARCHIVE_MAX_ATTACHMENTS_PER_RUN"),
                           url, skipped)

    def _page_item(self, response, source, url) -> ReleaseItem | None:
        """The fetched page as an item for the pipelines, or None for a type we do not archive."""
        mime, charset = media_type(response)
        if mime and mime != PDF_TYPE and mime not in HTML_TYPES and not mime.startswith("text/"):
            self._stat(source.id, "skipped_non_html")
            logger.warning("source '%s': %s is %s, neither HTML nor PDF; not stored", source.id, response.url, mime)
            return None
        return ReleaseItem(
            source_id=source.id,
            url=url,
            fetched_url=response.url,
            http_status=response.status,
            content_type=mime or None,
            http_charset=charset,
            fetched_at=now_iso(),
            body=response.body,
            hints=clean_hints(source, response.meta.get("hints", {})),
            etag=header(response.headers, b"ETag"),
            last_modified=header(response.headers, b"Last-Modified"),
            warc=response.meta.get("warc"),
        )
