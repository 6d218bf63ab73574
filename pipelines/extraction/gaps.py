"""Paragraphs, captions and subheadings of the article's own container that trafilatura dropped.

Embeds, slideshows and text after a heading outside any paragraph are lost by trafilatura;
:func:`fill_dom_gaps` finds the container most of the kept text comes from and puts back its
blocks that are article-like (sentences, not links or widgets) and not already kept.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import NamedTuple

from pipelines.extraction.text import (
    _STRING_VALUE,
    _TEXT_WITHOUT_CODE,
    CJK_RE,
    _is_boilerplate_element,
    _tokens,
)

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


class GapBlock(NamedTuple):
    """A block of the page, and how much of it the extracted text holds."""

    element: object
    line: int | None  # the text's line holding it (its last matched shingle's), None: not in the text
    value: str
    coverage: float  # share of its shingles found in the text
    tail: bool  # bare text after a heading, not an element of its own
    tokens: list
    shingles: set


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
    blocks, weights, matched_total = _match_blocks(tree, lines)
    if not matched_total or all(block.line is not None for block in blocks):
        return text  # every block is in the text already: nothing to put back
    container = _article_container(weights, matched_total)
    if container is None or container.tag == "html":
        return text
    additions = _additions(blocks, container)
    if not additions:
        return text
    out = list(additions.get(-1, []))
    for number, line in enumerate(lines):
        out.append(line)
        out.extend(additions.get(number, []))
    return "\n".join(out)


def _match_blocks(tree, lines: list[str]) -> tuple[list[GapBlock], Counter, int]:
    """The page's blocks matched to the text's lines; each ancestor of a matched block weighted
    by its tokens (the article container is where the weight is), and the matched tokens."""
    line_of: dict[tuple, int] = {}  # each shingle's first line: later lines are written over by earlier ones
    for number in range(len(lines) - 1, -1, -1):
        line_of.update(dict.fromkeys(_shingles(_tokens(lines[number])), number))
    blocks: list[GapBlock] = []
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
        blocks.append(GapBlock(element, line, value, coverage, tail, tokens, shingles))
        if line is not None and len(tokens) >= GAP_SHINGLE:
            matched_total += len(tokens)
            for ancestor in element.iterancestors():
                weights[ancestor] += len(tokens)
    return blocks, weights, matched_total


def _worth_adding(block: GapBlock, container, added: set) -> bool:
    """A block of the container the text lacks that reads as article, not as a widget, a list of
    links or a repeat of a block already put back (slideshows, galleries repeat captions)."""
    if block.coverage > GAP_NEW or _inside_widget(block.element, container):
        return False
    if not block.tail and _link_share(block.element) >= GAP_MAX_LINK_SHARE:
        return False
    return len(block.shingles & added) < GAP_DUPLICATE * len(block.shingles)


def _additions(blocks: list[GapBlock], container) -> dict[int, list[str]]:
    """Blocks to put back, by the text line they go after (-1: before the first): paragraphs
    and captions, and the short headings just before article text."""
    additions: dict[int, list[str]] = {}
    after = -1
    pending: list[str] = []  # headings waiting for the article text that follows them
    added: set[tuple] = set()
    for block in blocks:
        if block.line is not None:
            after = max(after, block.line)
        if not any(a is container for a in block.element.iterancestors()):
            continue
        if block.line is not None:
            if pending:
                additions.setdefault(after, []).extend(pending)  # headings before matched text
                pending = []
            continue
        if not _worth_adding(block, container, added):
            continue
        if block.tail or block.element.tag in ("p", "figcaption"):
            if _sentence_block(block.value) or (_is_caption(block.element, container)
                                                and len(block.tokens) >= GAP_MIN_TOKENS):
                additions.setdefault(after, []).extend([*pending, block.value])
                pending = []
                added |= block.shingles
        elif len(block.tokens) <= GAP_HEADING_TOKENS:
            pending.append(block.value)
    return additions
