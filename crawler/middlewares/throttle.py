"""AutoThrottle that keeps each source's own delay as the floor.

Scrapy's AutoThrottle clamps every slot's delay to the global
``DOWNLOAD_DELAY``. Here a host listed in ``DOWNLOAD_SLOTS`` (the spider puts
each source's ``delay`` there) uses its own delay as the floor instead: a
source that asks for 5 s keeps 5 s however fast the server answers, and a
local demo site with ``delay = 0`` is not slowed to the global default.
A source configured with ``delay = 0`` (a mirror on your own network; no
catalogue source has it) gets no latency-based delay either, only one request
at a time: it asked for none, and a delay equal to the latency halved the
crawl of such a mirror (benchmarks/crawl.py). 429/503 with Retry-After still
hold the host (crawler/middlewares/retry.py).
"""

from __future__ import annotations

from scrapy.extensions.throttle import AutoThrottle
from scrapy.utils.httpobj import urlparse_cached

# The slot delay of a source configured with ``delay = 0``. Not 0: Scrapy's downloader enforces a
# slot's concurrency only between requests spaced by a delay; at 0 it sends every queued request
# of the host at once (and a Retry-After hold, crawler/middlewares/retry.py, would not hold them).
NO_DELAY = 0.001


class SourceAwareAutoThrottle(AutoThrottle):
    def _adjust_delay(self, slot, latency, response):
        host = (urlparse_cached(response).hostname or "").lower()
        configured = self.crawler.settings.getdict("DOWNLOAD_SLOTS").get(host)
        floor = float(configured.get("delay", self.mindelay)) if configured else self.mindelay
        if configured and floor <= NO_DELAY:
            slot.delay = NO_DELAY  # the source asked for no delay (a local mirror): one request at a time
            return
        target = latency / self.target_concurrency
        new_delay = max(target, (slot.delay + target) / 2.0)
        new_delay = min(max(floor, new_delay), max(self.maxdelay, floor))
        # Like Scrapy: error responses may raise the delay but never lower it.
        if response.status != 200 and new_delay <= slot.delay:
            return
        slot.delay = new_delay
