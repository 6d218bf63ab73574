"""robots.txt that answers with a server error means "disallow everything" (RFC 9309).

Scrapy's ``RobotsTxtMiddleware`` parses whatever body robots.txt answered
with, so a 500 page (HTML, no rules) makes the whole site allowed: exactly
when the server is struggling, the crawler goes ahead. RFC 9309 §2.3.1.4: if
robots.txt is unreachable because of server errors, the crawler MUST assume
complete disallow. :class:`StrictRobotsTxtMiddleware` replaces Scrapy's (same
place in ``DOWNLOADER_MIDDLEWARES``, 100):

* robots.txt answering 5xx (after Scrapy's retries) or 429 Too Many Requests,
  or asking for a ``Retry-After`` wait longer than ``RETRY_AFTER_MAX``
  (crawler.middlewares.retry): nothing else on that host (scheme + host + port) is
  fetched in this run. One WARNING line per host, naming the robots.txt URL
  and the status; the next run asks again. Every request refused this way is
  counted for its source as ``refused`` and as an error (so the run is not a
  silent "ok") and the source's ``last_error`` says why;
* 4xx other than 429 (404, 410, 403, ...): no restrictions, as RFC 9309
  §2.3.1.3 allows (unchanged);
* 200 with an HTML page or other non-robots body: parsed as-is; a page holds
  no rules, so everything is allowed (unchanged);
* network errors (DNS, refused connection, timeout): unchanged, the pages'
  own requests go ahead and report their own errors.

Stats: ``robotstxt/unreachable`` (hosts), ``robotstxt/unreachable_refused``
(requests), ``pressarchive/<source>/refused``, ``pressarchive/<source>/errors``.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.robotstxt import RobotParser

from crawler.middlewares.retry import RetryAfterTooLong

logger = logging.getLogger(__name__)

#: Statuses of robots.txt that mean "unreachable": the site is treated as disallowed.
UNREACHABLE = frozenset({429}) | frozenset(range(500, 600))


class DisallowAll(RobotParser):
    """The parser for a host whose robots.txt could not be had: nothing is allowed."""

    def __init__(self, robots_url: str, why: str):
        self.robots_url = robots_url
        self.why = why

    @classmethod
    def from_crawler(cls, crawler, robotstxt_body):  # not built from a body
        raise NotImplementedError

    def allowed(self, url, user_agent) -> bool:
        return False

    def sitemaps(self):
        return iter(())


class RobotsUnreachable(IgnoreRequest):
    """A request not sent because its host's robots.txt answered with a server error."""


class StrictRobotsTxtMiddleware(RobotsTxtMiddleware):
    def _unreachable(self, netloc: str, url: str, why: str) -> None:
        site = f"{urlsplit(url).scheme}://{netloc}"
        parser = DisallowAll(site + "/robots.txt", why)
        pending = self._parsers.get(netloc)
        self._parsers[netloc] = parser
        self._stats.inc_value("robotstxt/unreachable")
        logger.warning("robots.txt of %s answered %s: treating the site as disallowed for this run (RFC 9309); "
                       "will try again next run", site, why)
        if hasattr(pending, "callback") and not pending.called:
            pending.callback(parser)

    async def _parse_robots(self, response, netloc, request):
        if response.status in UNREACHABLE:
            self._stats.inc_value("robotstxt/response_count")
            self._stats.inc_value(f"robotstxt/response_status_count/{response.status}")
            self._unreachable(netloc, response.url, f"HTTP {response.status}")
            return
        await super()._parse_robots(response, netloc, request)

    def _robots_error(self, exc, netloc):
        if isinstance(exc, RetryAfterTooLong) and exc.status in UNREACHABLE:
            self._unreachable(netloc, exc.response.url,
                              f"HTTP {exc.status} with Retry-After of {exc.wait:.0f} s")
            return
        super()._robots_error(exc, netloc)

    def process_request_2(self, rp, request):
        if not isinstance(rp, DisallowAll):
            return super().process_request_2(rp, request)
        self._stats.inc_value("robotstxt/unreachable_refused")
        source_id = request.meta.get("source_id")
        reason = f"robots.txt {rp.robots_url} answered {rp.why}, site treated as disallowed for this run"
        if source_id:
            stats = self._stats
            stats.inc_value(f"pressarchive/{source_id}/refused")
            stats.inc_value(f"pressarchive/{source_id}/errors")
            stats.set_value(f"pressarchive/{source_id}/last_error", reason)
        # "robots.txt" in the message: the spider logs it as a skipped request (one INFO line), not a failure.
        raise RobotsUnreachable(f"Forbidden by robots.txt: {reason}")
