"""Releases published as PDF: text, headline, date and language, like :mod:`pipelines.extraction`.

``extract_pdf(body, url)`` returns the same :class:`~pipelines.extraction.Extraction`
as ``extract`` does for HTML. ``analyse_pdf`` returns it wrapped in a
:class:`PdfExtraction` that also says whether the PDF had usable text
(:data:`TEXT_STATUSES`): a scanned statement (images, no text layer) comes back
with ``text == ""`` and ``status == "scanned"`` so the caller records it as such
instead of storing an empty release. ``has_text_layer(body)`` is the quick check.

pdfminer.six does the work (chosen over pypdf by measurement on the fixtures of
tests/pdfs: pypdf returned the same characters but no paragraph boundaries, and
put footers drawn before the body ahead of the headline; pdfminer's layout
analysis gives text boxes in reading order, line positions and font sizes):

1. layout analysis of at most :data:`MAX_PAGES` pages into lines with position and
   font size; ``(cid:N)`` glyphs without a Unicode mapping are dropped and counted;
2. running heads and feet removed: a line among the first or last
   :data:`EDGE_LINES` of a page whose text (digits ignored) recurs at that place on
   at least half the pages, and page numbers ("Page 2 of 3", "- 2 -", "第 2 页 共 3 页");
3. paragraphs from line geometry (type size changes, gaps, first-line indents, short
   closing lines), lines joined (no space between Han characters), a paragraph broken
   by a page joined again;
4. headline: the document's ``/Title`` (or XMP ``dc:title``) unless it is
   word-processor junk ("Microsoft Word - doc1.docx", "scan0001", a file name), else
   the largest-type lines at the top of page 1, else the crawl's title hint;
5. date, strongest first: ``url``, ``feed`` hint, ``text`` (a date near the top of
   the text, else one in the closing lines, as statements are often signed),
   ``listing`` hint, ``pdf-meta`` (``/CreationDate`` or XMP ``xmp:CreateDate``: the
   file's creation, often but not always the publication day), ``sitemap`` hint;
6. language: :func:`pipelines.extraction.detect_language`, with the document's
   ``/Lang`` as the declared language.

Finding the PDFs an HTML release links to is discovery's business
(:func:`crawler.discovery.attachments.pdf_links`); telling a PDF by its bytes is
:func:`pipelines.cleaning.is_pdf`.
"""

from __future__ import annotations

import io
import itertools
import logging
import re
import statistics
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from urllib.parse import urlsplit

import lxml.html
from lxml import etree
from pdfminer.converter import PDFPageAggregator
from pdfminer.layout import LAParams, LTChar, LTImage, LTPage, LTTextBox, LTTextLine
from pdfminer.pdfdocument import PDFDocument, PDFEncryptionError
from pdfminer.pdfinterp import PDFPageInterpreter, PDFResourceManager
from pdfminer.pdfpage import PDFPage
from pdfminer.pdfparser import PDFParser
from pdfminer.pdftypes import resolve1
from pdfminer.psparser import PSLiteral
from pdfminer.utils import decode_text

from pipelines.dates import (
    MIN_DATE,
    NOT_PUBLISHED_RE,
    DateFinder,
    dates_in_text,
    valid_date,
)
from pipelines.extraction import Extraction, normalise_text
from pipelines.extraction.language import detect_language
from pipelines.extraction.text import CJK_RE

logger = logging.getLogger(__name__)

PDF_EXTRACTOR_VERSION = "pressarchive-pdf/1"

TEXT_STATUSES = {
    "text": "text extracted",
    "scanned": "pages are images: no text layer (OCR would be needed)",
    "empty": "no text and no images",
    "no_unicode": "text drawn with fonts that give no Unicode mapping: unreadable without OCR",
    "encrypted": "encrypted with a password",
    "unreadable": "not a PDF, or too broken to parse",
}

MAX_PAGES = 150
# Lines of CJK text set with 1.5 line spacing are further apart than pdfminer's default
# line_margin (0.5); its boxes set the reading order, so keep such lines together.
LAPARAMS = LAParams(line_margin=0.8)
# Running heads and feet are looked for among this many lines at the top and bottom of a page.
EDGE_LINES = 3
# Below this share of (cid:N) glyphs, the text is kept (a few unmapped symbols are common).
MAX_UNMAPPED_SHARE = 0.3
# A headline is set at least this much larger than the body text.
HEADLINE_SIZE_RATIO = 1.15
HEADLINE_MAX_LINES = 4
# The first characters of the text searched for a release date, and the last ones
# (for statements dated under the signature).
DATE_HEAD_CHARS, DATE_TAIL_CHARS = 600, 300
MIN_TEXT_CHARS = 20

PAGE_NUMBER_RE = re.compile(
    r"^\W*(?:(?:page|p\.|seite|página|pagina)\s*)?\d{1,4}(?:\s*(?:of|/|de|von|sur|di)\s*\d{1,4})?\W*$"
    r"|^\W*第\s*\d{1,4}\s*页(?:\s*[,，/]?\s*共\s*\d{1,4}\s*页)?\W*$"
    r"|^\W*\d{1,4}\s*/\s*\d{1,4}\W*$",
    re.IGNORECASE,
)
JUNK_TITLE_RE = re.compile(
    r"^(microsoft (word|powerpoint|excel)\s*-|untitled|document\s*\d*$|doc\d*$|scan|img|image|slide \d|"
    r"powerpoint presentation|title$|\(?anonymous|unknown|\s*$)"
    r"|\.(docx?|pdf|rtf|odt|wpd|indd|pptx?|xlsx?|tiff?|jpe?g|png)\s*$",
    re.IGNORECASE,
)
CUT_CID_RE = re.compile(r"\(cid:\d+\)")
LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
                           "\ufb05": "st", "\ufb06": "st", "\u00ad": None})
# Characters after which a paragraph is finished (a page break after them starts a new one).
SENTENCE_END = ".!?。！？:：;；\"”’)）」』】"
CJK_PUNCT = "，。、：；？！“”‘’（）《》〈〉「」『』【】—…·"
HAN_OR_PUNCT_RE = re.compile(r"[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
                             + re.escape(CJK_PUNCT) + "]")


@dataclass
class Line:
    text: str
    x0: float
    x1: float
    top: float
    bottom: float
    size: float
    page: int  # 0-based


@dataclass
class PdfExtraction:
    """``extraction`` plus what the caller needs to record about the PDF itself."""

    extraction: Extraction
    status: str  # a key of TEXT_STATUSES
    pages: int = 0
    pages_read: int = 0
    metadata: dict = field(default_factory=dict)  # /Info strings, xmp:CreateDate, dc:title, /Lang

    @property
    def has_text(self) -> bool:
        return self.status == "text"


# --- reading the PDF ---------------------------------------------------------------------------


class _Layout:
    """Lines, image count and metadata of one PDF."""

    def __init__(self, body: bytes, max_pages: int = MAX_PAGES, laparams: LAParams | None = LAPARAMS):
        parser = PDFParser(io.BytesIO(body))
        self.document = PDFDocument(parser)
        self.metadata = _metadata(self.document)
        self.lines: list[Line] = []
        self.page_heights: list[float] = []
        self.images = 0
        self.chars = 0
        self.unmapped = 0
        self.pages = resolve1(self.document.catalog.get("Pages", {})).get("Count", 0) if self.document.catalog else 0
        manager = PDFResourceManager(caching=True)
        device = PDFPageAggregator(manager, laparams=laparams)
        interpreter = PDFPageInterpreter(manager, device)
        for number, page in enumerate(PDFPage.create_pages(self.document)):
            if number >= max_pages:
                break
            interpreter.process_page(page)
            self._read_page(device.get_result(), number)
        self.pages_read = len(self.page_heights)
        self.pages = max(self.pages or 0, self.pages_read)

    def _read_page(self, layout: LTPage, number: int) -> None:
        self.page_heights.append(layout.height)
        for element in _walk(layout):
            if isinstance(element, LTImage):
                self.images += 1
            elif isinstance(element, LTTextBox):
                for line in element:
                    if isinstance(line, LTTextLine):
                        self._read_line(line, number)
            elif isinstance(element, LTTextLine):  # a line outside any box
                self._read_line(element, number)

    def _read_line(self, line: LTTextLine, page: int) -> None:
        raw = line.get_text()
        unmapped = len(CUT_CID_RE.findall(raw))
        text = " ".join(CUT_CID_RE.sub("", raw).translate(LIGATURES).split())
        sizes = [c.size for c in line if isinstance(c, LTChar) and not c.get_text().isspace()]
        self.chars += len(sizes)
        self.unmapped += unmapped
        if text:
            self.lines.append(Line(unicodedata.normalize("NFC", text), line.x0, line.x1, line.y1, line.y0,
                                   statistics.median(sizes) if sizes else 0.0, page))


def _walk(element):
    """Text boxes, loose text lines and images, descending into figures and groups."""
    for child in element:
        if isinstance(child, (LTTextBox, LTImage, LTTextLine)):
            yield child
        elif hasattr(child, "__iter__"):
            yield from _walk(child)


def _text_value(value) -> str | None:
    value = resolve1(value)
    if isinstance(value, bytes):
        value = decode_text(value)
    elif isinstance(value, PSLiteral):
        value = value.name
    if not isinstance(value, str):
        return None
    value = " ".join(value.replace("\x00", "").split())
    return value or None


def _metadata(document: PDFDocument) -> dict:
    found: dict = {}
    for info in document.info or []:
        for key, value in info.items():
            text = _text_value(value)
            if text:
                found.setdefault(key, text)
    catalog = document.catalog or {}
    lang = _text_value(catalog.get("Lang"))
    if lang:
        found["Lang"] = lang
    stream = resolve1(catalog.get("Metadata"))
    if stream is not None and hasattr(stream, "get_data"):
        try:
            found.update(_xmp(stream.get_data()))
        except Exception as exc:  # noqa: BLE001 - broken XMP is common and never worth failing for
            logger.debug("unreadable XMP metadata: %s", exc)
    return found


XMP_FIELDS = {
    "xmp:CreateDate": "//*[local-name()='CreateDate']",
    "photoshop:DateCreated": "//*[local-name()='DateCreated']",
    "dc:title": "//*[local-name()='title']//*[local-name()='li']",
    "dc:language": "//*[local-name()='language']//*[local-name()='li']",
}


def _xmp(data: bytes) -> dict:
    root = etree.fromstring(data.strip(), parser=etree.XMLParser(recover=True, resolve_entities=False))
    if root is None:
        return {}
    found = {}
    for key, xpath in XMP_FIELDS.items():
        for node in root.xpath(xpath):
            text = " ".join((node.text or "").split())
            if text:
                found[key] = text
                break
    # Attribute form: <rdf:Description xmp:CreateDate="...">
    for node in root.xpath("//@*[local-name()='CreateDate']"):
        found.setdefault("xmp:CreateDate", str(node))
    return found


# --- running heads and feet ---------------------------------------------------------------------


def _furniture_key(line: Line) -> tuple[str, int]:
    """Running heads and feet repeat their text (page numbers aside) at the same height."""
    return re.sub(r"\d+", "#", line.text.casefold()), round(line.top / 6)


def remove_furniture(lines: list[Line], pages: int) -> list[Line]:
    """Drop running heads/feet (recurring at a page edge on half the pages or more) and page numbers."""
    by_page: dict[int, list[Line]] = {}
    for line in lines:
        by_page.setdefault(line.page, []).append(line)
    edges: dict[int, list[Line]] = {}
    counts: dict[str, set[int]] = {}
    for page, page_lines in by_page.items():
        ordered = sorted(page_lines, key=lambda l: -l.top)
        edges[page] = ordered[:EDGE_LINES] + ordered[max(EDGE_LINES, len(ordered) - EDGE_LINES):]
        for line in edges[page]:
            counts.setdefault(_furniture_key(line), set()).add(page)
    recurring = {key for key, seen in counts.items() if len(seen) >= 2 and len(seen) >= pages / 2}
    dropped = set()
    for page_edges in edges.values():
        for line in page_edges:
            if _furniture_key(line) in recurring or PAGE_NUMBER_RE.match(line.text):
                dropped.add(id(line))
    return [line for line in lines if id(line) not in dropped]


# --- paragraphs ---------------------------------------------------------------------------------


def _join(left: str, right: str) -> str:
    if not left:
        return right
    if HAN_OR_PUNCT_RE.match(left[-1]) and HAN_OR_PUNCT_RE.match(right[0]):
        return left + right
    if left.endswith("-") and len(left) > 1 and left[-2].isalpha():
        return left + right  # "climate-" + "resilient"
    return f"{left} {right}"


def _starts_paragraph(previous: Line, line: Line, left: float, right: float, line_gap: float) -> bool:
    size = line.size or previous.size or 10.0
    indented = 0.8 * size < line.x0 - left < 8 * size
    if line.page != previous.page:
        # A paragraph cut by a page break goes on in the same type, unindented, after no full stop.
        return previous.text[-1] in SENTENCE_END or abs(line.size - previous.size) > 1.0 or indented
    if line.top > previous.top:  # next column
        return True
    if abs(line.size - previous.size) > 1.0:  # headline, subheading
        return True
    if previous.bottom - line.top > line_gap + 0.4 * size:  # space between paragraphs
        return True
    if indented:  # first-line indent
        return True
    # A short line ending a sentence closes its paragraph even without spacing or indent.
    return previous.x1 < right - 3 * size and previous.text[-1] in SENTENCE_END


def paragraphs(lines: list[Line]) -> list[tuple[str, Line]]:
    """Paragraph texts with their first line, from lines in reading order.

    pdfminer's text boxes are not used as paragraphs: it only groups lines that are
    left-, right- or centre-aligned, so an indented first line and a short last line
    come out as boxes of their own. Paragraphs start at a change of type size, a gap
    larger than the usual line gap, a first-line indent, or after a short line that
    ends a sentence; one cut by a page break (after the running heads and feet are
    gone) goes on when the new page starts in the same type, unindented, after a
    line that did not end a sentence.
    """
    if not lines:
        return []
    gaps = [a.bottom - b.top for a, b in itertools.pairwise(lines) if a.page == b.page and b.top <= a.bottom + 0.5]
    line_gap = statistics.median(gaps) if gaps else 0.0
    margins = {}
    for page in {line.page for line in lines}:
        page_lines = [line for line in lines if line.page == page]
        lefts = [round(line.x0) for line in page_lines]
        margins[page] = (max(set(lefts), key=lefts.count), max(line.x1 for line in page_lines))
    result: list[tuple[str, Line]] = []
    current, first, previous = "", None, None
    for line in lines:
        left, right = margins[line.page]
        if previous is not None and _starts_paragraph(previous, line, left, right, line_gap):
            result.append((current, first))
            current, first = "", None
        current = _join(current, line.text)
        first = first or line
        previous = line
    result.append((current, first))
    return result


# --- headline -----------------------------------------------------------------------------------


def is_junk_title(title: str | None, url: str | None = None) -> bool:
    """True for titles a word processor or scanner made up: file names, "Microsoft Word - x.docx"..."""
    if not title or JUNK_TITLE_RE.search(title.strip()):
        return True
    words = title.split()
    if len(words) < 2 and len(CJK_RE.findall(title)) < 4:
        return True  # "MR-2024-031", "Statement"
    if url:
        stem = urlsplit(url).path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        if stem and stem.casefold() == title.strip().casefold():
            return True
    return False


def headline_from_layout(lines: list[Line]) -> list[Line]:
    """The largest-type lines at the top of page 1, when they stand out from the body text."""
    first_page = [line for line in lines if line.page == min((l.page for l in lines), default=0)]
    sizes = [line.size for line in lines if line.size]
    if not first_page or not sizes:
        return []
    body_size = statistics.median(sizes)
    top = first_page[:12]
    biggest = max(line.size for line in top)
    if biggest < body_size * HEADLINE_SIZE_RATIO:
        return []
    start = next(i for i, line in enumerate(top) if line.size == biggest)
    chosen = []
    for line in top[start:]:
        if abs(line.size - biggest) > 0.5 or len(chosen) >= HEADLINE_MAX_LINES:
            break
        chosen.append(line)
    return chosen


def _fold(text: str) -> str:
    return re.sub(r"\W+", "", unicodedata.normalize("NFKC", text).casefold())


def find_title(metadata: dict, lines: list[Line], url: str | None, hint: str | None) -> str | None:
    for key in ("Title", "dc:title"):
        value = metadata.get(key)
        if value and not is_junk_title(value, url):
            return value
    headline = headline_from_layout(lines)
    if headline:
        text = ""
        for line in headline:
            text = _join(text, line.text)
        return text
    hint = " ".join((hint or "").split())
    if hint:
        return hint
    first = next((line.text for line in lines if len(line.text) > 8 and not dates_in_text(line.text)), None)
    return first


# --- date ---------------------------------------------------------------------------------------


def pdf_date(value: str | None) -> date | None:
    """The calendar date of a PDF date (``D:20240315093000+11'00'``) or an XMP/ISO date, as written."""
    match = re.match(r"\s*(?:D:)?((?:19|20)\d{2})-?(\d{2})-?(\d{2})", value or "")
    return valid_date(*map(int, match.groups())) if match else None


def _text_date(text: str, day_first: bool, ok) -> date | None:
    head, tail = text[:DATE_HEAD_CHARS], text[-DATE_TAIL_CHARS:] if len(text) > DATE_HEAD_CHARS else ""
    for part in (head, tail):
        found = dates_in_text(part, day_first)
        for position, value in (found if part is head else reversed(found)):
            if NOT_PUBLISHED_RE.search(part[max(0, position - 40):position]):
                continue
            if ok(value):
                return value
    return None


def find_date(text: str, url: str | None, metadata: dict, *, fetched_on: date, hints: dict | None,
              language: str | None) -> tuple[str | None, str | None]:
    finder = DateFinder(None, url, fetched_on=fetched_on, language=language)
    steps = (
        ("url", finder.from_url),
        ("feed", lambda: finder.hint(hints, "feed")),
        ("text", lambda: _text_date(text, finder.day_first, finder._ok)),
        ("listing", lambda: finder.hint(hints, "listing")),
        ("pdf-meta", lambda: finder._ok(pdf_date(metadata.get("CreationDate")))
         or finder._ok(pdf_date(metadata.get("xmp:CreateDate")))
         or finder._ok(pdf_date(metadata.get("photoshop:DateCreated")))),
        ("sitemap", lambda: finder.hint(hints, "sitemap")),
    )
    for source, step in steps:
        found = step()
        if found and MIN_DATE <= found <= fetched_on:
            return found.isoformat(), source
    return None, None


# --- entry points -------------------------------------------------------------------------------


def _language_tree(metadata: dict):
    lang = metadata.get("Lang") or metadata.get("dc:language") or ""
    lang = re.sub(r"[^A-Za-z_-]", "", lang)
    return lxml.html.fromstring(f'<html lang="{lang}"><body></body></html>' if lang else "<html><body></body></html>")


def _status(layout: _Layout, text: str) -> str:
    if layout.unmapped and layout.unmapped > MAX_UNMAPPED_SHARE * (layout.unmapped + len(text)):
        return "no_unicode"
    if len(text.strip()) >= MIN_TEXT_CHARS or (text.strip() and not layout.images):
        return "text"
    return "scanned" if layout.images else "empty"


def analyse_pdf(body: bytes, url: str | None = None, *, fetched_at: datetime | None = None,
                hints: dict | None = None, languages: list[str] | None = None) -> PdfExtraction:
    """Extract a release from PDF bytes; never raises for a bad PDF (see ``status``)."""
    hints = hints or {}
    fetched_at = fetched_at or datetime.now(timezone.utc)
    if fetched_at.tzinfo is not None:
        fetched_at = fetched_at.astimezone(timezone.utc)
    try:
        layout = _Layout(body)
    except PDFEncryptionError as exc:
        logger.warning("encrypted PDF %s: %s", url, exc)
        return _without_text(url, hints, fetched_at, "encrypted")
    except Exception as exc:  # noqa: BLE001 - pdfminer raises many types on broken files
        logger.warning("unreadable PDF %s: %s: %s", url, type(exc).__name__, exc)
        return _without_text(url, hints, fetched_at, "unreadable")
    kept = remove_furniture(layout.lines, layout.pages_read)
    parts = [text for text, _ in paragraphs(kept)]
    title = find_title(layout.metadata, kept, url, hints.get("title"))
    if title and parts and _fold(parts[0]) == _fold(title):
        parts = parts[1:]  # the headline is the title, not the first paragraph
    text = normalise_text("\n".join(parts))
    status = _status(layout, text)
    if status != "text":
        text = ""
    tree = _language_tree(layout.metadata)
    language = detect_language(tree, text, title, languages) if (text or title) else None
    published, date_source = find_date(text, url, layout.metadata, fetched_on=fetched_at.date(), hints=hints,
                                       language=language)
    extraction = Extraction(title, text, published, date_source, language, "pdf", None)
    return PdfExtraction(extraction, status, layout.pages, layout.pages_read, layout.metadata)


def _without_text(url, hints, fetched_at, status) -> PdfExtraction:
    published, date_source = find_date("", url, {}, fetched_on=fetched_at.date(), hints=hints, language=None)
    title = " ".join((hints.get("title") or "").split()) or None
    return PdfExtraction(Extraction(title, "", published, date_source, None, "pdf", None), status)


def extract_pdf(body: bytes, url: str | None = None, *, fetched_at: datetime | None = None,
                hints: dict | None = None, languages: list[str] | None = None) -> Extraction:
    """Like :func:`pipelines.extraction.extract` for a PDF. ``text`` is "" when the PDF has no
    usable text: call :func:`analyse_pdf` (``.status``) or :func:`has_text_layer` to know why."""
    return analyse_pdf(body, url, fetched_at=fetched_at, hints=hints, languages=languages).extraction


def has_text_layer(body: bytes, max_pages: int = 5) -> bool:
    """True when the first ``max_pages`` pages of the PDF hold text with a Unicode mapping."""
    try:
        layout = _Layout(body, max_pages=max_pages)
    except Exception:  # noqa: BLE001 - as above: any failure means no usable text layer
        return False
    text = "".join(line.text for line in layout.lines)
    return _status(layout, text) == "text"
