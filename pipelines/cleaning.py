"""What a cleaning worker runs: one fetched page in, its cleaned fields out.

:func:`clean_for_archive` decodes the page and extracts text, title, date and language with
:func:`pipelines.extraction.extract` (HTML) or :func:`pipelines.pdf.analyse_pdf`
(``content_type`` ``application/pdf``), after the source's own selectors and URL date rule;
a page with nothing to store raises :class:`NoText`. ``pressarchive reextract`` cleans stored
captures again with :func:`clean_capture`.

No Scrapy and no Twisted here: the crawl's pool workers (pipelines/clean.py) start from a
forkserver that has imported this module and the extractor, so a worker starts without
importing either. The other way round, the crawl's own process imports this module (for
:class:`NoText`, :func:`is_pdf` and the functions it sends to the workers) but never cleans a
page: the extractor (trafilatura, its language and date libraries) is imported inside the
functions that use it, so the crawl does not pay for importing it a second time.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from datetime import date, datetime

import re2

from archive.patterns import MAX_URL_CHARS, safe_regex
from pipelines import dates
from pipelines.encoding import decode_notes

PDF_TYPES = ("application/pdf", "application/x-pdf")
# A headline longer than this is a broken page (a <title> left open swallows the document).
MAX_TITLE_CHARS = 1000
# What single-page apps show when scripts do not run; such a page has no release text.
SCRIPT_ONLY_RE = re.compile(
    r"(enable|turn on|activate|allow)\s+javascript|javascript\s+(is\s+)?(required|disabled|needed)"
    r"|requires?\s+javascript|(启用|开启|打开|支持).{0,8}javascript", re.IGNORECASE)
SCRIPT_ONLY_MAX_WORDS = 40
# Formats that are never a page, whatever the Content-Type says.
BINARY_MAGIC = (b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"PK\x03\x04", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"7z\xbc\xaf",
                b"Rar!", b"\x00\x00\x01\x00", b"RIFF", b"OggS", b"\x7fELF", b"MZ", b"wOFF", b"wOF2", b"\x00\x01\x00\x00")
CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 12, 13, 27))


def is_pdf(body: bytes, content_type: str | None = None) -> bool:
    """A PDF by its Content-Type or, as servers often send octet-stream, by its magic bytes."""
    mime = (content_type or "").split(";")[0].strip().lower()
    return mime in PDF_TYPES or body[:1024].lstrip().startswith(b"%PDF-")


class NoText(Exception):
    """The page has nothing to store; ``str()`` says why, for the log line."""


def clean_page(body: bytes, url: str, content_type: str | None, http_charset: str | None, fetched_at: str,
               hints: dict, languages: list[str] | None) -> dict:
    """Cleaned fields of one page (runs in a worker process); raises NoText for an empty page."""
    # Imported here, not at the top (see the module's docstring): preloaded in workers.
    from pipelines import extraction

    when = datetime.fromisoformat(fetched_at.replace("Z", "+00:00"))
    if content_type in PDF_TYPES:
        from pipelines import pdf

        analysed = pdf.analyse_pdf(body, url, fetched_at=when, hints=hints, languages=languages)
        result, version = analysed.extraction, getattr(pdf, "PDF_EXTRACTOR_VERSION", "pdf")
        if not analysed.has_text:
            if analysed.status == "unreadable":
                raise NoText("PDF that cannot be read")
            # A scanned (or encrypted, or glyph-only) PDF is a release all the same: kept with
            # its title and date and the reason it has no text, never as empty text.
            return {
                "notes": [f"PDF without usable text ({pdf.TEXT_STATUSES.get(analysed.status, analysed.status)})"],
                "title": result.title or hints.get("title"), "text": None, "text_status": analysed.status,
                "pages": analysed.pages, "published": result.published, "date_source": result.date_source,
                "language": result.language, "encoding": result.encoding, "canonical_url": None,
                "content_hash": None, "word_count": 0, "extractor": version,
            }
    else:
        if looks_binary(body):
            raise NoText("binary content (not a web page) served as text")
        with decode_notes() as decoding:  # bytes replaced, UTF-8 passages kept: logged with the URL
            result = extract_html(body, url, http_charset, when, hints, languages)
        version = result.extractor or extraction.EXTRACTOR_VERSION
    if not result.text.strip():
        raise NoText("no main text")
    words = extraction.word_count(result.text)
    if words <= SCRIPT_ONLY_MAX_WORDS and SCRIPT_ONLY_RE.search(result.text):
        raise NoText("JavaScript-only page (no text without running its scripts)")
    title = result.title or hints.get("title")
    notes = [str(note) for note in dict.fromkeys(decoding)] if content_type not in PDF_TYPES else []
    notes += getattr(result, "notes", None) or []
    if title and len(title) > MAX_TITLE_CHARS:
        notes.append(f"title of {len(title)} characters cut to {MAX_TITLE_CHARS}")
        title = shorten(title, MAX_TITLE_CHARS)
    return {
        "notes": notes,
        "title": title,
        "text": result.text,
        "text_status": "text",
        "pages": analysed.pages if content_type in PDF_TYPES else None,
        "published": result.published,
        "date_source": result.date_source,
        "language": result.language,
        "encoding": result.encoding,
        "canonical_url": result.canonical_url,
        "content_hash": extraction.content_hash(result.text),
        "word_count": words,
        "extractor": version,
        # other language versions the page declares (pipelines/extraction/alternates.py)
        "alternates": getattr(result, "alternates", None) or [],
    }


def clean_for_archive(*args) -> dict:
    """:func:`clean_page` plus the search form of title and text and the text signed for the
    repost linker, made here in the worker so that the archive's single writer only has to
    store them."""
    from archive import families, search_index

    cleaned = clean_page(*args)
    cleaned["search_form"] = (search_index.search_form(cleaned["title"]), search_index.search_form(cleaned["text"]))
    cleaned["minhash"] = families.sign(cleaned["text"])
    return cleaned


def extract_html(body: bytes, url: str, http_charset, when: datetime, hints: dict, languages):
    """trafilatura-based extraction, after the source's own selectors and URL date rule, if any.

    ``selectors`` (ordered CSS fallbacks): ``remove`` drops nodes, ``body`` keeps only the first
    matching node for extraction (with the page's head, so meta dates still count), ``title`` and
    ``date`` win over what extraction finds. ``date_from_url`` beats dates guessed from the page
    text, not the page's own publication metadata.
    """
    from pipelines import extraction

    selectors = hints.get("selectors") or {}
    title = sel_date = None
    source_bytes = body
    if selectors:
        from parsel import Selector

        from pipelines.extraction.alternates import find_alternates

        text, encoding = extraction.decode_html(body, http_charset)
        page = Selector(text=text)
        # The whole page's evidence of other language versions, before nodes are dropped or cut out.
        alternates = find_alternates(page.root, url, extraction.find_canonical(page.root, url))
        for css in selectors.get("remove", []):
            page.css(css).drop()
        title = _first_css(page, selectors.get("title", []))
        sel_date = dates.parse_date_value(_first_css(page, selectors.get("date", [])))
        for css in selectors.get("body", []):
            node = page.css(css)
            if node and " ".join(node.xpath("string()").get("").split()):
                head = page.css("head").get() or ""
                heading = f"<h1>{title}</h1>" if title else ""
                source_bytes = f"<html>{head}<body><article>{heading}{node.get()}</article></body></html>"
                break
        else:
            source_bytes = page.get()
    result = extraction.extract(source_bytes, url, http_charset=http_charset, fetched_at=when, hints=hints,
                                languages=languages)
    if selectors:
        result.encoding, result.alternates = encoding, alternates
    if title:
        result.title = title
    if sel_date and sel_date.year >= 1900 and sel_date <= when.date():  # (a selector may hit "0001-01-01")
        result.published, result.date_source = sel_date.isoformat(), "selector"
    elif hints.get("date_from_url") and result.date_source not in ("meta", "json-ld", "feed"):
        found = url_date(hints["date_from_url"], url)
        if found and found <= when.date():
            printed = date.fromisoformat(result.page_date) if result.page_date else None
            if printed and abs((printed - found).days) > dates.URL_DATE_TOLERANCE_DAYS:
                # A re-stamped archive (PRC MFA's 2024 migration): the page's own date wins.
                result.published, result.date_source = result.page_date, result.page_date_source
                note = (f"the URL says {found.isoformat()} but the page prints {result.page_date} "
                        f"({result.page_date_source}); the page's date is kept")
                if note not in result.notes:
                    result.notes.append(note)
            else:
                result.published, result.date_source = found.isoformat(), "url"
    return result


def _first_css(page, selectors) -> str | None:
    for css in selectors:
        found = page.css(css).get() if "::" in css else page.css(css).xpath("string()").get()
        if found and found.strip():
            return " ".join(found.split())
    return None


def url_date(pattern: str, url: str):
    """The date a source's ``date_from_url`` finds in ``url``, or None.

    The pattern runs on RE2 (:func:`archive.patterns.safe_regex`: linear time on a hostile
    URL) and never on a URL over ``MAX_URL_CHARS``; a group that caught something other
    than a date gives None, never an exception that would lose the page.
    """
    if not url or len(url) > MAX_URL_CHARS:
        return None
    try:
        match = safe_regex(pattern).search(url)
    except re2.error:  # not validated (an archive's sources row): no date rather than no page
        return None
    if not match:
        return None
    if {"y", "m", "d"} <= set(match.re.groupindex):
        try:
            return dates.valid_date(int(match["y"]), int(match["m"]), int(match["d"]))
        except (TypeError, ValueError, OverflowError):  # an optional group left out, letters, 10**40
            return None
    return dates.parse_date_value(match.group(1))


def looks_binary(body: bytes) -> bool:
    """An image, archive or executable, or bytes no text encoding produces."""
    head = body[:4096]
    if head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return False  # a byte-order mark: text (UTF-16 is full of NUL bytes)
    if head.startswith(BINARY_MAGIC):
        return True
    return bool(head) and sum(head.count(bytes([b])) for b in CONTROL_BYTES) > len(head) * 0.05


def shorten(text: str, limit: int) -> str:
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + "…"


def _init_worker(parent_pid: int) -> None:
    # Ctrl-C and systemd's SIGTERM reach the whole process group: the crawl decides
    # when workers stop (after in-flight pages), not the signal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The crawl logs one line per page problem; the extractors' own warnings would be noise.
    logging.getLogger().addHandler(logging.NullHandler())
    # A crawl killed with SIGKILL cannot shut its pool down: leave with it.
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()


def _exit_with_parent(crawl_pid: int) -> None:
    # Our parent is the forkserver, which exits when the crawl dies; a crawl killed
    # but not yet reaped is a zombie that still answers kill(pid, 0).
    parent = os.getppid()
    while True:
        time.sleep(0.5)
        if os.getppid() != parent or not _alive(crawl_pid):
            os._exit(0)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def clean_capture(body: bytes, url: str, content_type: str | None, http_charset: str | None, fetched_at: str,
                  hints: dict, languages: list[str] | None) -> tuple[dict | None, list[str], str | None]:
    """A stored raw capture cleaned again (``pressarchive reextract``, archive/reextract.py):
    ``(values, notes, None)``, or ``(None, [], why)`` when the page has no text."""
    try:
        with decode_notes() as decoding:
            cleaned = clean_page(body, url, content_type, http_charset, fetched_at, hints, languages)
    except NoText as exc:
        return None, [], str(exc)
    cleaned.pop("alternates", None)  # (page evidence is stored by the crawl's writer, not by reextract)
    return cleaned, [*dict.fromkeys(map(str, decoding)), *cleaned.pop("notes", [])], None
