"""AutoThrottle that keeps each source's own delay as the floor.

Scrapy's AutoThrottle clamps every slot's delay to the global
``DOWNLOAD_DELAY``. Here a host listed in ``DOWNLOAD_SLOTS`` (the spider puts
each source's ``delay`` there) uses its own delay as the floor instead: a
source that asks for 5 s keeps 5 s however fast the server answers, and a
local demo site with ``delay = 0`` is not slowed to the global default.
"""

from __future__ import annotations

from scrapy.extensions.throttle import AutoThrottle
from scrapy.utils.httpobj import urlparse_cached


class SourceAwareAutoThrottle(AutoThrottle):
    def _adjust_delay(self, slot, latency, response):
        host = (urlparse_cached(response).hostname or "").lower()
        configured = self.crawler.settings.getdict("DOWNLOAD_SLOTS").get(host)
        floor = float(configured.get("delay", self.mindelay)) if configured else self.mindelay
        target = latency / self.target_concurrency
        new_delay = max(target, (slot.delay + target) / 2.0)
        new_delay = min(max(floor, new_delay), max(self.maxdelay, floor))
        # Like Scrapy: error responses may raise the delay but never lower it.
        if response.status != 200 and new_delay <= slot.delay:
            return
        slot.delay = new_delay
