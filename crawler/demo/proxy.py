"""Send the demo's requests for its stable addresses to wherever its sites listen this run.

The demo sites have one address each (``http://127.0.0.1:28461`` and the next
port, :func:`crawler.demo.server.demo_bases`), so a second ``pressarchive demo``
finds the very URLs the first one stored and adds nothing. Each run still
serves them on any free port: two demos at once, parallel tests, or the stable
ports held by a running ``pressarchive demo --serve`` must not collide. This
downloader middleware routes every request for a stable origin through that
run's server as an HTTP proxy (``request.meta["proxy"]``, which Scrapy's
``HttpProxyMiddleware`` at 750 honours; the server answers only for its own
origin). Requests keep their URLs: the archive's ``url``, ``canonical_url``,
``fetched_url`` and WARC records all name the stable address, which answers
whenever the demo sites are served there (``pressarchive demo --serve``).

It also keeps the demo off any proxy set in the environment (``http_proxy``):
an explicit ``meta["proxy"]`` wins over it.

Setting: ``DEMO_ORIGINS``, ``{stable origin: base URL of the server that serves it}``
(empty outside the demo: the middleware then changes nothing).
"""

from __future__ import annotations

from urllib.parse import urlsplit

# Before HttpProxyMiddleware (750), which reads meta["proxy"].
PRIORITY = 700


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class DemoOriginsMiddleware:
    """Route requests for the demo's stable origins through this run's demo servers."""

    def __init__(self, origins: dict[str, str]):
        self.origins = {origin(stable): server for stable, server in origins.items()}

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler.settings.getdict("DEMO_ORIGINS"))

    def process_request(self, request, spider=None):
        server = self.origins.get(origin(request.url))
        if server is not None:
            request.meta["proxy"] = server


def crawl_overrides(origins: dict[str, str]) -> dict:
    """Settings that route ``origins`` (stable origin -> server base URL) for a crawl."""
    return {
        "DEMO_ORIGINS": dict(origins),
        "DOWNLOADER_MIDDLEWARES": {f"{__name__}.DemoOriginsMiddleware": PRIORITY},
    }
