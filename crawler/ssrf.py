"""Refuse requests to non-public addresses (server-side request forgery).

A page or a redirect must not steer the crawler to loopback, private,
link-local (cloud metadata at 169.254.169.254), unspecified, multicast or
other reserved addresses: admin panels and metadata endpoints on or near the
crawling host. Like trafilatura 2.3's downloads (``_vet_peer``), an address
is refused unless ``ipaddress`` calls it global (IPv4-mapped IPv6 is checked
as IPv4); multicast is refused as well.

The exception: hosts named in a source's own configured URLs (feeds,
sitemaps, listings, homepage). A source deliberately configured on
127.0.0.1 (the demo, the tests, an intranet mirror) may fetch from that host;
a link or redirect from it to 10.0.0.1 is still refused.

This downloader middleware runs before the offsite and robots.txt
middlewares, so a refused request makes no connection at all, not even for
robots.txt. Redirects come back through the middlewares as new requests and
are vetted too. Host names are resolved through the reactor's resolver,
which is Scrapy's caching resolver: the address vetted here is the address
the download then connects to (while it stays in Scrapy's DNS cache). A name
that does not resolve is left to the download, which reports the DNS error.

One log line per refusal (source, URL, reason); stats
``pressarchive/<source>/refused`` and ``ssrf/refused``.

Settings: ``SSRF_PROTECTION`` (default True).
"""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import urlsplit

from scrapy import signals
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached

logger = logging.getLogger(__name__)


class RefusedAddress(IgnoreRequest):
    """A request refused because its host is or resolves to a non-public address."""


def ip_of(host: str):
    """The address if ``host`` is an IP literal (IPv4-mapped IPv6 as IPv4), else None."""
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    return getattr(ip, "ipv4_mapped", None) or ip


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


def configured_hosts(source) -> set[str]:
    urls = list(getattr(source, "endpoint_urls", None) or [*source.feeds, *source.sitemaps, *source.listings])
    if getattr(source, "homepage", None):
        urls.append(source.homepage)
    return {(urlsplit(u).hostname or "").lower() for u in urls} - {""}


class SSRFProtectionMiddleware:
    def __init__(self, crawler):
        self.crawler = crawler
        self.stats = crawler.stats
        self._hosts: dict = {}
        # Redirects are filtered (offsite, duplicates) when scheduled, before any
        # downloader middleware: vet address literals there too, so a redirect to
        # 169.254.169.254 is refused with a log line rather than dropped unseen.
        crawler.signals.connect(self.request_scheduled, signal=signals.request_scheduled)

    @classmethod
    def from_crawler(cls, crawler):
        if not crawler.settings.getbool("SSRF_PROTECTION", True):
            raise NotConfigured
        return cls(crawler)

    def _trusted(self, source_id) -> set[str]:
        """Hosts this request may reach whatever their address: its source's configured hosts."""
        if source_id not in self._hosts:
            sources = getattr(self.crawler.spider, "sources", {}) or {}
            if source_id in sources:
                self._hosts[source_id] = configured_hosts(sources[source_id])
            else:  # robots.txt and other requests without a source: any source's configured host
                self._hosts[source_id] = set().union(set(), *(configured_hosts(s) for s in sources.values()))
        return self._hosts[source_id]

    async def _resolve(self, host: str):
        from twisted.internet import reactor

        try:
            address = await maybe_deferred_to_future(reactor.resolve(host))
        except Exception:
            return None  # the download reports the DNS failure itself
        return ip_of(address)

    def request_scheduled(self, request, spider=None):
        host = (urlparse_cached(request).hostname or "").lower()
        ip = ip_of(host) if host else None
        if ip is not None and host not in self._trusted(request.meta.get("source_id")):
            reason = non_public_reason(ip)
            if reason:
                self._refuse(request, f"{ip} is a {reason}")

    async def process_request(self, request, spider=None):
        host = (urlparse_cached(request).hostname or "").lower()
        if not host:
            return None
        source_id = request.meta.get("source_id")
        trusted = self._trusted(source_id)
        if host in trusted:
            return None
        ip = ip_of(host)
        resolved = ip is None
        if resolved:
            ip = await self._resolve(host)
            if ip is None:
                return None
            if str(ip) in trusted:
                return None  # a name for the very address the source is configured on
        reason = non_public_reason(ip)
        if reason is None:
            return None
        if resolved:
            self._refuse(request, f"{host} resolves to {ip}, a {reason}")
        self._refuse(request, f"{ip} is a {reason}")

    def _refuse(self, request, reason: str):
        source_id = request.meta.get("source_id")
        self.stats.inc_value("ssrf/refused")
        if source_id:
            # Counted as an error too, so the run shows as partial and someone looks at the source.
            self.stats.inc_value(f"pressarchive/{source_id}/refused")
            self.stats.inc_value(f"pressarchive/{source_id}/errors")
        redirected = request.meta.get("redirect_urls")
        via = f" (redirected from {redirected[0]})" if redirected else ""
        logger.warning("source '%s': refused %s%s: %s; not fetched", source_id or "?", request.url, via, reason)
        raise RefusedAddress(f"refused non-public address: {reason}")
