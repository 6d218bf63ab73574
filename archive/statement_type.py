"""What kind of statement a release is, from its URL section, its title and the feed.

Types: ``press_release``, ``statement``, ``readout``, ``speech``,
``joint_statement``, ``press_conference`` (spokesperson press conferences and
remarks), ``notice``, ``other``. A source's own ``statement_types`` (URL regex
-> type, RE2 syntax) are checked first; then the title (the most specific signal: "Joint
Statement" sits under /statements/ too), then URL sections, then a feed or API
category. English, French, German and Chinese wordings.
"""

from __future__ import annotations

import re

import re2

from archive.patterns import MAX_URL_CHARS, safe_regex

TITLE_RULES = (
    ("joint_statement", r"\bjoint (?:statement|declaration|communiqu)|déclaration conjointe|gemeinsame erklärung|联合声明|联合公报"),
    ("press_conference", (r"press conference|press briefing|spokesperson'?s? (?:remarks|answers?|regular)|"
                          r"\bbriefing by\b|记者会|答记者问|发言人.{0,6}(?:答|表示|谈话)|conférence de presse|pressekonferenz")),
    ("readout", r"\breadout\b|\bcall with\b|\bspeaks with\b|通电话|compte rendu"),
    ("speech", r"\bspeech\b|\bremarks (?:by|at|to)\b|\baddress (?:by|to|at)\b|\bkeynote\b|讲话|致辞|演讲|discours|\brede\b"),
    # "advisory" as a noun ("Media advisory", "Travel advisory: ...", "Advisory - ..."), not the
    # adjective of a body ("Advisory Council on Youth", "advisory board")
    ("notice", (r"\bnotice\b|\b(?:media|press|travel|health|security|safety|weather|public) advisory\b|"
                r"^\s*advisory\b|\badvisory\s*[:\-–]|\breminder\b|通知|公告|提醒|\bavis\b|hinweis")),
    ("statement", r"\bstatement\b|声明|déclaration|erklärung"),
    ("press_release", r"press release|news release|新闻稿|communiqué de presse|pressemitteilung"),
)
URL_RULES = (
    ("joint_statement", r"joint-statement"),
    ("press_conference", r"/fyrbt/|/lxjzh/|press-briefing|/briefings?/|/press-conferences?/|/kaiken/"),
    ("readout", r"/readouts?/"),
    ("speech", r"/speeches/|/remarks/"),
    ("notice", r"/zytz|/notices?/|/media-advisories/|/advisories/"),
    ("statement", r"/statements?/|briefings-statements"),
    ("press_release", r"/news-releases?/|/press-releases?/|/releases/|/presscorner/detail/[a-z]{2}/ip_"),
)
CATEGORY_RULES = (
    ("readout", r"readout"), ("speech", r"speech|remarks"), ("joint_statement", r"joint"),
    ("press_conference", r"briefing|press conference"), ("statement", r"statement"),
    ("notice", r"advisor(?:y|ies)|notice"), ("press_release", r"release|news"),
)


def _compiled(rules):
    return tuple((kind, re.compile(pattern, re.IGNORECASE)) for kind, pattern in rules)


TITLE_RULES, URL_RULES, CATEGORY_RULES = map(_compiled, (TITLE_RULES, URL_RULES, CATEGORY_RULES))


def _first(rules, text: str) -> str | None:
    for kind, pattern in rules:
        if pattern.search(text):
            return kind
    return None


def classify(url: str, title: str | None = None, category: str | None = None,
             custom: dict | None = None) -> str:
    return (_custom(custom, url) or _first(TITLE_RULES, title or "") or _first(URL_RULES, url.lower())
            or _first(CATEGORY_RULES, category or "") or "other")


def _custom(rules: dict | None, url: str) -> str | None:
    """The type a source's own ``statement_types`` give ``url``.

    Registry patterns run on RE2 (linear time whatever the pattern, see archive/patterns.py)
    and never on a URL over ``MAX_URL_CHARS``; a pattern RE2 cannot compile (only in a
    registry that was never validated) is passed over.
    """
    if not rules or len(url) > MAX_URL_CHARS:
        return None
    for pattern, kind in rules.items():
        try:
            if safe_regex(pattern).search(url):
                return kind
        except re2.error:
            continue
    return None
