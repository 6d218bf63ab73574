"""Every crawl default in one place (Scrapy settings for ``crawler``).

Politeness first: robots.txt obeyed (Scrapy's own default is False), one
request at a time per host with a delay, AutoThrottle on top, an identifying
User-Agent with a contact URL, retries on 5xx/429. Per-source delays from
sources.toml become ``DOWNLOAD_SLOTS`` entries at spider start.

Project settings read by pressarchive's components:
``ARCHIVE_DB`` (path of the SQLite archive), ``ARCHIVE_BATCH_SIZE`` (releases
written per transaction), ``PRESSARCHIVE_CONTACT`` (URL or mailto put in the
User-Agent), ``PRESSARCHIVE_SOURCES`` (registry file; empty = bundled), and
the incremental settings ``PRESSARCHIVE_BACKFILL``, ``PRESSARCHIVE_RECHECK_HOURS``,
``PRESSARCHIVE_MAX_RECHECKS``, and the PDF attachment settings ``PRESSARCHIVE_FOLLOW_PDFS``,
``PRESSARCHIVE_MAX_ATTACHMENTS``, ``PRESSARCHIVE_MAX_ATTACHMENTS_PER_RUN``.

Per-run and distributed settings (``PRESSARCHIVE_RUN_ID``, ``PRESSARCHIVE_CHECK``,
``REDIS_URL``, ``PRESSARCHIVE_DISTRIBUTED``, ...) are declared at the end with their defaults;
the CLI sets them. ``PRESSARCHIVE_LOG_MAX_BYTES`` and ``PRESSARCHIVE_LOG_BACKUPS`` rotate the crawl's
log file (crawler/progress.py). Every default is here once: components fall back to this module's values
(``from crawler import settings as defaults``) when they run under other settings.

Reaching only what may be reached (crawler/middlewares/ssrf.py, ``SSRF_PROTECTION``): http(s) only,
redirects within a source's domains, non-public addresses only at the origins (scheme,
host, port) a source's own URLs name.
"""

import os

from scrapy.settings import default_settings as _scrapy

from archive.history import RECHECK_HOURS
from crawler import __version__

BOT_NAME = "pressarchive"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"

PRESSARCHIVE_CONTACT = os.environ.get("PRESSARCHIVE_CONTACT", "https://github.com/pressarchive/pressarchive")
USER_AGENT = f"pressarchive/{__version__} (+{PRESSARCHIVE_CONTACT}; archive of official statements)"

ROBOTSTXT_OBEY = True
DOWNLOAD_DELAY = 2.0
DOWNLOAD_DELAY_JITTER = 0.25
CONCURRENT_REQUESTS = 8
CONCURRENT_REQUESTS_PER_DOMAIN = 1
# Scrapy starts this many asyncio tasks for the output of every response; a release page yields
# one item, so its default of 100 cost more reactor time than fetching the page (benchmarks/crawl.py).
CONCURRENT_ITEMS = 4
# Scrapy parses a callback's source (ast) to warn about generators that return a value; its cache
# holds bound methods weakly, so it misses every time: 5% of the reactor's time per page.
WARN_ON_GENERATOR_RETURN_VALUE = False
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 2.0
AUTOTHROTTLE_MAX_DELAY = 60.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 1.0
EXTENSIONS = {
    "scrapy.extensions.throttle.AutoThrottle": None,
    "crawler.middlewares.throttle.SourceAwareAutoThrottle": 0,
    "scrapy.extensions.telnet.TelnetConsole": None,
}
# Scrapy 2.19's RemoteControl runs Python code sent to it over HTTP (on localhost, with a token in a
# job file): nothing a crawl of untrusted sites should carry. Off twice over: left out of Scrapy's
# list, and disabled. (Left out rather than set to None in EXTENSIONS: Scrapy imports the module of
# every key set there, and this one imports aiohttp, ~0.2 CPU-s of every crawl's start.)
EXTENSIONS_BASE = {name: order for name, order in _scrapy.EXTENSIONS_BASE.items()
                   if name != "scrapy.extensions.remote_control.RemoteControl"}
REMOTE_CONTROL_ENABLED = False

RETRY_ENABLED = True
RETRY_TIMES = 2
RETRY_HTTP_CODES = [500, 502, 503, 504, 522, 524, 408, 429]
# A 429/503 with Retry-After is retried no sooner than asked, and its host is held meanwhile
# (crawler/middlewares/retry.py); a longer demand than this many seconds gives up on that URL for the run.
RETRY_AFTER_MAX = 300
DOWNLOAD_TIMEOUT = 30
URLLENGTH_LIMIT = 2048  # crawler/sources.py MAX_URL_CHARS: a longer URL is neither a release nor a listing
DOWNLOAD_MAXSIZE = 64 * 1024 * 1024
DOWNLOAD_WARNSIZE = 16 * 1024 * 1024
HTTPERROR_ALLOW_ALL = False
REDIRECT_MAX_TIMES = 5
COOKIES_ENABLED = False

# Raw capture: every response (robots.txt, feeds, sitemaps, listings, releases) into WARC 1.1 files.
# 950: after the downloader, before HttpCompressionMiddleware (590) decodes the body.
DOWNLOADER_MIDDLEWARES = {
    # Refuses non-http(s) URLs, off-site redirects and loopback/private/link-local targets (but the
    # origins a source's own URLs name), before offsite (50) and robots.txt (100): no connection is made.
    "crawler.middlewares.ssrf.SSRFProtectionMiddleware": 40,
    # robots.txt answering 5xx/429 = the whole site disallowed for the run (RFC 9309), crawler/middlewares/robots.py.
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
    "crawler.middlewares.robots.StrictRobotsTxtMiddleware": 100,
    # Retries that honour Retry-After on 429/503 (crawler/middlewares/retry.py).
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "crawler.middlewares.retry.RetryAfterMiddleware": 550,
    "crawler.middlewares.warc.WarcCaptureMiddleware": 950,
}
SSRF_PROTECTION = True
# Only http(s) is ever fetched (crawler/middlewares/ssrf.py refuses other schemes too): no FTP handler to wait
# forever on a server that does not speak FTP, no s3://, file:// or data: reads.
DOWNLOAD_HANDLERS = {"ftp": None, "s3": None, "file": None, "data": None}
WARC_ENABLED = True
WARC_DIR = ""  # default: a warc/ folder next to ARCHIVE_DB
WARC_MAX_SIZE = 1_000_000_000

ITEM_PIPELINES = {
    "pipelines.clean.CleanPipeline": 300,
    "pipelines.store.StorePipeline": 800,
}

CLEAN_WORKERS = None  # cleaning processes (pipelines/clean.py); None = one per CPU, 0 = in the crawl process
CLEAN_TIMEOUT = 120  # seconds one page may take to clean; then its worker is stopped and the page is an error
RELEASE_MAXSIZE = 10 * 1024 * 1024  # a release page is never 50 MB of HTML; sitemaps keep DOWNLOAD_MAXSIZE

ARCHIVE_DB = "archive.db"
ARCHIVE_BATCH_SIZE = 25
ARCHIVE_MAX_BYTES = 0  # > 0: the archive file never grows past it; writes then fail as on a full disk
PRESSARCHIVE_SOURCES = ""

# Incremental crawling and history (see crawler/spiders/releases.py, archive/history.py).
PRESSARCHIVE_BACKFILL = False  # True: walk every listing page, not only up to the first all-known page
PRESSARCHIVE_RECHECK_HOURS = list(RECHECK_HOURS)  # 1, 6, 24, 72, 168, 720 h after first_seen; then every 180 days
PRESSARCHIVE_MAX_RECHECKS = 1000  # known releases fetched again per source and run, oldest due first

# PDFs linked from HTML releases ("Full statement (PDF)") are fetched and attached, at most this many
# per release and per source and run (beyond: one warning line, counted as attachments_skipped).
PRESSARCHIVE_FOLLOW_PDFS = True
PRESSARCHIVE_MAX_ATTACHMENTS = 5
PRESSARCHIVE_MAX_ATTACHMENTS_PER_RUN = 200

# Set per run by the CLI, not by hand: the run's id (crawler/runner.py), and `sources check`'s
# mode (one sample release per source, nothing archived: crawler/cli/sources.py).
PRESSARCHIVE_RUN_ID = ""
PRESSARCHIVE_CHECK = False
# Per-host delays the spider derives from sources.toml at start ({host: seconds}): Scrapy's own
# DOWNLOAD_SLOTS setting gets the same delays, PRESSARCHIVE_HOST_DELAYS carries them to the
# distributed politeness middleware.
PRESSARCHIVE_HOST_DELAYS = {}

# A distributed worker (`crawl --redis URL`, crawler/middlewares/distributed.py redis_overrides
# sets these together): the Redis of the shared frontier, whether this worker seeds it, how long
# it waits on an empty queue before it ends, its id, and the name its WARC files start with.
REDIS_URL = ""
PRESSARCHIVE_DISTRIBUTED = False
PRESSARCHIVE_SEED = False
PRESSARCHIVE_IDLE_EXIT = 30.0
PRESSARCHIVE_WORKER_ID = ""
WARC_PREFIX = "pressarchive"

# Watches (crawler/cli/watch.py): delivery after every crawl and `watch run`. A webhook is tried this
# many times, waiting BACKOFF seconds before the second try and twice as long before each next one;
# one request or SMTP conversation may take TIMEOUT seconds, one channel of one watch BUDGET seconds
# a run in all (then its entries wait for the next run); at most MAX_ENTRIES entries go in one delivery.
# The environment variables of the same names override them (tests shorten the waits).


def _from_environment(name: str, default, kind=float):
    """The environment variable ``name`` as a number at least 0, or ``default`` when it is unset;
    a value that is not such a number is one warning line on stderr, and the default is used."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
        if not value >= 0 or value == float("inf"):
            raise ValueError
        return value
    except ValueError:
        import sys

        print(f"Warning: environment variable {name}={raw[:40]!r} is not a number of "
              f"{'times' if kind is int else 'seconds'} (0 or more); using {default}", file=sys.stderr)
        return default


PRESSARCHIVE_WEBHOOK_ATTEMPTS = _from_environment("PRESSARCHIVE_WEBHOOK_ATTEMPTS", 3, int)
PRESSARCHIVE_WEBHOOK_BACKOFF = _from_environment("PRESSARCHIVE_WEBHOOK_BACKOFF", 1.0)
PRESSARCHIVE_DELIVERY_TIMEOUT = _from_environment("PRESSARCHIVE_DELIVERY_TIMEOUT", 10.0)
PRESSARCHIVE_DELIVERY_BUDGET = _from_environment("PRESSARCHIVE_DELIVERY_BUDGET", 30.0)
PRESSARCHIVE_DELIVERY_MAX_ENTRIES = _from_environment("PRESSARCHIVE_DELIVERY_MAX_ENTRIES", 500, int)

LOG_LEVEL = "INFO"
# `pressarchive crawl` writes the full log to a file next to the archive (archive.db.log, or --log-file),
# rotated past this many bytes with this many older files kept (archive.db.log.1 ... .5): 60 MB at most.
PRESSARCHIVE_LOG_MAX_BYTES = 10 * 1024 * 1024
PRESSARCHIVE_LOG_BACKUPS = 5
# `pressarchive demo`: stable demo origin -> the base URL of this run's server for it (crawler/demo/proxy.py).
DEMO_ORIGINS: dict = {}
FEED_EXPORT_ENCODING = "utf-8"
