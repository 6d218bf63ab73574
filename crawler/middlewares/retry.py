"""Retries that honour ``Retry-After`` (HTTP 429 and 503).

Scrapy's ``RetryMiddleware`` retries a 429 or 503 at once, whatever the
server asked for. :class:`RetryAfterMiddleware` replaces it (same place in
``DOWNLOADER_MIDDLEWARES``, 550) and, when a 429 or 503 carries a
``Retry-After`` header (delta-seconds or an HTTP-date, RFC 9110 §10.2.3):

* the retry is not sent before the server's time: the retry request carries
  ``retry_after_until`` (a wall-clock time, so it survives a shared Redis
  queue) and waits in ``process_request`` until then, without blocking the
  reactor;
* the whole host slows down, not just that request: its downloader slot is
  held (nothing queued for it is sent) until the time has passed, also when
  the request has no retries left. The hold is set from the
  ``response_downloaded`` signal, before the downloader sends the host's next
  queued request. The slot's ``lastseen`` moves forward too, so its usual
  delay counts from the end of the wait and the slot is not
  garbage-collected meanwhile;
* a demand longer than ``RETRY_AFTER_MAX`` seconds (default 300) is not
  waited for: the request fails with :class:`RetryAfterTooLong`, which the
  spider's errback logs as one error line naming the URL, the status and the
  requested wait, and counts as an error of the source.

A ``Retry-After`` that cannot be parsed, a 429/503 without one, and every
other retryable status or exception keep Scrapy's behaviour (retry at once,
``RETRY_TIMES`` times). The waits count as retries: a server that keeps
answering 429 is given up on after ``RETRY_TIMES`` retries like any other.

Settings: ``RETRY_AFTER_MAX`` (seconds, default 300); Scrapy's ``RETRY_*``.
Stats: ``retry_after/held`` (hosts held), ``retry_after/seconds`` (total
held), ``retry_after/retried``, ``retry_after/too_long``.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from datetime import timezone
from time import monotonic

from scrapy import signals
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.utils.asyncio import call_later, sleep

from crawler import settings as defaults  # every default is declared once, there

logger = logging.getLogger(__name__)

RETRY_AFTER_CODES = frozenset({429, 503})
UNTIL_META = "retry_after_until"
DELTA_SECONDS = re.compile(r"\d+(?:\.\d+)?")


class RetryAfterTooLong(IgnoreRequest):
    """The server asked to come back later than ``RETRY_AFTER_MAX``: given up on this URL for this run."""

    def __init__(self, response, wait: float, limit: float):
        self.response = response
        self.status = response.status
        self.wait = wait
        self.limit = limit
        super().__init__(
            f"HTTP {response.status} with Retry-After of {wait:.0f} s (more than RETRY_AFTER_MAX = {limit:.0f} s); "
            "gave up on it for this run"
        )


def retry_after_seconds(response, now: float | None = None) -> float | None:
    """Seconds the server asks to wait per its ``Retry-After`` header; None if absent or unreadable.

    An HTTP-date is measured against the response's own ``Date`` header when
    it has one (so a server whose clock is off still gets the wait it meant),
    else against ``now`` (default: this machine's clock). A date in the past
    means 0.
    """
    raw = response.headers.get(b"Retry-After")
    if not raw:
        return None
    value = raw.decode("latin-1").strip()
    if DELTA_SECONDS.fullmatch(value):
        return float(value)
    when = _http_date(value)
    if when is None:
        return None
    base = _http_date(response.headers.get(b"Date", b"").decode("latin-1"))
    if base is None:
        base = now if now is not None else time.time()
    return max(0.0, when - base)


def _http_date(value: str) -> float | None:
    """An HTTP-date as a POSIX timestamp (a date without a zone counts as UTC); None if unreadable."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


class RetryAfterMiddleware(RetryMiddleware):
    def __init__(self, settings):
        super().__init__(settings)
        self.max_wait = settings.getfloat("RETRY_AFTER_MAX", defaults.RETRY_AFTER_MAX)

    @classmethod
    def from_crawler(cls, crawler):
        middleware = super().from_crawler(crawler)
        # The host is held from the response_downloaded signal: it fires before the downloader
        # sends the next queued request for that host, process_response only after.
        crawler.signals.connect(middleware._response_downloaded, signal=signals.response_downloaded)
        return middleware

    def _wait_for(self, response) -> float | None:
        """The ``Retry-After`` wait of a 429/503 we retry, or None (no header, unreadable, or 0)."""
        if response.status not in RETRY_AFTER_CODES or response.status not in self.retry_http_codes:
            return None
        wait = retry_after_seconds(response)
        return wait if wait else None

    # -- the host waits: nothing is sent to it until the time has passed ------------

    def _response_downloaded(self, response, request, spider=None):
        wait = self._wait_for(response)
        if wait is not None and wait <= self.max_wait:
            self._hold_slot(request, wait)

    def _hold_slot(self, request, wait: float) -> None:
        """Send nothing to the request's host (its downloader slot) for ``wait`` seconds."""
        engine = getattr(self.crawler, "engine", None)
        downloader = getattr(engine, "downloader", None)
        slots = getattr(downloader, "slots", None)
        key = request.meta.get("download_slot")
        slot = slots.get(key) if slots is not None and key is not None else None
        if slot is None:
            return
        now = monotonic()
        # The slot's own delay then counts from the end of the wait; it also keeps the
        # slot from being garbage-collected (and its hold lost) while the host is held.
        slot.lastseen = max(slot.lastseen, now + wait - slot.delay)
        if slot.latercall is not None:
            slot.latercall.cancel()  # replaced by the longer hold; the queue is re-checked when it ends

        def release():
            slot.latercall = None
            downloader._process_queue(slot)

        slot.latercall = call_later(wait, release)
        self.crawler.stats.inc_value("retry_after/held")
        self.crawler.stats.inc_value("retry_after/seconds", wait)

    # -- the retry waits for its time (also when another worker takes it from a shared queue) --

    async def process_request(self, request):
        until = request.meta.get(UNTIL_META)
        if until:
            remaining = float(until) - time.time()
            if remaining > 0:
                await sleep(remaining)

    async def process_response(self, request, response):
        wait = None if request.meta.get("dont_retry", False) else self._wait_for(response)
        if wait is None:
            return super().process_response(request, response)
        if wait > self.max_wait:
            self.crawler.stats.inc_value("retry_after/too_long")
            # The spider's errback logs it (one line: URL, status, wait) and counts the error.
            raise RetryAfterTooLong(response, wait, self.max_wait)
        retry = self._retry(request, f"{response.status} with Retry-After")
        if retry is None:
            return response  # retries exhausted: HttpError, logged and counted by the spider like any 429/503
        retry.meta[UNTIL_META] = time.time() + wait
        self.crawler.stats.inc_value("retry_after/retried")
        logger.info("%s answered HTTP %d with Retry-After: %s; retrying it in %.0f s, and %s is held until then",
                    request.url, response.status, response.headers.get(b"Retry-After", b"").decode("latin-1"),
                    wait, request.meta.get("download_slot") or "its host")
        return retry
