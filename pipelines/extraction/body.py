"""The main text of a page: which path produces it, and the guard against silent loss.

trafilatura's default mode (with its readability/jusText fallback) is the base, completed by
recall.py and gaps.py and cleaned by boilerplate.py. A site-family container (TRS, GOV.UK,
canada.ca, Drupal body field) replaces it only when the two agree. A text much smaller than
recall mode's gives way to recall's (:func:`guard_against_loss`). :class:`MainText` records
the path (``Extraction.extractor``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import trafilatura
from lxml import etree

from pipelines.extraction.boilerplate import drop_boilerplate_lines
from pipelines.extraction.gaps import _is_widget, fill_dom_gaps
from pipelines.extraction.language import LANGUAGE_SAMPLE
from pipelines.extraction.recall import merge_recall
from pipelines.extraction.text import (
    _PARAGRAPH_TEXT,
    _VISIBLE_TEXT,
    CJK_RE,
    SENTENCE_END_RE,
    _tokens,
    container_text,
)

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


# Paragraph text shorter than this is too little to tell a page's script by.
HAN_SAMPLE_CHARS = 200


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
