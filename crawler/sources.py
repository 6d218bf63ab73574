"""The source registry: official publishers described as data in TOML.

A registry file holds ``[[sources]]`` tables (keys documented in README.md and
in :data:`KEYS`). :func:`load_sources` validates the whole file before any
request is made and raises :class:`SourceError` with one line naming the file,
the source id and the key at fault.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

KINDS = ("embassy", "foreign_ministry", "head_of_government", "government", "agency", "international")
DEFAULT_DELAY = 2.0  # seconds between requests to one host; polite unless a source says otherwise
DEFAULT_MAX_PAGES = 50  # listing pages followed per listing URL in one crawl

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

ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$|^[A-Z][A-Z0-9-]{1,11}$")
LANGUAGE_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
DOMAIN_RE = re.compile(r"^[A-Za-z0-9.-]+$")


JSON_COLUMNS = ("languages", "feeds", "sitemaps", "listings", "allowed_domains", "json_api", "wp_rest",
                "selectors", "host_aliases", "statement_types")


class SourceError(ValueError):
    """A registry problem a user must fix; ``str()`` is the one-line message."""


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

    @property
    def endpoint_urls(self) -> list[str]:
        """Every configured URL the crawl starts from."""
        return self.feeds + self.sitemaps + self.listings + self.wp_rest + [api["url"] for api in self.json_api]

    def canonical(self, url: str) -> str:
        """``url`` with an alias host (``host_aliases``) replaced by its canonical host."""
        if not self.host_aliases:
            return url
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        canonical = self.host_aliases.get(host)
        if not canonical:
            return url
        netloc = canonical + (f":{parts.port}" if parts.port else "")
        return parts._replace(netloc=netloc).geturl()

    @property
    def article_re(self) -> re.Pattern:
        return re.compile(self.article_pattern)

    @property
    def pagination_re(self) -> re.Pattern | None:
        return re.compile(self.pagination_pattern) if self.pagination_pattern else None

    def allows(self, url: str) -> bool:
        """True when ``url``'s host is one of this source's domains (or a subdomain)."""
        host = (urlsplit(url).hostname or "").lower()
        return any(host == d or host.endswith("." + d) for d in self.allowed_domains)

    @classmethod
    def from_row(cls, row: dict) -> "Source":
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
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SourceError(f"{where}: file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"{where}: cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SourceError(f"{where}: TOML syntax error: {exc}") from None
    extra = sorted(set(data) - {"sources"})
    if extra:
        raise SourceError(f"{where}: unknown top-level key '{extra[0]}' (expected [[sources]] tables)")
    entries = data.get("sources")
    if not isinstance(entries, list) or not entries:
        raise SourceError(f"{where}: no [[sources]] tables found")
    sources, seen = [], set()
    for index, entry in enumerate(entries, start=1):
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
        raise SourceError(f"{where}: unknown source id '{unknown[0]}' (see `pressarchive sources`)")
    return [by_id[i] for i in ids]


def _validate(entry: dict, where: str, index: int) -> Source:
    sid = entry.get("id") if isinstance(entry.get("id"), str) else f"#{index}"

    def fail(key: str, problem: str):
        raise SourceError(f"{where}: source '{sid}': key '{key}': {problem}")

    for key in entry:
        if key not in KEYS:
            fail(key, f"unknown key (allowed: {', '.join(KEYS)})")
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
            fail("languages", f"'{lang}' is not a BCP 47 language code")
    for key in ("feeds", "sitemaps", "listings", "wp_rest"):
        for url in entry.get(key, []):
            if not _is_http_url(url):
                fail(key, f"'{url}' is not an absolute http(s) URL")
    for api in entry.get("json_api", []):
        _validate_json_api(api, fail)
    _validate_extras(entry, fail)
    start_urls = [u for k in ("feeds", "sitemaps", "listings", "wp_rest") for u in entry.get(k, [])]
    start_urls += [_template_host_url(api["url"]) for api in entry.get("json_api", [])]
    if not start_urls:
        fail("listings", "a source needs at least one URL in feeds, sitemaps, listings, json_api or wp_rest")
    for key in ("article_pattern", "pagination_pattern"):
        if key in entry:
            try:
                re.compile(entry[key])
            except re.error as exc:
                fail(key, f"bad regular expression: {exc}")
    if "homepage" in entry and not _is_http_url(entry["homepage"]):
        fail("homepage", f"'{entry['homepage']}' is not an absolute http(s) URL")
    domains = entry.get("allowed_domains")
    if domains is not None:
        for domain in domains:
            if not DOMAIN_RE.match(domain) or "." not in domain and domain != "localhost":
                fail("allowed_domains", f"'{domain}' is not a host name (no scheme, port or path)")
        uncovered = [u for u in start_urls if not _host_in(u, domains)]
        if uncovered:
            fail("allowed_domains", f"does not cover the host of '{uncovered[0]}'")
    else:
        domains = sorted({urlsplit(u).hostname.lower() for u in start_urls}
                         | {h.lower() for h in entry.get("host_aliases", {}).values()})
    delay = entry.get("delay", DEFAULT_DELAY)
    if delay < 0:
        fail("delay", "must be >= 0 seconds")
    max_pages = entry.get("max_pages", DEFAULT_MAX_PAGES)
    if max_pages < 1:
        fail("max_pages", "must be >= 1")
    if "host_country" in entry and not COUNTRY_RE.match(entry["host_country"]):
        fail("host_country", "expected an ISO 3166 alpha-2 code")

    values = {k: v for k, v in entry.items() if k in KEYS}
    values.update(allowed_domains=[d.lower() for d in domains], delay=float(delay), max_pages=max_pages)
    return Source(**values)


def _template_host_url(template: str) -> str:
    """A templated endpoint URL with its placeholders filled, for host checks."""
    return template.replace("{page}", "1").replace("{offset}", "0").replace("{size}", "10")


def _validate_json_api(api: dict, fail) -> None:
    for key, value in api.items():
        if key not in JSON_API_KEYS:
            fail("json_api", f"unknown key '{key}' (allowed: {', '.join(JSON_API_KEYS)})")
        if not isinstance(value, JSON_API_KEYS[key]) or isinstance(value, bool):
            fail("json_api", f"'{key}' must be {_type_name(JSON_API_KEYS[key])}")
    if "url" not in api:
        fail("json_api", "each endpoint needs a url")
    if not _is_http_url(_template_host_url(api["url"])):
        fail("json_api", f"'{api['url']}' is not an absolute http(s) URL")
    if "url_field" not in api and "url_template" not in api:
        fail("json_api", "each endpoint needs url_field or url_template")
    if api.get("method", "GET").upper() not in ("GET", "POST"):
        fail("json_api", "method must be GET or POST")
    if "detail_url" in api and "detail_body" not in api:
        fail("json_api", "detail_url needs detail_body (the path to the body HTML)")


def _validate_extras(entry: dict, fail) -> None:
    for name, selectors in entry.get("selectors", {}).items():
        if name not in SELECTOR_KEYS:
            fail("selectors", f"unknown selector '{name}' (allowed: {', '.join(SELECTOR_KEYS)})")
        if not isinstance(selectors, list) or not all(isinstance(v, str) for v in selectors):
            fail("selectors", f"'{name}' must be a list of CSS selectors")
    if "date_from_url" in entry:
        try:
            pattern = re.compile(entry["date_from_url"])
        except re.error as exc:
            fail("date_from_url", f"bad regular expression: {exc}")
        if pattern.groups != 1 and not {"y", "m", "d"} <= set(pattern.groupindex):
            fail("date_from_url", "needs one group of 8 digits (YYYYMMDD) or named groups y, m, d")
    for alias, canonical in entry.get("host_aliases", {}).items():
        if not isinstance(canonical, str) or not DOMAIN_RE.match(alias) or not DOMAIN_RE.match(canonical):
            fail("host_aliases", f"'{alias}' = '{canonical}' is not a pair of host names")
    for pattern, kind in entry.get("statement_types", {}).items():
        try:
            re.compile(pattern)
        except re.error as exc:
            fail("statement_types", f"bad regular expression '{pattern}': {exc}")
        if kind not in STATEMENT_TYPES:
            fail("statement_types", f"'{kind}' is not one of {', '.join(STATEMENT_TYPES)}")


def _type_name(types) -> str:
    names = {str: "a string", list: "a list", int: "an integer", bool: "true or false"}
    if isinstance(types, tuple):
        return "a number"
    return names.get(types, types.__name__)


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _host_in(url: str, domains: list[str]) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return any(host == d.lower() or host.endswith("." + d.lower()) for d in domains)
