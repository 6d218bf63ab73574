"""Clean one fetched page into a release: headline, main text, date, language.

Called by the spider / store pipeline as ``extract(body, url, ...)`` and by the
``pressarchive extract`` command. The steps:

1. bytes -> text with :func:`pipelines.encoding.decode_html` (wrong or missing
   charset declarations, GBK without any declaration);
2. one lxml parse, shared by every step below;
3. main text (:func:`choose_text`): trafilatura's default mode with its readability/jusText
   fallback, comments extracted apart, the same text plain trafilatura gives; completed by
   its recall mode where that only fills gaps inside the article (list items, subheadings,
   flattened layout tables: :func:`merge_recall`) and by the paragraphs, captions and
   subheadings of the article container it discarded (embeds, slideshows, text after a
   heading outside any paragraph: :func:`fill_dom_gaps`); boilerplate lines
   (:data:`BOILERPLATE_LINE_RE`: "Date modified", share widgets, cookie notices, newsletter
   boxes) and flattened menus (:func:`is_menu_line`, :func:`drop_menu_runs`) removed.
   A site-family body container (:data:`BODY_CONTAINERS`: TRS CMS ``.TRS_Editor``, GOV.UK
   ``.gem-c-govspeak``, canada.ca/WET, Drupal ``.field--name-body``) replaces that text only
   when the two agree (:func:`family_agrees`). No silent loss: a text much smaller than what
   recall mode finds gives way to recall's when that is article text
   (:func:`guard_against_loss`), and ``Extraction.extractor`` names the path that produced
   the text. Han-script pages (judged on all visible text when they have no ``<p>``) get
   their layout tables unwrapped. A first line repeating the headline is dropped;
4. headline: the ``<h1>`` when the ``<title>`` or ``og:title`` confirms it, else
   ``og:title`` / TRS ``ArticleTitle`` / the ``<title>`` minus its " | Site name"
   part, else the crawl's title hint;
5. publication date and its source: :mod:`pipelines.dates` (precedence there);
6. language: script (Han, kana, hangul, Cyrillic...) and stopwords, with
   ``<html lang>`` and the source's expected languages as tie-breakers.

Bump :data:`EXTRACTOR_VERSION` whenever output for the same bytes changes: the
store records it per release so old rows can be re-extracted.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from urllib.parse import urljoin

import trafilatura

from pipelines.dates import DateFinder
from pipelines.encoding import decode_html
from pipelines.extraction.alternates import find_alternates
from pipelines.extraction.body import choose_text
from pipelines.extraction.boilerplate import drop_repeated_headline
from pipelines.extraction.language import detect_language
from pipelines.extraction.text import (
    LINK_ITEMS_KEPT,
    bound_link_lists,
    content_hash,
    normalise_text,
    parse_html,
    word_count,
)
from pipelines.extraction.title import _clean, find_title

logger = logging.getLogger(__name__)


EXTRACTOR_VERSION = f"pressarchive-extract/8 trafilatura/{trafilatura.__version__}"


__all__ = [
    "EXTRACTOR_VERSION",
    "Extraction",
    "content_hash",
    "decode_html",
    "extract",
    "normalise_text",
    "word_count",
]


INTERNAL_FIELDS = ("notes", "page_date", "page_date_source", "alternates")


@dataclass
class Extraction:
    """What the archive stores about one page's content.

    ``date_source`` is one of: ``meta``, ``json-ld``, ``url``, ``feed``, ``time``,
    ``listing``, ``text``, ``sitemap``, ``htmldate`` (see :mod:`pipelines.dates`),
    or None when no date was found. ``encoding`` is ``"unicode"`` when ``extract``
    was given text rather than bytes.
    """

    title: str | None
    text: str
    published: str | None
    date_source: str | None
    language: str | None
    encoding: str
    canonical_url: str | None
    # Lines for the crawl's log (e.g. a URL date that lost to the date printed in the page).
    notes: list = field(default_factory=list)
    # The date printed in the page itself and its source (``time``/``text``), when asked for
    # (``hints["date_from_url"]``): a source's URL date is checked against it (pipelines/cleaning.py).
    page_date: str | None = None
    page_date_source: str | None = None
    # EXTRACTOR_VERSION and the path that produced the text ("... text=trafilatura+recall"; see
    # MainText): what the archive's ``extractor`` column should hold for this page.
    extractor: str | None = None
    # The other language versions the page declares (hreflang, a language switcher, a canonical
    # elsewhere): pipelines/extraction/alternates.py; the archive links translations from them.
    alternates: list = field(default_factory=list)

    def as_dict(self) -> dict:
        """The documented fields (``pressarchive extract`` prints them); notes and the printed
        date are for the crawl's checks and log, not part of the record."""
        return {k: v for k, v in asdict(self).items() if k not in INTERNAL_FIELDS}


def find_canonical(tree, url: str | None) -> str | None:
    for value in tree.xpath("//link[@rel='canonical']/@href | //meta[@property='og:url']/@content"):
        value = value.strip()
        if value:
            absolute = urljoin(url or "", value)
            if absolute.startswith(("http://", "https://")):
                return absolute
    return None


def extract(
    body: bytes | str,
    url: str | None = None,
    *,
    http_charset: str | None = None,
    fetched_at: datetime | None = None,
    hints: dict | None = None,
    languages: list[str] | None = None,
) -> Extraction:
    """Extract a release from a fetched page (bytes as fetched, or already-decoded text)."""
    if isinstance(body, bytes):
        html, encoding = decode_html(body, http_charset)
    else:
        html, encoding = body, "unicode"
    fetched_at = fetched_at or datetime.now(timezone.utc)
    if fetched_at.tzinfo is not None:
        fetched_at = fetched_at.astimezone(timezone.utc)
    tree = parse_html(html)
    if tree is None:
        logger.warning("unparseable page: %s", url)
        return Extraction(_clean((hints or {}).get("title")) or None, "", None, None, None, encoding, None)
    # Before the text is chosen: extraction may prune the menus a language switcher sits in.
    alternates = find_alternates(tree, url, find_canonical(tree, url))
    title = find_title(tree, (hints or {}).get("title"))
    links, cut = bound_link_lists(tree)
    main = choose_text(tree, url)
    text = drop_repeated_headline(main.text, title)
    language = detect_language(tree, text, title, languages)
    notes: list[str] = [main.note] if main.note else []
    if cut:
        notes.append(f"link lists of {links:,} items: the text was looked for in the first {LINK_ITEMS_KEPT:,} "
                     f"(the other {cut:,} not read)")
    finder = DateFinder(tree, url, fetched_on=fetched_at.date(), language=language, headline=title)
    published, date_source = finder.best(hints, notes)
    result = Extraction(title, text, published, date_source, language, encoding, find_canonical(tree, url), notes,
                        extractor=f"{EXTRACTOR_VERSION} text={main.path}", alternates=alternates)
    if (hints or {}).get("date_from_url"):
        printed = finder.printed()
        if printed:
            result.page_date, result.page_date_source = printed[0].isoformat(), printed[1]
    return result
