"""Run the ``releases`` spider in this process for a list of sources.

Used by ``pressarchive crawl`` and ``pressarchive demo``. Twisted's reactor
cannot be restarted, so this runs once per process.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils
from scrapy.crawler import CrawlerProcess
from scrapy.settings import Settings

from crawler import __version__
from crawler.spiders.releases import ReleasesSpider


def build_settings(db_path, contact=None, log_level="INFO", log_file=None, overrides=None) -> Settings:
    settings = Settings()
    settings.setmodule("crawler.settings", priority="project")
    settings.set("ARCHIVE_DB", str(db_path), priority="cmdline")
    if contact:
        settings.set("PRESSARCHIVE_CONTACT", contact, priority="cmdline")
        settings.set(
            "USER_AGENT", f"pressarchive/{__version__} (+{contact}; archive of official statements)", priority="cmdline"
        )
    settings.set("LOG_LEVEL", log_level, priority="cmdline")
    if log_file:
        settings.set("LOG_FILE", str(log_file), priority="cmdline")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    settings.set("PRESSARCHIVE_RUN_ID", f"{stamp}-{secrets.token_hex(3)}", priority="cmdline")
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and key in settings:
            value = {**settings.getdict(key), **value}  # add to component dicts, do not replace them
        settings.set(key, value, priority="cmdline")
    return settings


def run_crawl(sources, settings: Settings) -> list[dict]:
    """Crawl ``sources``; return this run's ``crawl_runs`` rows."""
    process = CrawlerProcess(settings)
    process.crawl(ReleasesSpider, sources=sources)
    process.start()
    db_path = Path(settings.get("ARCHIVE_DB"))
    if not db_path.exists():
        return []
    db = sqlite_utils.Database(db_path)
    rows = list(db.query(
        "select * from crawl_runs where run_id = ? order by id", [settings.get("PRESSARCHIVE_RUN_ID")]
    ))
    db.close()
    return rows
