"""The other language versions a page says it has: the evidence for translation links.

A translation is never guessed from the text (archive/translations.py links only what a
page or the registry declares). This module reads what the page itself declares, from
the already-parsed tree:

``hreflang``
    ``<link rel="alternate" hreflang="zh" href="...">`` in the head (``x-default`` is no
    language and is skipped).
``language switcher``
    links of a language menu: an ``<a>`` with an ``hreflang`` attribute, or one whose
    text names a language (``中文``, ``English``, ``Français``...; :data:`LANGUAGE_NAMES`)
    and that either carries a ``lang`` attribute or sits in a language menu. A menu is
    recognised by generic markers, not one site's wording: a close ancestor whose links
    are mostly language names and whose class, id, ``aria-label`` or ``title`` speaks of
    languages (:data:`MENU_MARKER`), or that names two or more languages. A lone "中文"
    among "Home", "News" in a site's main menu (the other language's home page) is no
    switcher; codes such as "EN" count only in a menu marked as one.
``canonical``
    ``<link rel="canonical">`` / ``og:url`` naming another address than the page's own: a
    translation whose canonical is the original, or two language versions sharing one.

Each alternate is ``{"url", "hreflang", "evidence"}`` with ``url`` absolute and
normalised (archive/urls.py), never the page's own address, at most
:data:`MAX_ALTERNATES` a page (a hostile page cannot make the archive store thousands).
"""

from __future__ import annotations

import re
from urllib.parse import urljoin

from archive.urls import is_http_url, normalise_url

MAX_ALTERNATES = 50
MAX_ANCESTORS = 4  # how far up from a link a language menu's marker is looked for

HREFLANG_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
MENU_MARKER = re.compile(r"lang|locale|i18n|translat|switcher|語言|语言|언어|言語", re.IGNORECASE)

# What a language switcher's links say, in the language itself and in English (casefolded,
# spaces collapsed) -> BCP 47 code.
LANGUAGE_NAMES = {
    "english": "en", "en": "en", "eng": "en", "英文": "en", "英语": "en", "英語": "en", "영어": "en",
    "中文": "zh", "简体中文": "zh-Hans", "簡體中文": "zh-Hans", "繁體中文": "zh-Hant", "繁体中文": "zh-Hant",
    "简体": "zh-Hans", "繁體": "zh-Hant", "汉语": "zh", "漢語": "zh", "chinese": "zh", "zh": "zh", "中": "zh",
    "中文版": "zh", "english version": "en", "chinese version": "zh",
    "français": "fr", "francais": "fr", "french": "fr", "fr": "fr",
    "español": "es", "espanol": "es", "spanish": "es", "es": "es",
    "deutsch": "de", "german": "de", "de": "de",
    "русский": "ru", "russian": "ru", "ru": "ru",
    "العربية": "ar", "عربي": "ar", "arabic": "ar", "ar": "ar",
    "日本語": "ja", "japanese": "ja", "ja": "ja",
    "한국어": "ko", "korean": "ko", "ko": "ko",
    "português": "pt", "portugues": "pt", "portuguese": "pt", "pt": "pt",
    "italiano": "it", "italian": "it", "it": "it",
    "nederlands": "nl", "dutch": "nl", "nl": "nl",
    "polski": "pl", "polish": "pl", "українська": "uk", "ukrainian": "uk",
    "türkçe": "tr", "turkish": "tr", "فارسی": "fa", "persian": "fa", "हिन्दी": "hi", "hindi": "hi",
    "tiếng việt": "vi", "vietnamese": "vi", "bahasa indonesia": "id", "indonesian": "id",
}
# Two-letter codes and one-character names are languages only inside a marked menu.
AMBIGUOUS_NAMES = {name for name in LANGUAGE_NAMES if len(name) <= 3 and name.isascii()} | {"中"}


def _name_language(text: str) -> str | None:
    key = " ".join(text.split()).casefold().strip(" :|/·•-–—[]()【】")
    return LANGUAGE_NAMES.get(key)


def _is_marked(element) -> bool:
    """A language menu by its own words: class, id, aria-label, title or role of the element."""
    words = " ".join(element.get(name) or "" for name in ("class", "id", "aria-label", "title", "role"))
    return bool(MENU_MARKER.search(words))


def _language_menu(anchor) -> tuple[bool, bool]:
    """(in a language menu, the menu is marked as one). A menu is an ancestor (up to
    MAX_ANCESTORS) whose links are mostly (over half) language names and which is marked as a
    language menu or names two or more languages: a site's main menu with one "中文" among
    "Home", "News", "About" is none, nor is a page wrapper whose class says "lang-en"."""
    node = anchor.getparent()
    for _ in range(MAX_ANCESTORS):
        if node is None or not isinstance(node.tag, str) or node.tag in ("body", "html"):
            break
        links = list(node.iter("a"))
        named = [code for code in (_name_language(_text(a)) for a in links) if code]
        if named and len(named) * 2 > len(links):
            if _is_marked(node):
                return True, True
            if len({code.split("-")[0] for code in named}) >= 2:
                return True, False
        node = node.getparent()
    return False, False


def _text(element) -> str:
    return " ".join("".join(element.itertext()).split())


def _absolute(href: str | None, base: str) -> str | None:
    href = (href or "").strip()
    if not href or href.startswith(("#", "javascript:", "mailto:", "tel:")):
        return None
    url = urljoin(base, href)
    if not is_http_url(url):
        return None
    try:
        return normalise_url(url)
    except ValueError:  # a port out of range, "http://[::1": no address anyone can fetch
        return None


def _hreflang(value: str | None) -> str | None:
    value = (value or "").strip()
    return value if HREFLANG_RE.match(value) else None


def _switcher_language(anchor) -> str | None:
    """The language a link of a language switcher leads to, or None when it is not one."""
    declared = _hreflang(anchor.get("hreflang"))
    if declared:
        return declared
    text = _text(anchor) or (anchor.get("title") or "") or (anchor.get("aria-label") or "")
    named = _name_language(text)
    if named is None:
        return None
    key = " ".join(text.split()).casefold()
    if _hreflang(anchor.get("lang")) and key not in AMBIGUOUS_NAMES:
        return _hreflang(anchor.get("lang"))
    in_menu, marked = _language_menu(anchor)
    if in_menu and (key not in AMBIGUOUS_NAMES or marked):
        return named
    return None


def find_alternates(tree, url: str | None, canonical: str | None = None) -> list[dict]:
    """The page's declared other versions (module docstring), in document order, each URL once
    (the first evidence for it wins: hreflang, then the switcher, then canonical)."""
    if tree is None or not url:
        return []
    base = url
    for value in tree.xpath("//base/@href")[:1]:
        base = urljoin(url, value.strip())
    try:
        own = normalise_url(url)
    except ValueError:
        return []
    found: dict[str, dict] = {}

    def add(target, hreflang, evidence):
        if target and target != own and target not in found and len(found) < MAX_ALTERNATES:
            found[target] = {"url": target, "hreflang": hreflang, "evidence": evidence}

    for link in tree.xpath("//link[@hreflang][@href]"):
        if "alternate" in (link.get("rel") or "").lower().split():
            language = _hreflang(link.get("hreflang"))
            if language:  # (x-default names no language)
                add(_absolute(link.get("href"), base), language, "hreflang")
    for anchor in tree.xpath("//body//a[@href]"):
        language = _switcher_language(anchor)
        if language:
            add(_absolute(anchor.get("href"), base), language, "language switcher")
    if canonical:
        add(_absolute(canonical, base), None, "canonical")
    return list(found.values())
