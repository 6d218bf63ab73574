"""Publication dates of a release, and where each came from.

Sources, strongest first (the order :func:`find_published` tries them):

``meta``     explicit publication metadata: ``article:published_time``,
             ``dcterms.issued``, ``govuk:first-published-at``, ``PubDate`` (TRS CMS),
             ``DC.date.issued``, ``itemprop=datePublished`` ... (never ``modified``);
             generic tags (``dcterms.date``, ``DC.date``, ``date``) only after ``time``
``json-ld``  ``"datePublished"`` in a JSON-LD block
``url``      a full date in the URL: ``/2017/06/22/``, ``2017-06-22``, ``t20170622_``; unless
             the page prints a date (``time``, ``text``) more than 3 days away, which then
             wins (a re-stamped migrated archive), with a note naming both
``feed``     a hint from the crawl: the RSS/Atom entry's date
``time``     ``<time datetime>`` in the article, or next to the headline
``listing``  a hint from the crawl: the date shown beside the link on a listing page
``text``     a visible date: labelled ("Published:", "发布时间：") anywhere, else the one
             nearest the headline; English, French, German, Spanish, Italian, Portuguese,
             Dutch month names, numeric forms, ``2017年6月22日``, Japanese eras (令和/平成/昭和)
``sitemap``  a hint from the crawl: sitemap ``<lastmod>`` (often a modification date)
``htmldate`` htmldate's guess, last resort

A candidate after the fetch date (UTC) or before :data:`MIN_DATE` is skipped, so a
release is never dated in the future of its fetch.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import date, datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from lxml import etree

logger = logging.getLogger(__name__)

MIN_DATE = date(1990, 1, 1)
# A URL date more than this many days from the date printed in the page loses to it.
URL_DATE_TOLERANCE_DAYS = 3

# Lowercased meta name/property values that name a publication (not modification) date,
# strongest first.
META_PUBLISHED = (
    "article:published_time",
    "og:article:published_time",
    "article:published",
    "govuk:first-published-at",
    "dcterms.issued",
    "dc.date.issued",
    "dc.date.created",
    "dcterms.created",
    "pubdate",
    "publishdate",
    "publish_date",
    "publish-date",
    "publication_date",
    "publicationdate",
    "firstpublishedtime",
    "citation_publication_date",
    "parsely-pub-date",
    "sailthru.date",
    "datepublished",
    "releasedate",
    "originalpublicationdate",
)
# Generic date tags: often the publication date, sometimes the last edit; weaker than <time>.
META_GENERIC = ("dcterms.date", "dc.date", "date", "created")
META_RANK = {name: rank for rank, name in enumerate(META_PUBLISHED)}
GENERIC_RANK = {name: rank for rank, name in enumerate(META_GENERIC)}
META_XPATH = "//meta[@content][@name or @property or @itemprop or @http-equiv]"

MONTHS = {
    # English
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4,
    "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9,
    "sept": 9, "sep": 9, "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
    # French
    "janvier": 1, "février": 2, "fevrier": 2, "mars": 3, "avril": 4, "mai": 5, "juin": 6, "juillet": 7,
    "août": 8, "aout": 8, "septembre": 9, "octobre": 10, "novembre": 11, "décembre": 12, "decembre": 12,
    # German
    "januar": 1, "jänner": 1, "februar": 2, "märz": 3, "maerz": 3, "juni": 6, "juli": 7,
    "oktober": 10, "dezember": 12,
    # Spanish, Portuguese, Italian, Dutch
    "enero": 1, "febrero": 2, "marzo": 3, "abril": 4, "mayo": 5, "junio": 6, "julio": 7, "agosto": 8,
    "septiembre": 9, "setiembre": 9, "octubre": 10, "noviembre": 11, "diciembre": 12,
    "janeiro": 1, "fevereiro": 2, "março": 3, "maio": 5, "junho": 6, "julho": 7, "setembro": 9,
    "outubro": 10, "novembro": 11, "dezembro": 12,
    "gennaio": 1, "febbraio": 2, "aprile": 4, "maggio": 5, "giugno": 6, "luglio": 7, "settembre": 9,
    "ottobre": 10, "dicembre": 12,
    "januari": 1, "februari": 2, "maart": 3, "mei": 5, "augustus": 8,
}
MONTH_ALT = "|".join(sorted(map(re.escape, MONTHS), key=len, reverse=True))
ERAS = {"令和": 2018, "平成": 1988, "昭和": 1925}

Y = r"(?P<y>(?:19|20)\d{2})"
DATE_PATTERNS = (
    # 2017年6月22日, 2017 年 06 月 22 日, Korean 2017년 6월 22일
    ("ymd", re.compile(Y + r"\s*[年년]\s*(?P<m>\d{1,2})\s*[月월]\s*(?P<d>\d{1,2})\s*[日일]?")),
    # Japanese eras: 令和5年5月5日, 平成元年
    ("era", re.compile(r"(?P<era>令和|平成|昭和)\s*(?P<y>\d{1,2}|元)\s*年\s*(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*日")),
    # 2017-06-22, 2017/06/22, 2017.06.22 (optionally followed by a time)
    ("ymd", re.compile(r"(?<!\d)" + Y + r"(?P<sep>[-/.])(?P<m>[01]?\d)(?P=sep)(?P<d>[0-3]?\d)(?!\d)")),
    # 22.06.2017, 22/06/2017, 22-06-2017, and US 06/22/2017 (which of the two is the day:
    # _match_to_date, by the value and the page's convention)
    ("dmy", re.compile(r"(?<![\d.])(?P<d>[0-3]?\d)(?P<sep>[./-])(?P<m>[0-3]?\d)(?P=sep)" + Y + r"(?!\d)")),
    # 22 June 2017, 22. Juni 2017, 1er juin 2017, 22 de junio de 2017
    ("dMy", re.compile(r"(?<!\d)(?P<d>[0-3]?\d)(?:st|nd|rd|th|er|\.)?\s*(?:de\s+)?(?P<mon>" + MONTH_ALT
                       + r")\.?,?\s+(?:de\s+)?" + Y + r"(?!\d)", re.IGNORECASE)),
    # June 22, 2017, Jun. 22 2017
    ("Mdy", re.compile(r"(?<![^\W\d_])(?P<mon>" + MONTH_ALT + r")\.?\s+(?P<d>[0-3]?\d)(?:st|nd|rd|th)?,?\s+"
                       + Y + r"(?!\d)", re.IGNORECASE)),
)
URL_DATE_RE = re.compile(
    r"(?<!\d)(?P<y>(?:19|20)\d{2})(?P<sep>[-_/.]?)(?P<m>0[1-9]|1[0-2])(?P=sep)(?P<d>0[1-9]|[12]\d|3[01])(?!\d)"
)
URL_SLASH_DATE_RE = re.compile(r"/(?P<y>(?:19|20)\d{2})/(?P<m>[01]?\d)/(?P<d>[0-3]?\d)(?:/|$)")
JSON_LD_PUBLISHED_RE = re.compile(r'"datePublished"\s*:\s*"([^"]{8,40})"')
# Words that make a nearby date a modification/print date, not the publication date.
NOT_PUBLISHED_RE = re.compile(
    r"(modified|updated|update|revised|reviewed|aktualisiert|geändert|änderung|mise à jour|modifié"
    r"|更新|修改|printed|accessed|abgerufen|copyright|©)\W{0,12}$",
    re.IGNORECASE,
)
PUBLISHED_LABEL_RE = re.compile(
    r"(published|posted|release date|date of release|issued|veröffentlicht|erschienen|publié|publicado"
    r"|pubblicato|发布时间|發布時間|发布日期|發布日期|发表时间|发稿时间|时间|日期|date|datum)"
    r"(\s+(am|on|le|el|em|il|op))?\s*[:：]?\s*$",
    re.IGNORECASE,
)
INVISIBLE = {"script", "style", "noscript", "template"}
INLINE = {"a", "span", "b", "strong", "i", "em", "font", "sup", "sub", "small", "abbr", "u", "time", "label"}
# Characters of text before a date searched for a label like "Published:" or "Date modified:".
LABEL_WINDOW = 40
# Characters of visible text around the headline searched for its date.
BEFORE_HEADLINE, AFTER_HEADLINE = 300, 1500
WINDOW_PAD = 60  # characters of context read around a headline window (longer than any written date)


def valid_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _match_to_date(kind: str, match: re.Match, day_first: bool = True) -> date | None:
    groups = match.groupdict()
    if kind == "era":
        year = 1 if groups["y"] == "元" else int(groups["y"])
        return valid_date(ERAS[groups["era"]] + year, int(groups["m"]), int(groups["d"]))
    year = int(groups["y"])
    if "mon" in groups and groups.get("mon"):
        month = MONTHS.get(groups["mon"].lower().rstrip("."))
        return valid_date(year, month, int(groups["d"])) if month else None
    first, second = int(groups["d"]), int(groups["m"])
    if kind == "dmy" and groups.get("sep") == "/" and not day_first and second <= 12:
        first, second = second, first  # US style 06/22/2017
    if kind == "dmy" and second > 12 >= first:
        first, second = second, first
    return valid_date(year, second, first)


def dates_in_text(text: str, day_first: bool = True) -> list[tuple[int, date]]:
    """All dates written in `text`, as (position, date), in order of position."""
    found = []
    for kind, pattern in DATE_PATTERNS:
        for match in pattern.finditer(text):
            if any(start <= match.start() < end for start, end, _ in found):
                continue
            parsed = _match_to_date(kind, match, day_first)
            if parsed:
                found.append((match.start(), match.end(), parsed))
    return sorted((start, parsed) for start, _, parsed in found)


EPOCH_MS_RE = re.compile(r"\d{12,13}")
DOTTED_DMY_RE = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})")
COMPACT_RE = re.compile(r"((?:19|20)\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?:\D|$)")
ISO_PREFIX_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


def parse_date_value(value) -> date | None:
    """The date in one value, as the publisher wrote it (no time-zone shift), or None.

    The one date parser of the project: page metadata, ``<time datetime>``, a source's
    date selector, and what discovery reads (feed ``pubDate``/``updated``, sitemap
    ``<lastmod>``, JSON API and WordPress fields). Machine forms first, each read whole:
    milliseconds since the epoch (JSON APIs; a JSON number too), ``22.06.2017``,
    ``20170622``, RFC 822 (feeds; two-digit years too), ISO 8601; then the first date
    written in the text (:func:`dates_in_text`: ``22 June 2017``, ``2017年6月22日`` ...).
    Machine forms take any year (a feed's ``0001-01-01`` placeholder is a date): callers
    bound what they accept (:data:`MIN_DATE`, the fetch date).
    """
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    for reader in (_epoch_ms, _dotted_dmy, _compact, _rfc822, _iso_prefix):
        found = reader(text)
        if found:
            return found
    found = dates_in_text(text)
    return found[0][1] if found else None


def _epoch_ms(text: str) -> date | None:
    if EPOCH_MS_RE.fullmatch(text):
        return datetime.fromtimestamp(int(text) / 1000, tz=timezone.utc).date()
    return None


def _dotted_dmy(text: str) -> date | None:
    match = DOTTED_DMY_RE.fullmatch(text)
    return valid_date(int(match[3]), int(match[2]), int(match[1])) if match else None


def _compact(text: str) -> date | None:
    match = COMPACT_RE.match(text)
    return valid_date(*map(int, match.groups())) if match else None


def _rfc822(text: str) -> date | None:
    try:
        return parsedate_to_datetime(text).date()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _iso_prefix(text: str) -> date | None:
    match = ISO_PREFIX_RE.match(text)
    return valid_date(*map(int, match.groups())) if match else None


# English-language sites of countries that write 22/06/2017 (day first); other English sites,
# US ones above all (.gov, .mil, .us and most .com), write 06/22/2017.
DAY_FIRST_TLDS = frozenset([
    "uk", "au", "nz", "ie", "in", "za", "sg", "hk", "pk", "ng", "ke",
    "my", "mt", "cy", "gh", "lk", "bd", "jm", "tt",
])


def day_first(language: str | None, url: str) -> bool:
    """Whether a numeric date such as 03/04/2019 on this page puts the day first.

    Every language but English does. English does on sites of countries that write
    day-first (by the host's country-code domain: gov.uk, gov.au, gov.in, ...), not on US
    sites or generic domains, where 03/04/2019 is March 4. A value that can only be read
    one way (06/22/2017) is read that way whatever the convention.
    """
    if language != "en":
        return True
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    return host.rsplit(".", 1)[-1] in DAY_FIRST_TLDS


class DateFinder:
    """Collects date candidates from one parsed page; :meth:`best` applies the precedence."""

    def __init__(self, tree, url: str | None, *, fetched_on: date, language: str | None = None,
                 headline: str | None = None) -> None:
        self.tree = tree
        self.url = url or ""
        self.fetched_on = fetched_on
        self.day_first = day_first(language, self.url)
        self.headline = headline

    def _ok(self, value: date | None) -> date | None:
        return value if value and MIN_DATE <= value <= self.fetched_on else None

    def from_meta(self, ranks: dict = META_RANK) -> date | None:
        best_rank, best = len(ranks), None
        for meta in self.tree.xpath(META_XPATH):
            key = (meta.get("property") or meta.get("name") or meta.get("itemprop") or meta.get("http-equiv") or "")
            rank = ranks.get(key.strip().lower())
            if rank is not None and rank < best_rank:
                parsed = self._ok(parse_date_value(meta.get("content")))
                if parsed:
                    best_rank, best = rank, parsed
        if best is None and ranks is META_RANK:
            for element in self.tree.xpath('//*[@itemprop="datePublished"][not(self::meta)]'):
                best = self._ok(parse_date_value(element.get("datetime") or element.get("content")
                                                 or element.text_content()))
                if best:
                    break
        return best

    def from_json_ld(self) -> date | None:
        for script in self.tree.xpath('//script[@type="application/ld+json"]/text()'):
            for value in JSON_LD_PUBLISHED_RE.findall(script):
                parsed = self._ok(parse_date_value(json.loads(f'"{value}"') if "\\" in value else value))
                if parsed:
                    return parsed
        return None

    def from_url(self) -> date | None:
        path = re.sub(r"^[a-z]+://[^/]+", "", self.url)
        for pattern in (URL_SLASH_DATE_RE, URL_DATE_RE):
            for match in pattern.finditer(path):
                parsed = self._ok(valid_date(int(match["y"]), int(match["m"]), int(match["d"])))
                if parsed:
                    return parsed
        return None

    def from_time_element(self) -> date | None:
        xpath = ("//article//time[@datetime] | //main//time[@datetime] | //h1/..//time[@datetime]"
                 " | //time[@pubdate][@datetime]")
        for element in self.tree.xpath(xpath):
            parsed = self._ok(parse_date_value(element.get("datetime")))
            if parsed and not self._labelled_modified(element):
                return parsed
        return None

    @staticmethod
    def _labelled_modified(element) -> bool:
        parent = element.getparent()
        context = (parent.text_content() if parent is not None else "")[:120]
        return bool(re.search(r"modified|updated|aktualisiert|mise à jour|更新", context, re.IGNORECASE))

    def _visible_text(self) -> tuple[str, int | None]:
        """Body text in document order, and where the headline starts in it (None if not found)."""
        body = self.tree.find(".//body")
        if body is None:
            return "", None
        chunks, headline_at, size = [], None, 0
        for event, node in etree.iterwalk(body, events=("start", "end")):
            # Blocks are separated, so "headline</h1><p>June 22" cannot read as "headlineJune 22".
            separator = "\n" if node.tag not in INLINE else ""
            if event == "start":
                if headline_at is None and node.tag == "h1":
                    headline_at = size
                text = node.text if node.tag not in INVISIBLE and isinstance(node.tag, str) else None
                piece = separator + (text or "")
            else:
                piece = separator + (node.tail or "") if node is not body else None
            if piece:
                chunks.append(piece)
                size += len(piece)
        return "".join(chunks), headline_at

    def _headline_positions(self, text: str, h1_at: int | None) -> list[int]:
        """Where the headline appears in the visible text: the title's occurrences, else the h1."""
        words = (self.headline or "").split()
        if words:
            pattern = r"\s*".join(re.escape(word) for word in " ".join(words)[:40].split())
            found = [m.start() for m in re.finditer(pattern, text)]
            if found:
                return found
        return [h1_at] if h1_at is not None else []

    def from_text(self) -> date | None:
        text, h1_at = self._visible_text()
        anchors = self._headline_positions(text, h1_at)
        candidates = [(pos, d) for pos, d in self._dates_near(text, anchors) if self._ok(d)]
        usable = [(pos, d) for pos, d in candidates
                  if not NOT_PUBLISHED_RE.search(text[max(0, pos - LABEL_WINDOW):pos])]
        for pos, found in usable:
            # A labelled date ("Published:", "发布时间：") near the headline, or anywhere if none found.
            in_window = not anchors or any(a - BEFORE_HEADLINE <= pos <= a + AFTER_HEADLINE for a in anchors)
            if in_window and PUBLISHED_LABEL_RE.search(text[max(0, pos - LABEL_WINDOW):pos]):
                return found
        near = []
        for pos, found in usable:
            for anchor in anchors:
                # Dates just after the headline are the norm; ones before it are penalised.
                if anchor - BEFORE_HEADLINE <= pos <= anchor + AFTER_HEADLINE:
                    near.append((pos - anchor if pos >= anchor else anchor - pos + BEFORE_HEADLINE, found))
        return min(near)[1] if near else None

    def _dates_near(self, text: str, anchors: list[int]) -> list[tuple[int, date]]:
        """The dates of ``text`` that :meth:`from_text` can use: with headline anchors, only those
        starting within a window around one (a page's text is long, the windows are not: 4x
        faster on real pages); without, all of them. Each window is read with :data:`WINDOW_PAD`
        characters of context on both sides, so a date is read as in the whole text."""
        if not anchors:
            return dates_in_text(text, self.day_first)
        windows: list[list[int]] = []
        for low, high in sorted((max(0, a - BEFORE_HEADLINE), a + AFTER_HEADLINE) for a in anchors):
            if windows and low <= windows[-1][1] + WINDOW_PAD:
                windows[-1][1] = max(windows[-1][1], high)
            else:
                windows.append([low, high])
        found = []
        for low, high in windows:
            start = max(0, low - WINDOW_PAD)
            found += [(start + pos, d) for pos, d in dates_in_text(text[start:high + WINDOW_PAD], self.day_first)
                      if low <= start + pos <= high]
        return found

    def from_htmldate(self) -> date | None:
        from htmldate import find_date

        try:
            found = find_date(self.tree, extensive_search=False, original_date=True, url=self.url or None,
                              min_date=MIN_DATE.isoformat(), max_date=self.fetched_on.isoformat())
        except Exception:  # htmldate raises assorted errors on odd markup; a guess is optional
            logger.debug("htmldate failed on %s", self.url, exc_info=True)
            return None
        return self._ok(parse_date_value(found))

    def hint(self, hints: dict | None, source: str) -> date | None:
        if not hints or (hints.get("date_source") or "feed") != source:
            return None
        return self._ok(parse_date_value(str(hints.get("date") or "")))

    def printed(self) -> tuple[date, str] | None:
        """The date printed in the page itself (``<time>``, then the visible text) and its source."""
        for source, finder in (("time", self.from_time_element), ("text", self.from_text)):
            found = finder()
            if found:
                return found, source
        return None

    def url_or_printed(self, url_date: date, notes: list | None = None) -> tuple[date, str]:
        """A date found in the URL, unless the page prints a date more than
        URL_DATE_TOLERANCE_DAYS away: sites re-stamp migrated archives (PRC MFA's 2024 move
        re-issued 2022 items under ``202405/t20240530_``), and the page keeps the real date."""
        printed = self.printed()
        if printed and abs((printed[0] - url_date).days) > URL_DATE_TOLERANCE_DAYS:
            if notes is not None:
                notes.append(f"the URL says {url_date.isoformat()} but the page prints {printed[0].isoformat()} "
                             f"({printed[1]}); the page's date is kept")
            return printed
        return url_date, "url"

    def best(self, hints: dict | None = None, notes: list | None = None) -> tuple[str | None, str | None]:
        """(YYYY-MM-DD, date_source) of the strongest candidate, or (None, None). ``notes``
        gets a line when a URL date lost to the date printed in the page."""
        steps = (
            ("meta", self.from_meta),
            ("json-ld", self.from_json_ld),
            ("url", self.from_url),
            ("feed", lambda: self.hint(hints, "feed")),
            ("time", self.from_time_element),
            ("meta", lambda: self.from_meta(GENERIC_RANK)),
            ("listing", lambda: self.hint(hints, "listing")),
            ("text", self.from_text),
            ("sitemap", lambda: self.hint(hints, "sitemap")),
            ("htmldate", self.from_htmldate),
        )
        for source, finder in steps:
            found = finder()
            if found:
                if source == "url":
                    found, source = self.url_or_printed(found, notes)
                return found.isoformat(), source
        return None, None


def find_published(tree, url: str | None, *, fetched_at: datetime, hints: dict | None = None,
                   language: str | None = None, headline: str | None = None,
                   notes: list | None = None) -> tuple[str | None, str | None]:
    """Publication date (YYYY-MM-DD) and its source for a parsed page; see the module docstring."""
    fetched_on = (fetched_at.astimezone(timezone.utc) if fetched_at.tzinfo else fetched_at).date()
    finder = DateFinder(tree, url, fetched_on=fetched_on, language=language, headline=headline)
    return finder.best(hints, notes)
