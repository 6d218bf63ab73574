"""The language of a release: script (Han, kana, hangul, Cyrillic...) and stopwords, with
``<html lang>`` and the source's expected languages as tie-breakers.
"""

from __future__ import annotations

import re

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
