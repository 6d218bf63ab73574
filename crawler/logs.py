"""Keep the crawl log to one line per problem.

Scrapy logs a failed robots.txt download with a full traceback, and the retry
middleware logs "Gave up retrying" before our errback logs the same failure
with the source's name. These filters turn the first into one line and leave
the second to the spider (which names source, URL and reason).
"""

from __future__ import annotations

import logging


class OneLineRobotsErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            exc = record.exc_info[1]
            record.exc_info = None
            record.exc_text = None
            request = (record.args or {}).get("request") if isinstance(record.args, dict) else None
            url = getattr(request, "url", "")
            record.msg = "robots.txt for %s could not be fetched (%s); the page request goes ahead and will report its own error"
            record.args = (url.split("/", 3)[2] if "://" in url else url, exc)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class QuietGaveUpRetrying(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Gave up retrying"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def install_filters() -> None:
    """Idempotent: attach the filters to Scrapy's loggers."""
    for name, flt in (
        ("scrapy.downloadermiddlewares.robotstxt", OneLineRobotsErrors),
        ("scrapy.downloadermiddlewares.retry", QuietGaveUpRetrying),
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(f, flt) for f in logger.filters):
            logger.addFilter(flt())
