"""Reach only what a source may reach: http(s), its own domains, and non-public addresses only at its own origins.

A page, feed, sitemap, API answer or redirect must not steer the crawler to
loopback, private, link-local (cloud metadata at 169.254.169.254),
unspecified, multicast or other reserved addresses: admin panels and metadata
endpoints on or near the crawling host. Like trafilatura 2.3's downloads
(``_vet_peer``), an address is non-public unless ``ipaddress`` calls it global
(IPv4-mapped IPv6 is checked as IPv4); multicast is non-public as well.

Trust is by **origin**, not by host. A source deliberately configured on a
non-public address (the demo, the tests, an intranet mirror) may fetch from
the origins (scheme, host, port; default ports normalised) that its own
configured URLs name: feeds, sitemaps, listings, ``wp_rest``, ``json_api``
``url``/``detail_url``/``url_template``, homepage. Another port of the same
host is another server: ``http://127.0.0.1:8000`` opens neither
``127.0.0.1:8001`` nor ``https://127.0.0.1:8000``. A host name that resolves to
a non-public address is trusted only at a configured origin of that name, or at
the very address and port of a configured origin written as an address.

Hosts are normalised before any decision, never trusted by string match:
every IPv4 spelling the C library accepts (``127.1``, ``0177.0.0.1``,
``2130706433``, ``0x7f.0.0.1``) is the address it connects to, IPv4-mapped
IPv6 (``[::ffff:127.0.0.1]``) is IPv4, host names are lower-cased without a
trailing dot (``LOCALHOST.``), and ``localhost`` / ``*.localhost`` are loopback
without asking DNS (RFC 6761). Other names are resolved through the reactor's
resolver, which is Scrapy's caching resolver: the address vetted here is the
address the download then connects to (while it stays in Scrapy's DNS cache).
A name that does not resolve is left to the download, which reports the DNS
error. Public addresses are not restricted here: ``allowed_domains`` and
``host_aliases`` decide, as before.

This downloader middleware runs before the offsite and robots.txt middlewares,
so a refused request makes no connection at all, not even for robots.txt.
Every request passes it, whatever its kind: feeds, sitemaps, listings, JSON
APIs, releases, rechecks, attachments, robots.txt (no source: any source's
origins), and every hop of a redirect. It also refuses, as a last line behind
the spider's own filters:

* any scheme but http and https (Scrapy's FTP handler can wait forever on a
  server that does not speak FTP, holding the host's download slot);
* a redirect that leaves the source's ``allowed_domains``: Scrapy's offsite
  filter lets through every redirect of a ``dont_filter`` request (start URLs,
  rechecks of known releases); :class:`OffsiteRedirect`, which the spider
  turns into a removal for a recheck, as it did for a fetched off-site page.

One log line per refusal (source, URL, reason); stats ``ssrf/refused``,
``pressarchive/<source>/refused`` and ``/errors`` (address and scheme), or
``pressarchive/<source>/offsite_redirects`` (redirects).

Settings: ``SSRF_PROTECTION`` (default True).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from scrapy import signals
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached

logger = logging.getLogger(__name__)

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
# What inet_aton may read as an IPv4 address: 1 to 4 parts, decimal, octal (0...) or hex (0x...).
_IPV4_SPELLING = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}", re.IGNORECASE)
_TEMPLATE_FIELD = re.compile(r"\{[^{}]*\}")
LOOPBACK = ipaddress.ip_address("127.0.0.1")


class Refused(IgnoreRequest):
    """A request this middleware did not let through (logged and counted here)."""


class RefusedAddress(Refused):
    """Its host is or resolves to a non-public address that is not one of the source's origins."""


class UnsupportedScheme(Refused):
    """Not http or https."""


class OffsiteRedirect(Refused):
    """A redirect to a host outside the source's ``allowed_domains``."""


# -- hosts, addresses, origins --------------------------------------------------------------------


def ip_of(host: str):
    """The address ``host`` spells (IPv4-mapped IPv6 as IPv4), without DNS; None for a name.

    Any IPv4 form the C library's ``inet_aton`` accepts counts, as that is what a
    connection to it reaches: ``127.1``, ``0177.0.0.1``, ``2130706433``, ``0x7f.1``.
    """
    host = host.strip("[]").split("%", 1)[0].rstrip(".")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if not _IPV4_SPELLING.fullmatch(host):
            return None
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except (OSError, ValueError):
            return None
    return getattr(ip, "ipv4_mapped", None) or ip


def canonical_host(host: str) -> str:
    """One spelling per host: an address in its standard form, a name lower-cased without trailing dots."""
    ip = ip_of(host)
    return str(ip) if ip is not None else host.lower().rstrip(".")


def is_localhost(host: str) -> bool:
    """``localhost`` and its subdomains are loopback by definition (RFC 6761), no DNS needed."""
    return host == "localhost" or host.endswith(".localhost")


def known_address(host: str):
    """The address of a canonical host when it is known without DNS (an address, ``localhost``), else None."""
    if is_localhost(host):
        return LOOPBACK
    return ip_of(host)


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str  # canonical_host()
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def origin_of(url: str) -> Origin | None:
    """The origin of an absolute URL, normalised; None without a host or with a bad port."""
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:  # "http://[::1", a port over 65535
        return None
    if not parts.hostname or port is None:
        return None
    return Origin(scheme, canonical_host(parts.hostname), port)


def configured_urls(source) -> list[str]:
    """Every URL a source's registry entry names (templates filled with a placeholder)."""
    urls = list(getattr(source, "endpoint_urls", None) or [*source.feeds, *source.sitemaps, *source.listings])
    for api in getattr(source, "json_api", None) or []:
        urls += [api[key] for key in ("url", "detail_url", "url_template") if api.get(key)]
    if getattr(source, "homepage", None):
        urls.append(source.homepage)
    return [_TEMPLATE_FIELD.sub("x", url) for url in urls]


@dataclass
class Origins:
    """The origins a source (or several) may reach at a non-public address."""

    origins: set = field(default_factory=set)
    # (scheme, address, port) of origins written as an address or localhost: a name that
    # resolves to one of these reaches the very server the source is configured on.
    addresses: set = field(default_factory=set)

    @classmethod
    def of(cls, source) -> Origins:
        found = cls()
        for url in configured_urls(source):
            found.add(origin_of(url))
        return found

    def add(self, origin: Origin | None) -> None:
        if origin is None:
            return
        self.origins.add(origin)
        address = known_address(origin.host)
        if address is not None:
            self.addresses.add((origin.scheme, str(address), origin.port))

    def update(self, other: Origins) -> None:
        self.origins |= other.origins
        self.addresses |= other.addresses

    def admit(self, origin: Origin, address) -> bool:
        """May ``origin``, at the non-public ``address``, be fetched?"""
        return origin in self.origins or (origin.scheme, str(address), origin.port) in self.addresses

    def on_host(self, origin: Origin, address) -> list[str]:
        """The configured origins on the same host or address as ``origin`` (for the refusal message)."""
        return sorted(str(o) for o in self.origins
                      if o.host == origin.host or str(known_address(o.host)) == str(address))


def non_public_reason(ip) -> str | None:
    """Why ``ip`` must not be fetched, or None for a public address."""
    if ip.is_loopback:
        return "loopback address"
    if ip.is_link_local:
        return "link-local address (cloud metadata endpoints live here)"
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_multicast:
        return "multicast address"
    if ip.is_private:
        return "private address"
    if not ip.is_global:
        return "reserved, non-public address"
    return None


# -- the middleware -------------------------------------------------------------------------------


class SSRFProtectionMiddleware:
    def __init__(self, crawler):
        self.crawler = crawler
        self.stats = crawler.stats
        self._origins: dict = {}
        # Redirects are filtered (offsite, duplicates) when scheduled, before any downloader
        # middleware: vet hosts known without DNS there too, so a redirect to 169.254.169.254
        # or to another local port is refused with a log line rather than dropped unseen.
        crawler.signals.connect(self.request_scheduled, signal=signals.request_scheduled)

    @classmethod
    def from_crawler(cls, crawler):
        if not crawler.settings.getbool("SSRF_PROTECTION", True):  # on unless switched off, in any project
            raise NotConfigured
        return cls(crawler)

    def _sources(self) -> dict:
        return getattr(self.crawler.spider, "sources", None) or {}

    def _trusted(self, source_id) -> Origins:
        """The origins this request may reach at a non-public address: its source's configured ones."""
        if source_id not in self._origins:
            sources = self._sources()
            if source_id in sources:
                self._origins[source_id] = Origins.of(sources[source_id])
            else:  # robots.txt and other requests without a source: any source's configured origins
                union = Origins()
                for source in sources.values():
                    union.update(Origins.of(source))
                self._origins[source_id] = union
        return self._origins[source_id]

    async def _resolve(self, host: str):
        from twisted.internet import reactor

        try:
            address = await maybe_deferred_to_future(reactor.resolve(host))
        except Exception:  # noqa: BLE001 - the download reports the DNS failure itself
            return None
        return ip_of(address)

    def request_scheduled(self, request, spider=None):
        origin = origin_of(request.url)
        if origin is None or origin.scheme not in SCHEMES:
            return  # process_request refuses it, with the errback called
        address = known_address(origin.host)
        if address is not None:
            self._vet(request, origin, address, resolved=False)

    async def process_request(self, request, spider=None):
        scheme = urlparse_cached(request).scheme.lower()
        if scheme not in SCHEMES:
            self._refuse(request, UnsupportedScheme, f"{scheme or 'no'} scheme; only http and https are fetched")
        origin = origin_of(request.url)
        if origin is None:
            return
        address = known_address(origin.host)
        if address is not None:
            self._vet(request, origin, address, resolved=False)
        self._vet_redirect(request)
        if address is None and origin not in self._trusted(request.meta.get("source_id")).origins:
            address = await self._resolve(origin.host)
            if address is not None:
                self._vet(request, origin, address, resolved=True)

    def _vet(self, request, origin: Origin, address, resolved: bool) -> None:
        reason = non_public_reason(address)
        if reason is None:
            return
        trusted = self._trusted(request.meta.get("source_id"))
        if trusted.admit(origin, address):
            return
        if resolved:
            what = f"{origin.host} resolves to {address}, a {reason}"
        elif origin.host != str(address):
            what = f"{origin.host} is {address}, a {reason}"
        else:
            what = f"{address} is a {reason}"
        same_host = trusted.on_host(origin, address)
        if same_host:
            what += f", and the source is configured there only at {', '.join(same_host)}"
        self._refuse(request, RefusedAddress, what)

    def _vet_redirect(self, request) -> None:
        """A redirect must stay within its source's domains, whatever ``dont_filter`` says."""
        chain = request.meta.get("redirect_urls")
        source = self._sources().get(request.meta.get("source_id"))
        if not chain or source is None or source.allows(source.canonical(request.url)):
            return
        self.stats.inc_value(f"pressarchive/{source.id}/offsite_redirects")
        logger.warning("source '%s': %s redirects off-site to %s (not in its allowed_domains); not fetched",
                       source.id, chain[0], request.url)
        raise OffsiteRedirect(f"redirect off-site to {request.url}")

    def _refuse(self, request, kind, reason: str):
        source_id = request.meta.get("source_id")
        self.stats.inc_value("ssrf/refused")
        if source_id:
            # Counted as an error too, so the run shows as partial and someone looks at the source.
            self.stats.inc_value(f"pressarchive/{source_id}/refused")
            self.stats.inc_value(f"pressarchive/{source_id}/errors")
        redirected = request.meta.get("redirect_urls")
        via = f" (redirected from {redirected[0]})" if redirected else ""
        logger.warning("source '%s': refused %s%s: %s; not fetched", source_id or "?", request.url, via, reason)
        raise kind(f"refused: {reason}")
