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

import hashlib
import logging
import re
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from urllib.parse import urljoin

import trafilatura
from lxml import etree
from trafilatura.utils import load_html

from pipelines.dates import DateFinder
from pipelines.encoding import decode_html

logger = logging.getLogger(__name__)

EXTRACTOR_VERSION = f"pressarchive-extract/5 trafilatura/{trafilatura.__version__}"

__all__ = [
    "EXTRACTOR_VERSION",
    "Extraction",
    "content_hash",
    "decode_html",
    "extract",
    "normalise_text",
    "word_count",
]

# Site-family article bodies, tried in order; the first that matches with enough text wins.
BODY_CONTAINERS = (
    # TRS CMS: PRC ministries and embassies (fmprc.gov.cn, *.china-embassy.gov.cn)
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' TRS_Editor ')]",
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' TRS_UEDITOR ')]",
    "//*[@id='News_Body_Txt_A']",
    # GOV.UK
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' gem-c-govspeak ')]",
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' govspeak ')]",
    # canada.ca (AEM components inside the WET template)
    "//main//*[contains(concat(' ', normalize-space(@class), ' '), ' cmp-text ')]",
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' mwsbodytext ')]",
    # Drupal body field (pm.gc.ca and many government Drupal sites). WordPress ".entry-content" is
    # not one: on pages of other sites it marked promotions and excerpts more often than articles,
    # and trafilatura finds WordPress articles by itself.
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' field--name-body ')]",
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' field-name-body ')]",
    # canada.ca / WET pages without AEM components: the whole main element, cleaned below
    "//main[@property='mainContentOfPage']",
)
# A container with less visible text than this is a teaser or an empty template slot.
MIN_CONTAINER_CHARS = 80
MIN_CONTAINER_CJK = 30

# A table cell with more text than this makes its table a layout table.
LAYOUT_CELL_CHARS = 200
# A site-family container replaces trafilatura's text only when the two agree (family_agrees): it
# holds this share of trafilatura's words, or this share of its own words are in trafilatura's
# text and it has at least FAMILY_MIN_SHARE as many. A container that matched a footer or a
# teaser slot must not win.
FAMILY_AGREEMENT = 0.8
FAMILY_MIN_SHARE = 0.5
# ...and when no more than this share of trafilatura's words are sentences of the elements that
# follow the container (else the article goes on in sibling containers the family class misses).
FAMILY_TAIL_SHARE = 0.1
# The no-silent-loss check: chosen text with fewer words than this share of what trafilatura's
# recall mode finds is a disagreement; recall's text wins when the lines it adds are article
# text (at least ARTICLE_SHARE of their words in sentences of ARTICLE_LINE_TOKENS words or more,
# or in lines of ARTICLE_LONG_LINE_TOKENS words), not menus or directories.
LOSS_SHARE = 0.5
ARTICLE_SHARE = 0.5
ARTICLE_LINE_TOKENS = 8
ARTICLE_LONG_LINE_TOKENS = 25
# Recall-mode text is merged in only when it fills gaps inside the base text's span
# with sentence-like lines (or long table rows), never when it only adds text around it.
RECALL_SENTENCE_SHARE = 0.45
RECALL_LONG_LINE_TOKENS = 200
RECALL_SPAN_COVERAGE = 0.9
# A long recall line (a table flattened to one row) replaces the base text only when it
# holds most of it and adds at most half again as much.
RECALL_TABLE_COVERAGE = 0.7
RECALL_TABLE_GROWTH = 1.5
# DOM gap filling (fill_dom_gaps): blocks looked at, the share of the extracted paragraphs'
# tokens the article container must hold, and what a block put back must look like.
GAP_BLOCKS_XPATH = "//p | //h2 | //h3 | //h4 | //h5 | //h6"
GAP_CONTAINER_SHARE = 0.9
GAP_SHINGLE = 3
GAP_MATCHED = 0.7
GAP_NEW = 0.2
GAP_DUPLICATE = 0.9
GAP_MIN_TOKENS = 8
GAP_MIN_CJK = 20
GAP_HEADING_TOKENS = 12
GAP_MAX_LINK_SHARE = 0.3
GAP_END_RE = re.compile(r"([.!?。！？;；:：…][\"”’)]?|\))\s*$")
# class/id words of blocks never put back: comments, promotions, teasers (besides BOILERPLATE_ATTR_RE).
GAP_WIDGET_ATTR_RE = re.compile(
    r"comment|respond|promo|donat|newsletter|subscri|teaser|recommend|popular|trending|sidebar|widget|"
    r"(^|[\s_-])(ads?|advert\w*|more|next|prev|pager|pagination|menu|nav\w*|footer|header)($|[\s_-])",
    re.IGNORECASE,
)
GAP_WIDGET_TAGS = {"nav", "aside", "header", "footer", "form", "script", "style", "noscript", "template",
                   "button", "select", "iframe"}
SENTENCE_END_RE = re.compile(r"[.!?。！？;；:：][\"”’)]?\s*$")

BLOCK_TAGS = {
    "p", "div", "section", "article", "li", "ul", "ol", "dl", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6",
    "blockquote", "pre", "table", "tr", "br", "hr", "header", "footer", "figure", "figcaption", "address",
    "center", "main", "details", "summary",
}
SKIP_TAGS = {"script", "style", "noscript", "template", "form", "button", "nav", "aside", "select", "iframe",
             "svg", "object", "input", "textarea", "label"}
# class/id words marking widgets inside an otherwise good container.
BOILERPLATE_ATTR_RE = re.compile(
    r"(^|[\s_-])(share|sharing|social|breadcrumbs?|related|cookie|consent|pagedetails|page-details|"
    r"report-problem|wb-share|print|toolbar|tags|skip|gc-pagedetails|datemod|feedback|"
    r"newsletters?|subscribe|subscription|signup|promo|promotion|donate|advert\w*|ads?|sponsored)($|[\s_-])",
    re.IGNORECASE,
)
# Whole lines that are site furniture, not release text (checked on short lines only).
BOILERPLATE_LINE_RE = re.compile(
    r"^\W*("
    r"date modified|last modified|last updated|page details|report a problem|share this( page| article)?"
    r"|share (on|via)\b|follow us|print( this page)?$|email this|back to top|top of page|you are here"
    r"|home\s*[>›»/|]|skip to (main )?content|cookies?\b|we use cookies|this (web)?site uses cookies"
    r"|copyright\b|©|\(c\) ?\d{4}|all rights reserved|版权所有|accept (all )?cookies|related (links|news|articles|content|topics|stories)\b"
    r"|(subscribe|sign up)( now| today| here)?\W*$|advertisement\W*$|sponsored( content)?\W*$"
    r"|(sign up|subscribe|register) (for|to) .{0,60}\b(newsletters?|news|e-?mails?|updates|alerts|delivery)\b"
    r"|date de modification|signaler un problème|partager cette page|imprimer"
    r"|letzte änderung|zuletzt aktualisiert|seite (drucken|teilen)|diese seite (drucken|teilen|weiterempfehlen)|nach oben|zum seitenanfang"
    r"|打印本页|打印|关闭窗口|关闭|分享到|返回顶部|【\s*(打印|关闭|大|中|小|字体)"
    r")",
    re.IGNORECASE,
)
BOILERPLATE_MAX_LINE = 120
# A menu flattened into a line: "Home | News | Contact us" (in a table cell the separators are
# escaped, "\\|"). Three separators or more and only short items: navigation, not text.
MENU_SEPARATOR_RE = re.compile(r"\s+\\\|\s+")
MENU_MIN_SEPARATORS = 3
MENU_ITEM_TOKENS = 4
# The same in running text with plain " | " separators (two suffice: "Transcript | mp4 | mp3"),
# and a line holding nothing but separators (a menu flattened one item per line).
PLAIN_MENU_SEPARATOR_RE = re.compile(r"\s+\|\s+")
PLAIN_MENU_MIN_SEPARATORS = 2
MENU_ROW_CELLS = 8
SEPARATOR_LINE_RE = re.compile(r"^[\s|•·/\\>»›\-–—]+$")

TITLE_SEPARATORS_RE = re.compile(r"\s+[|\-–—:·»]\s+|\s*[|_]\s*|\s+::\s+")
# Screen-reader-only headings ("Navigation und Service") are never the headline.
HIDDEN_CLASS_RE = re.compile(r"\b(aural|sr-only|visually-hidden|screen-reader-text|wb-inv|hidden|invisible)\b")
SITE_NAME_META = ("og:site_name", "application-name", "sitename", "site_name", "apple-mobile-web-app-title")
HEADLINE_META = ("og:title", "twitter:title", "articletitle", "dc.title", "dcterms.title", "title", "headline")

CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
WORD_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]|[^\W_]+")
SCRIPTS = (
    ("ja", re.compile(r"[\u3040-\u30ff]")),
    ("ko", re.compile(r"[\uac00-\ud7af]")),
    ("zh", re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")),
    ("ru", re.compile(r"[\u0400-\u04ff]")),
    ("ar", re.compile(r"[\u0600-\u06ff]")),
    ("el", re.compile(r"[\u0370-\u03ff]")),
    ("he", re.compile(r"[\u0590-\u05ff]")),
    ("th", re.compile(r"[\u0e00-\u0e7f]")),
)
NON_LATIN_RE = re.compile("|".join(pattern.pattern for _, pattern in SCRIPTS))
LETTER_RE = re.compile(r"[^\W\d_]")
STOPWORDS = {
    "en": {"the", "and", "of", "to", "in", "is", "that", "for", "with", "on", "was", "are", "by", "this", "be"},
    "fr": {"le", "la", "les", "et", "des", "du", "est", "une", "que", "pour", "dans", "sur", "au", "par", "qui"},
    "de": {"der", "die", "und", "das", "ist", "nicht", "mit", "den", "von", "zu", "sich", "des", "auf", "für", "ein"},
    "es": {"el", "la", "los", "las", "y", "que", "de", "en", "por", "con", "para", "una", "del", "se", "es"},
    "pt": {"o", "a", "os", "as", "e", "que", "de", "em", "para", "com", "uma", "do", "da", "não", "por"},
    "it": {"il", "la", "che", "di", "e", "per", "una", "con", "non", "sono", "della", "del", "gli", "nel", "è"},
    "nl": {"de", "het", "een", "en", "van", "is", "dat", "op", "te", "niet", "met", "voor", "zijn", "aan", "ook"},
}
LANGUAGE_SAMPLE = 3000
# Paragraph text shorter than this is too little to tell a page's script by.
HAN_SAMPLE_CHARS = 200


INTERNAL_FIELDS = ("notes", "page_date", "page_date_source")


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
    # (``hints["date_from_url"]``): a source's URL date is checked against it (pipelines/clean.py).
    page_date: str | None = None
    page_date_source: str | None = None
    # EXTRACTOR_VERSION and the path that produced the text ("... text=trafilatura+recall"; see
    # MainText): what the archive's ``extractor`` column should hold for this page.
    extractor: str | None = None

    def as_dict(self) -> dict:
        """The documented fields (``pressarchive extract`` prints them); notes and the printed
        date are for the crawl's checks and log, not part of the record."""
        return {k: v for k, v in asdict(self).items() if k not in INTERNAL_FIELDS}


# --- text helpers used for hashing and counting ------------------------------------------


def normalise_text(text: str) -> str:
    """NFC, whitespace collapsed within lines, blank lines dropped: the form that is hashed."""
    text = unicodedata.normalize("NFC", text or "")
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def content_hash(text: str) -> str:
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()


def word_count(text: str) -> int:
    """Latin-script (and other spaced) words plus CJK characters, each counting as one."""
    return len(WORD_RE.findall(text or ""))


# --- main text --------------------------------------------------------------------------


def _is_boilerplate_element(element) -> bool:
    if element.tag in SKIP_TAGS:
        return True
    marker = f"{element.get('class', '')} {element.get('id', '')} {element.get('role', '')}"
    return marker.strip() != "" and bool(BOILERPLATE_ATTR_RE.search(marker))


def container_text(container) -> str:
    """Visible text of a body container, one line per block, widgets skipped."""
    parts: list[str] = []
    skipping = None
    for event, node in etree.iterwalk(container, events=("start", "end")):
        if not isinstance(node.tag, str):
            if event == "end" and skipping is None and node.tail:
                parts.append(node.tail)
            continue
        if event == "start":
            if skipping is None and node is not container and _is_boilerplate_element(node):
                skipping = node
            if skipping is None:
                if node.tag in BLOCK_TAGS or node.tag in ("td", "th"):
                    parts.append("\n" if node.tag not in ("td", "th") else " ")
                parts.append(node.text or "")
            continue
        if node is skipping:
            skipping = None
        elif skipping is not None:
            continue
        if node.tag in BLOCK_TAGS:
            parts.append("\n")
        if node is not container and node.tail:
            parts.append(node.tail)
    return "".join(parts)


def _enough_text(text: str) -> bool:
    return len(text) >= MIN_CONTAINER_CHARS or len(CJK_RE.findall(text)) >= MIN_CONTAINER_CJK


def _container_marker(xpath: str) -> str:
    """The class, id or property value a BODY_CONTAINERS expression needs."""
    match = re.search(r"' ([\w-]+) '|='([^']+)'", xpath)  # ' TRS_Editor ' or @id='News_Body_Txt_A'
    return match.group(1) or match.group(2)


# (marker, compiled expression): a page whose attributes lack the marker is not searched.
_CONTAINERS = tuple((_container_marker(x), etree.XPath(x)) for x in BODY_CONTAINERS)
# Plain strings, not lxml's "smart" ones (which carry their parent element): half the cost.
_MARKER_ATTRIBUTES = etree.XPath("//@class | //@id | //@property", smart_strings=False)


def _in_page_chrome(node) -> bool:
    """Whether an element sits in the page's chrome: a header, footer, navigation, sidebar,
    form or promotion block."""
    return any(_is_widget(ancestor) for ancestor in node.iterancestors())


def site_family_containers(tree) -> list | None:
    """The body containers of the first known site family the page has enough text in
    (outermost matches only: nested ones would repeat text), or None."""
    attributes = " ".join(_MARKER_ATTRIBUTES(tree))
    for marker, xpath in _CONTAINERS:
        if marker not in attributes:
            continue
        # A body field inside a header, footer, menu or sidebar (Drupal blocks have body fields
        # too: a newsletter box, a footer address) is not the article's.
        nodes = [n for n in xpath(tree) if not _in_page_chrome(n)]
        outer = [n for n in nodes if not any(a in nodes for a in n.iterancestors())]
        if _enough_text("\n".join(container_text(node) for node in outer).strip()):
            return outer
    return None


def site_family_text(tree) -> str | None:
    """Main text from a known site-family body container, or None when there is none."""
    containers = site_family_containers(tree)
    return "\n".join(container_text(node) for node in containers) if containers else None


def _text_after(containers: list) -> str:
    """Visible text of the elements that follow the containers under the same parent (widgets
    left out): where an article split into sibling containers goes on."""
    parts = []
    for container in containers:
        for sibling in container.itersiblings():
            if isinstance(sibling.tag, str) and not _is_widget(sibling):
                parts.append(container_text(sibling))
    return "\n".join(parts)


_VISIBLE = "[not(ancestor::script or ancestor::style or ancestor::noscript or ancestor::title)]"
_PARAGRAPH_TEXT = etree.XPath(".//p//text()" + _VISIBLE, smart_strings=False)
_VISIBLE_TEXT = etree.XPath(".//text()" + _VISIBLE, smart_strings=False)


def _mostly_han(tree) -> bool:
    """Han-script page: judged on paragraph text, or on all visible text when the page has
    (almost) no ``<p>`` (table-laid-out portals and blogs put their text straight in cells).
    Pages saved as a fragment (no ``<body>``) are judged on their root element."""
    title = tree.findtext(".//title") or ""
    root = tree.find("body")
    root = tree if root is None else root
    sample = " ".join(_PARAGRAPH_TEXT(root)[:50])
    if len(" ".join(sample.split())) < HAN_SAMPLE_CHARS:
        sample = " ".join(_VISIBLE_TEXT(root))
    sample = title + " ".join(sample.split())[:LANGUAGE_SAMPLE]
    return len(CJK_RE.findall(sample)) > 0.3 * max(1, len(sample))


def unwrap_layout_tables(tree) -> None:
    """Turn layout tables into plain blocks so trafilatura scores their cells one by one.

    Old portals (and many Chinese sites) lay whole pages out in nested tables; kept
    as tables, the article and the menus around it come out as one "table" of rows.
    A table is layout when it holds another table or a cell with a long text; data
    tables (short cells) are left alone. Only applied to Chinese-script pages: on the
    English government pages of the benchmark it cost more than it gained.
    """
    for table in tree.xpath("//table[.//table or .//td[string-length(normalize-space(.)) > $n]]",
                            n=LAYOUT_CELL_CHARS):
        for element in table.xpath("self::table | ./tbody | ./thead | ./tfoot | ./tr | ./*/tr | ./tr/td"
                                   " | ./*/tr/td | ./tr/th | ./*/tr/th"):
            element.tag = "div"


def _trafilatura(tree, url: str | None, recall: bool = False, fallback: bool = True) -> str:
    """trafilatura's main text. Comments are extracted apart (and not kept): asking for no
    comments at all makes trafilatura prune every block whose class says "comment" before it
    looks for the text, and forum answers or whole articles go with them."""
    document = trafilatura.bare_extraction(
        tree, url=url, favor_recall=recall, include_comments=True, include_tables=True, with_metadata=False,
        fast=not fallback,
    )
    return (document.text or "") if document is not None else ""


def _tokens(text: str) -> list[str]:
    return WORD_RE.findall((text or "").lower())


def merge_recall(base: str, recall: str) -> str:
    """trafilatura's text, completed by what its recall mode finds inside the same article.

    The default mode drops list items, subheadings and table rows from the middle of
    plain old pages (CleanEval-style government pages, Chinese table layouts); recall
    mode keeps them but also keeps related-links blocks, comments and footers around
    the article. So recall text is used only when

    - a long line of it (a layout table flattened into one row) contains most of the
      base text and the whole recall text is at most RECALL_TABLE_GROWTH times
      longer: the base text was a fragment of that table; or
    - its lines between the first and the last base line (the article span)
      cover the base text, and the lines it adds there are mostly sentences or
      long rows: the span is returned, and whatever recall adds outside it is not.
    """
    if not recall or recall == base or len(_tokens(recall)) < len(_tokens(base)):
        return base  # the same text on most pages: nothing to compare
    kept = set(base.split("\n"))
    lines = recall.split("\n")
    extra = [line for line in lines if line.strip() and line not in kept]
    if not extra:
        return base
    base_tokens = Counter(_tokens(base))
    total = max(1, sum(base_tokens.values()))
    long_lines = [line for line in extra if len(_tokens(line)) >= RECALL_LONG_LINE_TOKENS]
    if long_lines and len(_tokens(recall)) <= RECALL_TABLE_GROWTH * total:
        overlap = sum((base_tokens & Counter(_tokens("\n".join(long_lines)))).values())
        if overlap >= RECALL_TABLE_COVERAGE * total:
            return recall
    positions = [i for i, line in enumerate(lines) if line in kept]
    if not positions:
        return base
    span = lines[min(positions):max(positions) + 1]
    added = [line for line in span if line.strip() and line not in kept]
    if not added:
        return base
    in_span = set(span)
    covered = sum(len(_tokens(line)) for line in base.split("\n") if line in in_span)
    if covered < RECALL_SPAN_COVERAGE * total:
        return base
    sentences = sum(1 for line in added if SENTENCE_END_RE.search(line))
    long_rows = sum(len(_tokens(line)) for line in added) / len(added) >= RECALL_LONG_LINE_TOKENS
    if sentences / len(added) >= RECALL_SENTENCE_SHARE or long_rows:
        return "\n".join(span)
    return base


_STRING_VALUE = etree.XPath("string()", smart_strings=False)
_TEXT_WITHOUT_CODE = etree.XPath(".//text()[not(ancestor::script or ancestor::style)]", smart_strings=False)


def _block_text(element) -> str:
    if element.find(".//script") is None and element.find(".//style") is None:
        return " ".join(_STRING_VALUE(element).split())
    return " ".join(" ".join(_TEXT_WITHOUT_CODE(element)).split())


def _is_widget(node) -> bool:
    """A menu, form, sidebar, promotion, comment block or hidden block, by tag, class or id."""
    if node.tag in GAP_WIDGET_TAGS or _is_boilerplate_element(node):
        return True
    if GAP_WIDGET_ATTR_RE.search(f"{node.get('class', '')} {node.get('id', '')}"):
        return True
    return "display:none" in (node.get("style") or "").replace(" ", "").lower()


def _inside_widget(element, container) -> bool:
    """Whether the element sits in a widget, menu or hidden block below the container."""
    for node in element.iterancestors():
        if node is container:
            return False
        if _is_widget(node):
            return True
    return False


def _link_share(element) -> float:
    total = len(_block_text(element)) or 1
    return sum(len(_block_text(a)) for a in element.iter("a")) / total


def _is_caption(element, container) -> bool:
    """A photo caption: a figcaption, or a block in an element whose class/id says caption."""
    for node in [element, *element.iterancestors()]:
        if node is container:
            return False
        if node.tag == "figcaption" or "caption" in f"{node.get('class', '')} {node.get('id', '')}".lower():
            return True
    return False


def _sentence_block(value: str) -> bool:
    if not GAP_END_RE.search(value):
        return False
    tokens = _tokens(value)
    han = sum(1 for t in tokens if CJK_RE.match(t))
    return len(tokens) - han >= GAP_MIN_TOKENS or han >= GAP_MIN_CJK


def _shingles(tokens: list[str]) -> set[tuple[str, ...]]:
    if len(tokens) < GAP_SHINGLE:
        return {tuple(tokens)} if tokens else set()
    return set(zip(*(tokens[i:] for i in range(GAP_SHINGLE))))


def _gap_blocks(tree):
    """(element, text, is_tail) for each block fill_dom_gaps looks at: paragraphs and headings,
    and the text that follows a heading outside any paragraph (old pages write
    ``<h3>Title</h3>Text...<p>``: the paragraph is the heading's tail)."""
    for element in tree.xpath(GAP_BLOCKS_XPATH):
        yield element, _block_text(element), False
        if element.tag != "p" and element.tail and element.tail.strip():
            yield element, " ".join(element.tail.split()), True


def _article_container(weights: Counter, total: int):
    """The deepest element holding GAP_CONTAINER_SHARE of the matched blocks' tokens, or None.

    ``weights`` counts, for each ancestor of a matched block, the tokens of the matched blocks
    below it: an element weighs at least as much as each of its children, and two elements
    that are not one inside the other cannot both hold more than half of the total, so the
    heavy elements form one chain from the root down and the deepest is the lightest of them."""
    heavy = [element for element, weight in weights.items() if weight >= GAP_CONTAINER_SHARE * total]
    return min(heavy, key=lambda element: (weights[element], -len(list(element.iterancestors()))), default=None)


def fill_dom_gaps(tree, text: str) -> str:
    """Paragraphs and subheadings of the article container that trafilatura dropped.

    trafilatura discards whole blocks by class name ("embed", "slide", "caption", "meta")
    and some plain paragraphs of old pages; photo captions and subheadings inside the
    article go with them. The article container is the deepest element holding (nearly)
    all the extracted paragraphs; its other ``<p>`` blocks with sentence-length text and
    few links, outside widgets (share, related, nav, forms), are put back in document
    order, and so are its subheadings when article text follows them. On old pages the
    container can be ``<body>`` itself, and a paragraph can be the bare text after a heading
    (:func:`_gap_blocks`). Blocks are matched to the text by token shingles, so whitespace
    and line-break differences do not matter.
    """
    if not text:
        return text
    lines = text.split("\n")
    line_of: dict[tuple, int] = {}  # each shingle's first line: later lines are written over by earlier ones
    for number in range(len(lines) - 1, -1, -1):
        line_of.update(dict.fromkeys(_shingles(_tokens(lines[number])), number))
    # (element, line number of a matched block or None, value, coverage, tail, tokens, shingles)
    found: list[tuple] = []
    weights: Counter = Counter()
    matched_total = 0
    for element, value, tail in _gap_blocks(tree):
        tokens = _tokens(value)
        if not tokens:
            continue
        shingles = _shingles(tokens)
        hits = [line_of[sh] for sh in shingles if sh in line_of]
        coverage = len(hits) / len(shingles)
        line = max(hits) if coverage >= GAP_MATCHED and hits else None
        found.append((element, line, value, coverage, tail, tokens, shingles))
        if line is not None and len(tokens) >= GAP_SHINGLE:
            matched_total += len(tokens)
            for ancestor in element.iterancestors():
                weights[ancestor] += len(tokens)
    if not matched_total or all(line is not None for _, line, *_ in found):
        return text  # every block is in the text already: nothing to put back
    container = _article_container(weights, matched_total)
    if container is None or container.tag == "html":
        return text
    additions: dict[int, list[str]] = {}
    after = -1
    pending: list[str] = []
    added: set[tuple] = set()
    for element, line, value, coverage, tail, tokens, shingles in found:
        if line is not None:
            after = max(after, line)
        if not any(a is container for a in element.iterancestors()):
            continue
        if line is not None:
            if pending:
                additions.setdefault(after, []).extend(pending)  # headings before matched text
                pending = []
            continue
        if coverage > GAP_NEW or _inside_widget(element, container):
            continue
        if not tail and _link_share(element) >= GAP_MAX_LINK_SHARE:
            continue
        if len(shingles & added) >= GAP_DUPLICATE * len(shingles):
            continue  # the same caption or teaser repeated (slideshows, galleries)
        if tail or element.tag in ("p", "figcaption"):
            if _sentence_block(value) or (_is_caption(element, container) and len(tokens) >= GAP_MIN_TOKENS):
                additions.setdefault(after, []).extend(pending + [value])
                pending = []
                added |= shingles
        elif len(tokens) <= GAP_HEADING_TOKENS:
            pending.append(value)
    if not additions:
        return text
    out = list(additions.get(-1, []))
    for number, line in enumerate(lines):
        out.append(line)
        out.extend(additions.get(number, []))
    return "\n".join(out)


def _short_item(item: str) -> bool:
    if len(item) > 20 * MENU_ITEM_TOKENS:
        return False
    words = WORD_RE.findall(item)
    han = sum(1 for w in words if CJK_RE.match(w))
    return len(words) - han + (han + 2) // 3 <= MENU_ITEM_TOKENS


def is_menu_line(line: str) -> bool:
    """A line that is only a separator-delimited list of short links (a flattened nav bar):
    "Home \\| News \\| Contact \\| Site map" in a table cell, or "Transcript | Download mp4 |
    Download mp3" in running text (table rows, which start with "|", are not menus)."""
    if line.lstrip().startswith("|"):
        # A table row of many short word cells ("| Home | News | Regions | ... |") is a menu bar
        # laid out as a table; data rows hold numbers or fewer, longer cells.
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        cells = [cell for cell in cells if cell]
        if (len(cells) >= MENU_ROW_CELLS and all(_menu_item_line(cell) for cell in cells)
                and sum(1 for cell in cells if re.search(r"\d", cell)) <= len(cells) // 4):
            return True
    separator = MENU_SEPARATOR_RE
    if len(MENU_SEPARATOR_RE.findall(line)) < MENU_MIN_SEPARATORS:
        if line.lstrip().startswith("|") or len(PLAIN_MENU_SEPARATOR_RE.findall(line)) < PLAIN_MENU_MIN_SEPARATORS:
            return False
        separator = PLAIN_MENU_SEPARATOR_RE
    items = [item.strip(" |") for item in separator.split(line)]
    items = [item for item in items if item]
    return all(_short_item(item) and not SENTENCE_END_RE.search(item) for item in items)


def _menu_item_line(line: str) -> bool:
    return _short_item(line) and not SENTENCE_END_RE.search(line)


def drop_menu_runs(lines: list[str]) -> list[str]:
    """Drop menus flattened one item per line: short link lines between separator-only
    lines ("What's New", "|", "Contact Us", "|", "Search"). A run needs at least
    MENU_MIN_SEPARATORS separator lines; separator-only lines are dropped everywhere."""
    if sum(1 for line in lines if SEPARATOR_LINE_RE.match(line)) < MENU_MIN_SEPARATORS - 1:
        return [line for line in lines if not SEPARATOR_LINE_RE.match(line)]
    keep = [True] * len(lines)
    start = 0
    while start < len(lines):
        end, separators = start, 0
        while end < len(lines) and (SEPARATOR_LINE_RE.match(lines[end]) or _menu_item_line(lines[end])):
            separators += bool(SEPARATOR_LINE_RE.match(lines[end]))
            end += 1
        if separators >= MENU_MIN_SEPARATORS - 1 and end - start > separators:
            # Only items adjacent to a separator belong to the menu.
            for index in range(start, end):
                near = any(SEPARATOR_LINE_RE.match(lines[j]) for j in (index - 1, index, index + 1)
                           if start <= j < end)
                keep[index] = not near
        start = max(end, start + 1)
    return [line for line, kept in zip(lines, keep) if kept and not SEPARATOR_LINE_RE.match(line)]


def drop_boilerplate_lines(text: str) -> str:
    lines = []
    for line in normalise_text(text).split("\n"):
        if len(line) <= BOILERPLATE_MAX_LINE and BOILERPLATE_LINE_RE.match(line):
            continue
        if is_menu_line(line):
            continue
        lines.append(line)
    return "\n".join(drop_menu_runs(lines))


def _article_words(lines: list[str]) -> int:
    """Words of ``lines`` that sit in sentences or long lines (article text), as opposed to
    menu items, directory entries and link lists."""
    article = 0
    for line in lines:
        count = len(_tokens(line))
        if count >= ARTICLE_LONG_LINE_TOKENS or (count >= ARTICLE_LINE_TOKENS and SENTENCE_END_RE.search(line)):
            article += count
    return article


def _article_share(lines: list[str]) -> float:
    total = sum(len(_tokens(line)) for line in lines)
    return _article_words(lines) / total if total else 0.0


def _shared_words(text: str, other: str) -> int:
    return sum((Counter(_tokens(text)) & Counter(_tokens(other))).values())


@dataclass
class MainText:
    """The text kept and the path that produced it (recorded in ``Extraction.extractor``):
    ``trafilatura`` (its default mode, with its readability/jusText fallback), ``+recall``
    (gaps filled from its recall mode), ``+gaps`` (blocks of the article container put back),
    ``family`` (a site-family body container), ``recall`` (recall mode won a disagreement)."""

    text: str
    path: str
    note: str | None = None


def trafilatura_text(tree, url: str | None, recall: str, han: bool) -> MainText:
    """trafilatura's default mode, completed from its recall mode's text (``recall``, boilerplate
    lines already dropped: :func:`merge_recall`) and from the article container
    (:func:`fill_dom_gaps`). No readability/jusText fallback on Han-script pages: jusText's
    stopword lists are useless on unsegmented Chinese and the comparison made the text worse there.

    :func:`drop_boilerplate_lines` is idempotent and line-wise on text it has cleaned (no
    separator lines are left for :func:`drop_menu_runs`), so lines taken from the two cleaned
    texts need no second pass: only a text with blocks put back is cleaned again."""
    base = drop_boilerplate_lines(_trafilatura(tree, url, fallback=not han))
    path = ["trafilatura"]
    text = merge_recall(base, recall)
    if text != base:
        path.append("recall")
    filled = fill_dom_gaps(tree, text)
    if filled == text:
        return MainText(text, "+".join(path))
    path.append("gaps")
    return MainText(drop_boilerplate_lines(filled), "+".join(path))


def choose_text(tree, url: str | None) -> MainText:
    """The page's main text: trafilatura's (:func:`trafilatura_text`), or a site-family body
    container's when it agrees with it, never much less than what recall mode finds.

    A family container (:data:`BODY_CONTAINERS`) is exact on the sites it was written for,
    but on a page it was not written for the same class can mark a footer, a teaser or the
    first part of an article: it replaces trafilatura's text only when the two agree
    (:func:`family_agrees`). Then, whatever path won, a text holding less than LOSS_SHARE of the words recall
    mode finds is a disagreement: recall's text is kept when what it adds is article text
    (sentences, not a menu), and the choice is noted for the crawl log. Han-script pages
    have their layout tables unwrapped (after the family containers are looked for).
    """
    containers = site_family_containers(tree) or []
    family = drop_boilerplate_lines("\n".join(container_text(node) for node in containers))
    after = _text_after(containers)
    han = _mostly_han(tree)
    if han:
        unwrap_layout_tables(tree)
    recall = drop_boilerplate_lines(_trafilatura(tree, url, recall=True, fallback=False))
    chosen = trafilatura_text(tree, url, recall, han)
    if containers and family_agrees(family, chosen.text, after):
        chosen = MainText(family, "family")
    return guard_against_loss(chosen, recall)


def family_agrees(family: str, text: str, after: str = "") -> bool:
    """Whether a family container holds the same article as trafilatura's text: most of that
    text (the container adds captions, tables...), or a tighter cut of it (the text without
    the headline, lede and related links) that is neither a fragment of it nor its first part
    only: when trafilatura's text goes on, in sentences, in the elements that follow the
    container (``after``), the article is split into sibling containers the class misses."""
    shared, found, held = _shared_words(family, text), len(_tokens(text)), len(_tokens(family))
    if shared >= FAMILY_AGREEMENT * found:
        return True
    if shared < FAMILY_AGREEMENT * held or held < FAMILY_MIN_SHARE * found:
        return False
    continued = [line for line in after.split("\n") if _article_words([line])]
    return _shared_words("\n".join(continued), text) <= FAMILY_TAIL_SHARE * found


def guard_against_loss(chosen: MainText, recall: str) -> MainText:
    """Recall mode's text instead of a chosen text that lost most of the article."""
    if chosen.text == recall:
        return chosen
    found, wider = len(_tokens(chosen.text)), len(_tokens(recall))
    if found >= LOSS_SHARE * wider:
        return chosen
    kept = set(chosen.text.split("\n"))
    if _article_share([line for line in recall.split("\n") if line not in kept]) < ARTICLE_SHARE:
        return chosen
    note = (f"main text from trafilatura's recall mode ({wider} words): the {chosen.path} text "
            f"held only {found}")
    return MainText(recall, "recall", note)


def drop_repeated_headline(text: str, title: str | None) -> str:
    """The text without a first line that only repeats the headline (stored apart as ``title``;
    trafilatura keeps the ``<h1>`` as the first line of the body). A text that is nothing but
    the headline is left alone."""
    first, _, rest = text.partition("\n")
    if title and rest.strip() and _fold(first) == _fold(title):
        return rest
    return text


# --- headline -----------------------------------------------------------------------------


def _clean(value: str | None) -> str:
    return " ".join((value or "").split()).strip()


def _meta_values(tree, names: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for meta in tree.xpath("//meta[@content]"):
        key = (meta.get("property") or meta.get("name") or meta.get("itemprop") or "").strip().lower()
        if key in names and key not in found and _clean(meta.get("content")):
            found[key] = _clean(meta.get("content"))
    return found


def _fold(value: str) -> str:
    return re.sub(r"\W+", "", unicodedata.normalize("NFKC", value).casefold())


def _h1_candidates(tree) -> list[str]:
    """h1 texts, those inside the main content first; logo-only and chrome h1s skipped."""
    inside = tree.xpath("//main//h1 | //article//h1 | //*[@role='main']//h1")
    others = [h for h in tree.xpath("//h1") if h not in inside and not h.xpath("ancestor::header|ancestor::nav")]
    visible = [h for h in inside + others if not HIDDEN_CLASS_RE.search(h.get("class", ""))]
    return [t for t in (_clean(h.text_content()) for h in visible) if t]


def _looks_like_headline(text: str, folded_site: set[str]) -> bool:
    """More than a section label: several words, or several CJK characters, and not the site name."""
    return _fold(text) not in folded_site and (len(text.split()) >= 4 or len(CJK_RE.findall(text)) >= 8)


def strip_site_name(title: str, site_names: list[str]) -> str:
    """'Headline | Site' -> 'Headline': drop parts that are a site name, else keep the longest part."""
    parts = [p for p in TITLE_SEPARATORS_RE.split(title) if p and p.strip()]
    if len(parts) < 2:
        return title
    folded_sites = [_fold(s) for s in site_names if _fold(s)]
    kept = [p for p in parts if not any(_fold(p) and (_fold(p) in s or s in _fold(p)) for s in folded_sites)]
    if kept and len(kept) < len(parts):
        # Rejoin the remaining parts with the separators the title used.
        start, end = title.find(kept[0]), title.rfind(kept[-1]) + len(kept[-1])
        return _clean(title[start:end])
    return max(parts, key=len).strip()


def find_title(tree, hint: str | None = None) -> str | None:
    metas = _meta_values(tree, HEADLINE_META + SITE_NAME_META)
    site_names = [metas[k] for k in SITE_NAME_META if k in metas]
    page_title = _clean(tree.findtext(".//title"))
    declared = [metas.get("articletitle"), metas.get("og:title"), metas.get("twitter:title"),
                metas.get("dc.title"), metas.get("dcterms.title"), metas.get("headline"), page_title]
    declared = [d for d in declared if d]
    folded_site = {_fold(s) for s in site_names}
    confirmed = [h1 for h1 in _h1_candidates(tree)
                 if _fold(h1) and _fold(h1) not in folded_site and any(_fold(h1) in _fold(d) for d in declared)]
    if confirmed:
        # Several h1s confirmed by <title> (site logo, section, headline): the headline is the longest.
        return max(confirmed, key=len)
    h1s = _h1_candidates(tree)
    explicit = any(metas.get(k) for k in HEADLINE_META if k != "title")
    if len(h1s) == 1 and not explicit and _looks_like_headline(h1s[0], folded_site):
        # A lone h1 beats a generic <title> ("Spokesperson's Remarks") that does not repeat it.
        return h1s[0]
    for value in declared:
        stripped = strip_site_name(value, site_names)
        if stripped and _fold(stripped) not in folded_site:
            return stripped
    return h1s[0] if h1s else (_clean(hint) or None)


# --- language, canonical URL ---------------------------------------------------------------


def _declared_language(tree) -> str | None:
    values = tree.xpath("/html/@lang | /html/@xml:lang | //meta[@http-equiv='content-language']/@content"
                        " | //meta[@property='og:locale']/@content",
                        namespaces={"xml": "http://www.w3.org/XML/1998/namespace"})
    for value in values:
        code = re.split(r"[-_]", value.strip().lower())[0]
        if re.fullmatch(r"[a-z]{2,3}", code):
            return code
    return None


def detect_language(tree, text: str, title: str | None, expected: list[str] | None) -> str | None:
    sample = f"{title or ''}\n{text}"[:LANGUAGE_SAMPLE]
    letters = len(LETTER_RE.findall(sample)) or 1
    declared = _declared_language(tree)
    expected = [e.split("-")[0].lower() for e in expected or []]
    for code, pattern in SCRIPTS if NON_LATIN_RE.search(sample) else ():
        share = len(pattern.findall(sample)) / letters
        # Kana or hangul in a Han page is a strong sign; Han alone needs to dominate.
        if (code in ("ja", "ko") and share > 0.05) or share > 0.3:
            if code == "ru" and declared in ("uk", "bg", "sr", "mk", "be", "kk"):
                return declared
            return code
    words = re.findall(r"[^\W\d_]+", sample.lower())
    scores = {lang: sum(1 for w in words if w in stops) for lang, stops in STOPWORDS.items()}
    best = max(scores, key=scores.get)
    for preferred in ([declared] if declared else []) + expected:
        if scores.get(preferred, 0) >= 0.6 * scores[best] and scores[best] > 0:
            return preferred
    if scores[best] >= 3:
        return best
    return declared or (expected[0] if expected else None)


def find_canonical(tree, url: str | None) -> str | None:
    for value in tree.xpath("//link[@rel='canonical']/@href | //meta[@property='og:url']/@content"):
        value = value.strip()
        if value:
            absolute = urljoin(url or "", value)
            if absolute.startswith(("http://", "https://")):
                return absolute
    return None


def parse_html(html: str):
    """lxml tree of the page, or None. Repairs pages where markup before ``<html>`` hides the body."""
    if not html.strip():
        return None
    tree = load_html(html)
    if tree is None or tree.find("body") is None:
        # A <script> before <html> makes lxml put the whole page in <head>: parse from <html> on.
        start = html.lower().find("<html")
        if start > 0:
            reparsed = load_html(html[start:])
            tree = reparsed if reparsed is not None else tree
    return tree


# --- entry point -----------------------------------------------------------------------------


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
    title = find_title(tree, (hints or {}).get("title"))
    main = choose_text(tree, url)
    text = drop_repeated_headline(main.text, title)
    language = detect_language(tree, text, title, languages)
    notes: list[str] = [main.note] if main.note else []
    finder = DateFinder(tree, url, fetched_on=fetched_at.date(), language=language, headline=title)
    published, date_source = finder.best(hints, notes)
    result = Extraction(title, text, published, date_source, language, encoding, find_canonical(tree, url), notes,
                        extractor=f"{EXTRACTOR_VERSION} text={main.path}")
    if (hints or {}).get("date_from_url"):
        printed = finder.printed()
        if printed:
            result.page_date, result.page_date_source = printed[0].isoformat(), printed[1]
    return result
