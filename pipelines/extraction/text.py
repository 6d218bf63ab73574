"""What every step of the extraction shares: tokens, CJK detection, hashing, visible text, the parse.

``normalise_text``, ``content_hash`` and ``word_count`` define what counts as the same text and how
long it is (the archive compares versions with them); ``container_text`` reads an element as
lines, skipping scripts, forms and boilerplate elements.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from lxml import etree
from trafilatura.utils import load_html

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


CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


WORD_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]|[^\W_]+")


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


_VISIBLE = "[not(ancestor::script or ancestor::style or ancestor::noscript or ancestor::title)]"


_PARAGRAPH_TEXT = etree.XPath(".//p//text()" + _VISIBLE, smart_strings=False)


_VISIBLE_TEXT = etree.XPath(".//text()" + _VISIBLE, smart_strings=False)


def _tokens(text: str) -> list[str]:
    return WORD_RE.findall((text or "").lower())


_STRING_VALUE = etree.XPath("string()", smart_strings=False)


_TEXT_WITHOUT_CODE = etree.XPath(".//text()[not(ancestor::script or ancestor::style)]", smart_strings=False)


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
    if tree is not None:
        modernise_lists(tree)
    return tree


def modernise_lists(tree) -> None:
    """``<dir>``, HTML 2's list element (obsolete, still in 1990s government pages, rendered
    as ``<ul>``), as the element trafilatura knows: ``ul`` when it holds list items, else
    ``div`` (indented paragraphs). Unknown to trafilatura, its text was dropped: a letter's
    numbered points, a notice's conditions."""
    for element in tree.iter("dir"):
        element.tag = "ul" if element.find("li") is not None else "div"


# A page's link lists are read up to this many items in all (a ministry's annex list, a
# hostile page of 100,000 links). trafilatura's cost grows faster than the links of one block
# (~30 s of CPU for a list of 100,000, about a second for 2,000), while a list that long is a
# directory, not statement text; no page of the two development corpora has more than 1,029.
LINK_ITEMS_KEPT = 2000


# A run of this many link-only children in one element is a link list.
LINK_LIST_MIN = 20


# Text outside a link item's anchors allowed (bullets, separators, "(PDF)"-sized notes).
LINK_ITEM_SLACK = 12


def _link_item(element) -> bool:
    """Whether ``element`` is nothing but a link (``<a>``, or ``<li><a>...</a></li>``)."""
    if not isinstance(element.tag, str):
        return False
    if element.tag == "a":
        return True
    anchors = list(element.iter("a"))
    if not anchors:
        return False
    outside = len("".join(element.itertext()).strip()) - sum(len("".join(a.itertext()).strip()) for a in anchors)
    return outside <= LINK_ITEM_SLACK


def bound_link_lists(tree, kept: int = LINK_ITEMS_KEPT) -> tuple[int, int]:
    """Cut the page's link lists after their first ``kept`` items in all, before the text is
    looked for: ``(link items seen, items cut)``, ``(0, 0)`` at once on a page with no more links
    than ``kept``. Only the cleaning sees the cut (the fetched page, its raw capture and its
    attachments are untouched), and the crawl log says so (:func:`pipelines.extraction.extract`'s
    notes)."""
    if tree.xpath("count(//a)") <= kept:
        return 0, 0
    root = tree.getroot() if hasattr(tree, "getroot") else tree
    lists = [parent for parent in tree.iter() if isinstance(parent.tag, str) and len(parent) >= LINK_LIST_MIN]
    seen = cut = 0
    for parent in lists:
        if parent is not root and root not in parent.iterancestors():
            continue  # inside an item already cut
        items = [child for child in parent if _link_item(child)]
        if len(items) < LINK_LIST_MIN:
            continue
        for item in items:
            seen += 1
            if seen > kept:
                _remove_keeping_tail(item)
                cut += 1
    return seen, cut


def _remove_keeping_tail(element) -> None:
    parent, tail = element.getparent(), element.tail
    if tail and tail.strip():
        previous = element.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(element)


def _fold(value: str) -> str:
    return re.sub(r"\W+", "", unicodedata.normalize("NFKC", value).casefold())
