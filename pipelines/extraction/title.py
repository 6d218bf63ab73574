"""The headline: the ``<h1>`` when the ``<title>`` or ``og:title`` confirms it, else ``og:title`` /
TRS ``ArticleTitle`` / the ``<title>`` minus its " | Site name" part, else the crawl's hint.
"""

from __future__ import annotations

import re

from pipelines.extraction.text import CJK_RE, _fold

TITLE_SEPARATORS_RE = re.compile(r"\s+[|\-–—:·»]\s+|\s*[|_]\s*|\s+::\s+")


# Screen-reader-only headings ("Navigation und Service") are never the headline.
HIDDEN_CLASS_RE = re.compile(r"\b(aural|sr-only|visually-hidden|screen-reader-text|wb-inv|hidden|invisible)\b")


SITE_NAME_META = ("og:site_name", "application-name", "sitename", "site_name", "apple-mobile-web-app-title")


HEADLINE_META = ("og:title", "twitter:title", "articletitle", "dc.title", "dcterms.title", "title", "headline")


def _clean(value: str | None) -> str:
    return " ".join((value or "").split()).strip()


def _meta_values(tree, names: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for meta in tree.xpath("//meta[@content]"):
        key = (meta.get("property") or meta.get("name") or meta.get("itemprop") or "").strip().lower()
        if key in names and key not in found and _clean(meta.get("content")):
            found[key] = _clean(meta.get("content"))
    return found


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
