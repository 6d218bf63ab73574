"""The source registry: official publishers described as data in TOML.

A registry file holds ``[[sources]]`` tables (keys documented in README.md and
in :data:`KEYS`). :func:`load_sources` validates the whole file before any
request is made and raises :class:`SourceError` with one line naming the file,
the source (its id, or ``#n`` for the n-th table when the id is unusable) and
the key at fault.

Registry regexes (``article_pattern``, ``article_exclude``, ``pagination_pattern``,
``date_from_url``, ``statement_types``) run on URLs that the crawled sites choose,
so they are compiled with RE2 (google-re2), whose matching time grows linearly
with the URL whatever the pattern: ``(a+)+$`` on a link of 40 ``a`` and a ``!`` takes
microseconds, where Python's backtracking :mod:`re` would spin for a day without
even answering Ctrl-C. What RE2 leaves out (lookarounds, backreferences, atomic
groups) is rejected when the registry is loaded, with the RE2 way to say it; a
negative lookahead in ``article_pattern`` becomes ``article_exclude``. In RE2,
``\\d``, ``\\w``, ``\\s`` and ``\\b`` are ASCII-only (``\\pL`` is any letter),
``(?i)`` makes a pattern case-insensitive and ``\\z`` is the end of the text.
A URL longer than :data:`MAX_URL_CHARS` never matches: it is skipped with one
log line.
"""

from __future__ import annotations

import json
import logging
import math
import re
import warnings
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import re2
import tomllib

from archive.patterns import MAX_URL_CHARS, safe_regex

logger = logging.getLogger(__name__)

KINDS = ("embassy", "foreign_ministry", "head_of_government", "government", "agency", "international")
DEFAULT_DELAY = 2.0  # seconds between requests to one host; polite unless a source says otherwise
DEFAULT_MAX_PAGES = 50  # listing pages followed per listing URL in one crawl

# What a registry may ask for: a typo must not become a day-long wait or a billion pages.
MAX_DELAY = 86_400  # seconds: one request a day
MAX_PAGES_LIMIT = 100_000  # max_pages, here and in json_api
MAX_API_SIZE = 1_000  # json_api items per page
MAX_SELECTOR_CHARS = 1_000
MAX_ID_CHARS = 100
MAX_REGISTRY_BYTES = 16 * 1024 * 1024  # the bundled catalogue is ~40 KB

# key -> (python type(s), required)
KEYS = {
    "id": (str, True),
    "name": (str, True),
    "country": (str, True),
    "kind": (str, True),
    "languages": (list, True),
    "feeds": (list, False),
    "sitemaps": (list, False),
    "listings": (list, False),
    "article_pattern": (str, True),
    "article_exclude": (str, False),  # regex: URLs that match article_pattern but are not releases
    "pagination_pattern": (str, False),
    "allowed_domains": (list, False),
    "delay": ((int, float), False),
    "max_pages": (int, False),
    "homepage": (str, False),
    "host_country": (str, False),
    "enabled": (bool, False),
    "notes": (str, False),
    "json_api": (list, False),  # [[sources.json_api]] tables: JSON endpoints with paging
    "wp_rest": (list, False),  # WordPress REST collection URLs
    "selectors": (dict, False),  # ordered CSS fallbacks: title, date, body, remove
    "date_from_url": (str, False),  # regex: 8 digits YYYYMMDD, or named groups y, m, d
    "host_aliases": (dict, False),  # alias host -> canonical host
    "statement_types": (dict, False),  # URL regex -> statement type
    "verified": (str, False),  # how far public evidence backs the entry: one of VERIFIED
    "translations": (dict, False),  # piece of a release's address -> the same in its translation's
}
LIST_OF_TABLES = {"json_api"}
STATEMENT_TYPES = ("press_release", "statement", "readout", "speech", "joint_statement", "press_conference",
                   "notice", "other")
JSON_API_KEYS = {
    "url": str, "method": str, "body": str, "items": str, "url_field": str, "url_template": str,
    "title_field": str, "date_field": str, "summary_field": str, "size": int, "max_pages": int,
    "total_field": str, "detail_url": str, "detail_body": str, "detail_title": str, "detail_date": str,
}
SELECTOR_KEYS = ("title", "date", "body", "remove")
# ``verified``: confirmed = a discovery URL and release URLs of the entry were seen in public pages or
# public code; plausible = one of them was seen, the rest follows the site family's convention;
# unverified = nothing specific to the entry was seen (the default: a claim must be earned).
VERIFIED = ("confirmed", "plausible", "unverified")
DEFAULT_VERIFIED = "unverified"
ELEMENT_SELECTORS = ("body", "remove")  # kept or dropped as nodes: no ::text or ::attr()

ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$|^[A-Z][A-Z0-9-]{1,11}$")
LANGUAGE_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
DOMAIN_RE = re.compile(r"^[A-Za-z0-9.-]+$")
TEMPLATE_FIELD_RE = re.compile(r"\{[A-Za-z0-9_.]+(?:\|[a-z]+)*\}")  # json_api {field|filter}

# What date_from_url's groups must be able to match (tried most likely first).
YEARS = tuple(str(y) for y in [*range(2024, 2050), *range(2023, 1949, -1)])
MONTHS = tuple(f"{m:02d}" for m in range(1, 13)) + tuple(str(m) for m in range(1, 10))
DAYS = tuple(f"{d:02d}" for d in range(1, 32)) + tuple(str(d) for d in range(1, 10))
DATES = tuple(y + md for y in YEARS for md in ("0115", "1231", "1009"))


JSON_COLUMNS = ("languages", "feeds", "sitemaps", "listings", "allowed_domains", "json_api", "wp_rest",
                "selectors", "host_aliases", "statement_types", "translations")


class SourceError(ValueError):
    """A registry problem a user must fix; ``str()`` is the one-line message."""

    def __init__(self, message: str):
        # Values quoted from the file may hold newlines or control characters: escaped, one line.
        super().__init__("".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in message))


class URLPattern:
    """A registry regex applied to URLs: RE2, and no URL over :data:`MAX_URL_CHARS` matches.

    ``search(url)`` returns a match or None, as :meth:`re.Pattern.search` does. A match
    of ``exclude`` (``article_exclude``) vetoes a match of ``pattern``. With ``source_id``
    each over-long URL is logged once (only the article pattern logs: discovery tries it
    first on every link).
    """

    def __init__(self, pattern: str, exclude: str | None = None, source_id: str | None = None):
        self.pattern = pattern
        self.regex = safe_regex(pattern)
        self.exclude = safe_regex(exclude) if exclude else None
        self.source_id = source_id
        self._reported: set[int] = set()

    def search(self, url: str):
        if len(url) > MAX_URL_CHARS:
            self._too_long(url)
            return None
        match = self.regex.search(url)
        if match is not None and self.exclude is not None and self.exclude.search(url) is not None:
            return None
        return match

    def _too_long(self, url: str) -> None:
        if self.source_id is None or hash(url) in self._reported:
            return
        if len(self._reported) < 10_000:
            self._reported.add(hash(url))
        logger.warning("source '%s': skipped a URL of %d characters (over %d): %s…",
                       self.source_id, len(url), MAX_URL_CHARS, url[:100])

    def __repr__(self) -> str:
        return f"URLPattern({self.pattern!r})"


@lru_cache(maxsize=1024)
def url_pattern(pattern: str, exclude: str | None = None, source_id: str | None = None) -> URLPattern:
    """The shared :class:`URLPattern` for these arguments (compiled once per process)."""
    return URLPattern(pattern, exclude, source_id)


# -- sources ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    id: str
    name: str
    country: str
    kind: str
    languages: list[str]
    article_pattern: str
    feeds: list[str] = field(default_factory=list)
    sitemaps: list[str] = field(default_factory=list)
    listings: list[str] = field(default_factory=list)
    pagination_pattern: str | None = None
    allowed_domains: list[str] = field(default_factory=list)
    delay: float = DEFAULT_DELAY
    max_pages: int = DEFAULT_MAX_PAGES
    homepage: str | None = None
    host_country: str | None = None
    enabled: bool = True
    notes: str = ""
    json_api: list[dict] = field(default_factory=list)
    wp_rest: list[str] = field(default_factory=list)
    selectors: dict = field(default_factory=dict)
    date_from_url: str | None = None
    host_aliases: dict = field(default_factory=dict)
    statement_types: dict = field(default_factory=dict)
    article_exclude: str | None = None
    verified: str = DEFAULT_VERIFIED
    translations: dict = field(default_factory=dict)

    @property
    def endpoint_urls(self) -> list[str]:
        """Every configured URL the crawl starts from."""
        return self.feeds + self.sitemaps + self.listings + self.wp_rest + [api["url"] for api in self.json_api]

    def canonical(self, url: str) -> str:
        """``url`` with an alias host (``host_aliases``) replaced by its canonical host."""
        if not self.host_aliases:
            return url
        try:
            parts = urlsplit(url)
            host, port = (parts.hostname or "").lower(), parts.port
        except ValueError:  # a hostile link: "http://[::1", a port over 65535
            return url
        canonical = self.host_aliases.get(host)
        if not canonical:
            return url
        netloc = canonical + (f":{port}" if port else "")
        return parts._replace(netloc=netloc).geturl()

    @property
    def article_re(self) -> URLPattern:
        """``article_pattern`` less ``article_exclude``, over URLs up to MAX_URL_CHARS."""
        return url_pattern(self.article_pattern, self.article_exclude, self.id)

    @property
    def pagination_re(self) -> URLPattern | None:
        return url_pattern(self.pagination_pattern) if self.pagination_pattern else None

    def allows(self, url: str) -> bool:
        """True when ``url``'s host is one of this source's domains (or a subdomain)."""
        return _host_in(url, self.allowed_domains)

    @classmethod
    def from_row(cls, row: dict) -> Source:
        """Inverse of :meth:`as_row` (lists stored as JSON text)."""
        values = {k: v for k, v in row.items() if k in KEYS}
        for key in JSON_COLUMNS:
            if isinstance(values.get(key), str):
                values[key] = json.loads(values[key])
        values = {k: v for k, v in values.items() if v is not None}
        return cls(**values)

    def as_row(self) -> dict:
        row = asdict(self)
        row.pop("enabled")
        for key in JSON_COLUMNS:
            row[key] = json.dumps(row[key], ensure_ascii=False)
        return row


def bundled_catalogue() -> Path:
    """Path of the catalogue shipped inside the package."""
    return Path(str(resources.files("crawler").joinpath("sources.toml")))


def load_sources(path: str | Path | None = None, text: str | None = None) -> list[Source]:
    """Read and validate a registry file; raise SourceError on the first problem."""
    path = Path(path) if path else bundled_catalogue()
    where = str(path)
    if text is None:
        try:
            size = path.stat().st_size
            if size > MAX_REGISTRY_BYTES:
                raise SourceError(f"{where}: file of {size:,} bytes is too large for a registry "
                                  f"(at most {MAX_REGISTRY_BYTES:,})")
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SourceError(f"{where}: file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"{where}: cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SourceError(f"{where}: TOML syntax error: {exc}") from None
    except RecursionError:
        raise SourceError(f"{where}: TOML syntax error: arrays or tables nested too deeply") from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise SourceError(f"{where}: TOML value out of range: {exc}") from None
    extra = sorted(set(data) - {"sources"})
    if extra:
        raise SourceError(f"{where}: unknown top-level key '{_shown(extra[0])}' (expected [[sources]] tables)")
    entries = data.get("sources")
    if not isinstance(entries, list) or not entries:
        raise SourceError(f"{where}: no [[sources]] tables found")
    sources, seen = [], set()
    for index, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise SourceError(f"{where}: source '#{index}': expected a [[sources]] table, "
                              f"got {type(entry).__name__}")
        source = _validate(entry, where, index)
        if source.id in seen:
            raise SourceError(f"{where}: source '{source.id}': key 'id': duplicate id")
        seen.add(source.id)
        sources.append(source)
    return sources


def select_sources(sources: list[Source], ids: list[str] | tuple[str, ...], where: str = "registry") -> list[Source]:
    """The sources named by ``ids`` (all enabled ones when empty); unknown ids are an error."""
    if not ids:
        return [s for s in sources if s.enabled]
    by_id = {s.id: s for s in sources}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise SourceError(f"{where}: unknown source id '{_shown(unknown[0])}' (see `pressarchive sources`)")
    return [by_id[i] for i in ids]


# -- validation -------------------------------------------------------------------------


def _validate(entry: dict, where: str, index: int) -> Source:
    raw_id = entry.get("id")
    sid = _shown(raw_id, 40) if isinstance(raw_id, str) and raw_id.strip() else f"#{index}"

    def fail(key: str, problem: str):
        raise SourceError(f"{where}: source '{sid}': key '{key}': {problem}")

    for key in entry:
        if key not in KEYS:
            fail(_shown(key, 40), f"unknown key (allowed: {', '.join(KEYS)})")
    for key, (types, required) in KEYS.items():
        if key not in entry:
            if required:
                fail(key, "missing required key")
            continue
        value = entry[key]
        if isinstance(value, bool) and types is not bool:
            fail(key, f"expected {_type_name(types)}, got a boolean")
        if not isinstance(value, types):
            fail(key, f"expected {_type_name(types)}, got {type(value).__name__}")
        if types is list and key not in LIST_OF_TABLES and not all(isinstance(v, str) for v in value):
            fail(key, "expected a list of strings")
        if key in LIST_OF_TABLES and not all(isinstance(v, dict) for v in value):
            fail(key, f"expected [[sources.{key}]] tables")

    if not ID_RE.match(entry["id"]):
        fail("id", "use lowercase letters, digits, '-' and '_'")
    if len(entry["id"]) > MAX_ID_CHARS:
        fail("id", f"at most {MAX_ID_CHARS} characters")
    if not entry["name"].strip():
        fail("name", "must not be empty")
    if not COUNTRY_RE.match(entry["country"]):
        fail("country", "expected an ISO 3166 alpha-2 code such as 'CA' (or an org code such as 'EU')")
    if entry["kind"] not in KINDS:
        fail("kind", f"expected one of {', '.join(KINDS)}")
    if not entry["languages"]:
        fail("languages", "list at least one BCP 47 code")
    for lang in entry["languages"]:
        if not LANGUAGE_RE.match(lang):
            fail("languages", f"'{_shown(lang)}' is not a BCP 47 language code")
    for key in ("feeds", "sitemaps", "listings", "wp_rest"):
        for url in entry.get(key, []):
            problem = _url_problem(url)
            if problem:
                fail(key, problem)
    for api in entry.get("json_api", []):
        _validate_json_api(api, fail)
    _validate_extras(entry, fail)
    start_urls = [u for k in ("feeds", "sitemaps", "listings", "wp_rest") for u in entry.get(k, [])]
    start_urls += [_template_host_url(api["url"]) for api in entry.get("json_api", [])]
    if not start_urls:
        fail("listings", "a source needs at least one URL in feeds, sitemaps, listings, json_api or wp_rest")
    for key in ("article_pattern", "article_exclude", "pagination_pattern"):
        if key in entry:
            _check_regex(entry[key], key, fail)
    if "homepage" in entry:
        problem = _url_problem(entry["homepage"])
        if problem:
            fail("homepage", problem)
    domains = entry.get("allowed_domains")
    if domains is not None:
        for domain in domains:
            if not _is_host(domain):
                fail("allowed_domains", f"'{_shown(domain)}' is not a host name (no scheme, port or path)")
        uncovered = [u for u in start_urls if not _host_in(u, domains)]
        if uncovered:
            fail("allowed_domains", f"does not cover the host of '{_shown(uncovered[0])}'")
    else:
        domains = sorted({urlsplit(u).hostname.lower() for u in start_urls}
                         | {h.lower() for h in entry.get("host_aliases", {}).values()})
    delay = entry.get("delay", DEFAULT_DELAY)
    if isinstance(delay, float) and not math.isfinite(delay):
        fail("delay", f"must be a finite number of seconds, not {delay}")
    if delay < 0:
        fail("delay", "must be >= 0 seconds")
    if delay > MAX_DELAY:
        fail("delay", f"must be at most {MAX_DELAY:,} seconds (one day)")
    _check_page_count(entry.get("max_pages", DEFAULT_MAX_PAGES), "max_pages", fail)
    if "host_country" in entry and not COUNTRY_RE.match(entry["host_country"]):
        fail("host_country", "expected an ISO 3166 alpha-2 code")
    if entry.get("verified", DEFAULT_VERIFIED) not in VERIFIED:
        fail("verified", f"'{_shown(entry['verified'], 40)}' is not one of {', '.join(VERIFIED)}")

    values = {k: v for k, v in entry.items() if k in KEYS}
    values.update(allowed_domains=[d.lower() for d in domains], delay=float(delay),
                  max_pages=entry.get("max_pages", DEFAULT_MAX_PAGES))
    return Source(**values)


def _check_page_count(value: int, key: str, fail, what: str = "") -> None:
    if not 1 <= value <= MAX_PAGES_LIMIT:
        fail(key, f"{what}must be between 1 and {MAX_PAGES_LIMIT:,}")


def _template_host_url(template: str) -> str:
    """A templated endpoint URL with its placeholders filled, for host checks."""
    return template.replace("{page}", "1").replace("{offset}", "0").replace("{size}", "10")


def _validate_json_api(api: dict, fail) -> None:
    for key, value in api.items():
        if key not in JSON_API_KEYS:
            fail("json_api", f"unknown key '{_shown(key, 40)}' (allowed: {', '.join(JSON_API_KEYS)})")
        if not isinstance(value, JSON_API_KEYS[key]) or isinstance(value, bool):
            fail("json_api", f"'{key}' must be {_type_name(JSON_API_KEYS[key])}")
    if "url" not in api:
        fail("json_api", "each endpoint needs a url")
    problem = _url_problem(_template_host_url(api["url"]))
    if problem:
        fail("json_api", problem)
    if "url_field" not in api and "url_template" not in api:
        fail("json_api", "each endpoint needs url_field or url_template")
    if api.get("method", "GET").upper() not in ("GET", "POST"):
        fail("json_api", "method must be GET or POST")
    if "detail_url" in api:
        if "detail_body" not in api:
            fail("json_api", "detail_url needs detail_body (the path to the body HTML)")
        problem = _url_problem(TEMPLATE_FIELD_RE.sub("x", api["detail_url"]))
        if problem:
            fail("json_api", f"detail_url: {problem}")
    if not 1 <= api.get("size", 1) <= MAX_API_SIZE:
        fail("json_api", f"size must be between 1 and {MAX_API_SIZE:,}")
    if "max_pages" in api:
        _check_page_count(api["max_pages"], "json_api", fail, "max_pages ")


def _validate_extras(entry: dict, fail) -> None:
    for name, selectors in entry.get("selectors", {}).items():
        if name not in SELECTOR_KEYS:
            fail("selectors", f"unknown selector '{_shown(name, 40)}' (allowed: {', '.join(SELECTOR_KEYS)})")
        if not isinstance(selectors, list) or not all(isinstance(v, str) for v in selectors):
            fail("selectors", f"'{name}' must be a list of CSS selectors")
        for css in selectors:
            problem = css_problem(css, elements_only=name in ELEMENT_SELECTORS)
            if problem:
                fail("selectors", f"{name}: {problem}")
    if "date_from_url" in entry:
        _check_date_from_url(entry["date_from_url"], fail)
    for alias, canonical in entry.get("host_aliases", {}).items():
        if not isinstance(canonical, str) or not _is_host(alias) or not _is_host(canonical):
            fail("host_aliases", f"'{_shown(alias)}' = '{_shown(canonical)}' is not a pair of host names")
    for pattern, kind in entry.get("statement_types", {}).items():
        _check_regex(pattern, "statement_types", fail, quoted=True)
        if kind not in STATEMENT_TYPES:
            fail("statement_types", f"'{_shown(kind)}' is not one of {', '.join(STATEMENT_TYPES)}")
    _check_translations(entry.get("translations", {}), fail)


# ``translations = { "/eng/" = "/chn/" }``: a release whose address holds the left piece has its
# translation at the same address with the right piece instead (and the other way round).
MAX_TRANSLATION_PAIRS = 20
MAX_TRANSLATION_PIECE = 200


def _check_translations(pairs: dict, fail) -> None:
    if len(pairs) > MAX_TRANSLATION_PAIRS:
        fail("translations", f"{len(pairs)} pairs (at most {MAX_TRANSLATION_PAIRS})")
    for piece, other in pairs.items():
        if not isinstance(other, str):
            fail("translations", f"'{_shown(piece)}' = {_shown(other)}: expected a piece of an address in quotes, "
                                 f"got {type(other).__name__}")
        for value in (piece, other):
            if not value or len(value) > MAX_TRANSLATION_PIECE:
                fail("translations", f"'{_shown(piece)}' = '{_shown(other)}': each side must be 1 to "
                                     f"{MAX_TRANSLATION_PIECE} characters of an address")
            if any(ch.isspace() or not ch.isprintable() for ch in value):
                fail("translations", f"'{_shown(value)}' has spaces or control characters (percent-encode them)")
        if piece == other:
            fail("translations", f"'{_shown(piece)}' = '{_shown(other)}': both sides are the same")


# -- regex checks -----------------------------------------------------------------------

# (what RE2's error message or the pattern shows, advice); the first hit is given.
RE2_ADVICE = (
    (("(?=", "(?!"), "RE2 has no lookahead; {exclude}"),
    (("(?<=", "(?<!"), "RE2 has no lookbehind; {exclude}"),
    (("(?P=",) + tuple(f"\\{n}" for n in range(1, 10)), "RE2 has no backreferences"),
    (("\\Z",), "write \\z (or $) for the end of the URL"),
    (("(?>",), "RE2 needs no atomic groups: write (?:...)"),
    (("*+", "++", "?+", "}+"), "RE2 needs no possessive quantifiers: drop the second +"),
    (("(?x",), "RE2 has no verbose mode: remove (?x), the spaces and the comments"),
    (("(?#",), "RE2 has no (?#...) comments: remove them"),
    (("(?a", "(?u", "(?L"), "RE2 has no such flag: \\d, \\w, \\s are ASCII in RE2 and \\pL is any letter"),
    (("\\u", "\\U", "\\N"), "write a code point as \\x{20AC}"),
    (("invalid repetition size",), "RE2 repeats at most {{1000}} times"),
    (("pattern too large",), "simplify it"),
)


def _check_regex(pattern: str, key: str, fail, quoted: bool = False):
    """Compile a registry regex over URLs with RE2, or fail with what is wrong and the RE2 way."""
    label = f"'{_shown(pattern)}': " if quoted else ""
    if not pattern:
        fail(key, "empty regular expression (it would match every URL)")
    stray = _scan(pattern)[1]
    if stray:
        fail(key, f"{label}'{stray}' repeats 0 to {stray[2:-1]} times in Python but is literal text in RE2: "
                  f"write {{0,{stray[2:-1]}}}")
    compiled = _compile(pattern, key, fail, label)
    if compiled.search("") is not None:
        fail(key, f"{label}matches every URL (it matches the empty string)")
    return compiled


def _compile(pattern: str, key: str, fail, label: str = ""):
    try:
        return safe_regex(pattern)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) \
            else str(exc)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError) as exc:  # broken in any engine
        fail(key, f"{label}bad regular expression: {exc}")
    advice = next((text for marks, text in RE2_ADVICE if any(m in reason or m in pattern for m in marks)), "")
    exclude = ("match the releases with article_pattern and the URLs to leave out with article_exclude"
               if key == "article_pattern" else "rewrite the pattern without it")
    advice = advice.format(exclude=exclude)
    fail(key, f"{label}RE2 (the safe regex engine) rejects it: {reason}" + (f" — {advice}" if advice else ""))


def _scan(pattern: str) -> tuple[dict, str | None]:
    """The source text of each group (by number and by name) and the first ``{,n}`` of a regex.

    A scan, not a parse: escapes, ``\\Q...\\E`` and character classes are skipped, which is
    all that is needed to find parentheses and braces.
    """
    groups, stack, stray, count, i = {}, [], None, 0, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if pattern.startswith("Q", i + 1):
                end = pattern.find("\\E", i + 2)
                i = len(pattern) if end < 0 else end + 2
                continue
            i += 2
            continue
        if char == "[":
            i = _class_end(pattern, i)
            continue
        if char == "(":
            named = re.match(r"\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>", pattern[i:])
            if named:
                count += 1
                stack.append((i + named.end(), count, named.group(1)))
            elif pattern.startswith("(?", i):
                stack.append((i, None, None))
            else:
                count += 1
                stack.append((i + 1, count, None))
        elif char == ")" and stack:
            start, number, name = stack.pop()
            if number is not None:
                groups[number] = pattern[start:i]
                if name:
                    groups[name] = pattern[start:i]
        elif char == "{" and stray is None:
            brace = re.match(r"\{,(\d+)\}", pattern[i:])
            stray = brace.group(0) if brace else None
        i += 1
    return groups, stray


def _class_end(pattern: str, start: int) -> int:
    """Index after the character class opening at ``start``."""
    i = start + 1
    if pattern.startswith("^", i):
        i += 1
    if pattern.startswith("]", i):
        i += 1
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern.startswith("[:", i):
            end = pattern.find(":]", i + 2)
            if end >= 0:
                i = end + 2
                continue
        if pattern[i] == "]":
            return i + 1
        i += 1
    return i


def _check_date_from_url(pattern: str, fail) -> None:
    """One group that can be 8 digits YYYYMMDD, or groups y, m, d that can be a year, month, day."""
    key = "date_from_url"
    if not pattern:
        fail(key, "empty regular expression")
    compiled = _compile(pattern, key, fail)
    groups = _scan(pattern)[0]
    if {"y", "m", "d"} <= set(compiled.groupindex):
        for name, samples, what in (("y", YEARS, "a year such as 2024"), ("m", MONTHS, "a month such as 01"),
                                    ("d", DAYS, "a day such as 15")):
            if not _can_match(groups.get(name), samples):
                fail(key, f"group {name} ({_shown(groups[name])}) cannot match {what}")
        return
    if compiled.groups != 1:
        fail(key, "needs one group of 8 digits (YYYYMMDD) or named groups y, m, d")
    if not _can_match(groups.get(1), DATES):
        fail(key, f"its group ({_shown(groups[1])}) cannot match 8 digits YYYYMMDD such as 20240115")


def _can_match(group: str | None, samples: tuple[str, ...]) -> bool:
    """True when the regex ``group`` matches one of ``samples`` whole (or cannot be judged)."""
    if group is None:
        return True
    try:
        whole = safe_regex(f"(?:{group})")
    except re2.error:
        return True
    return any(whole.fullmatch(sample) is not None for sample in samples)


def css_problem(css: str, elements_only: bool = False) -> str | None:
    """What is wrong with a ``selectors`` entry, or None.

    Checked with what extraction runs (pipelines/cleaning.py): parsel's CSS-to-XPath
    translation (cssselect plus ``::text`` and ``::attr()``) and lxml's XPath compiler.
    """
    from cssselect import SelectorError, parse
    from parsel import Selector

    if not css.strip():
        return "empty CSS selector"
    if len(css) > MAX_SELECTOR_CHARS:
        return f"CSS selector of {len(css):,} characters (at most {MAX_SELECTOR_CHARS:,})"
    try:
        Selector(text="<html><body><p>x</p></body></html>").css(css)
        parsed = parse(css)
    except (SelectorError, ValueError) as exc:
        return f"'{_shown(css)}' is not a valid CSS selector ({exc})"
    except RecursionError:
        return f"'{_shown(css)}' is nested too deeply"
    pseudo = next((s.pseudo_element for s in parsed if s.pseudo_element), None)
    if elements_only and pseudo:
        return f"'{_shown(css)}' selects text or an attribute (::{pseudo}); this list needs elements"
    return None


# -- small helpers ----------------------------------------------------------------------


def _shown(value, limit: int = 80) -> str:
    """``value`` as quoted in an error message: at most ``limit`` characters."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _type_name(types) -> str:
    names = {str: "a string", list: "a list", int: "an integer", bool: "true or false", dict: "a table"}
    if isinstance(types, tuple):
        return "a number"
    return names.get(types, types.__name__)


def _url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a configured URL, or None."""
    if len(url) > MAX_URL_CHARS:
        return f"URL of {len(url):,} characters (at most {MAX_URL_CHARS:,})"
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        return f"'{_shown(url)}' has spaces or control characters (percent-encode them)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        return f"'{_shown(url)}' is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"'{_shown(url)}' is not an absolute http(s) URL"
    return None


def _is_host(name: str) -> bool:
    """A host name or IP address: no scheme, port, path or empty label."""
    return (bool(DOMAIN_RE.match(name)) and all(name.split("."))
            and ("." in name or name == "localhost"))


def _host_in(url: str, domains: list[str]) -> bool:
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:  # "http://[::1" and the like: on no one's domain
        return False
    return any(host == d.lower() or host.endswith("." + d.lower()) for d in domains)
