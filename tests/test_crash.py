"""Crash safety: SIGKILL the crawl at random moments, then check the archive; readers during a crawl.

After each kill: ``PRAGMA integrity_check`` is ok, every release the log
reported as stored is present and intact (text, hash, version 1, search
index), and a final run completes the archive without duplicates. With
``ARCHIVE_BATCH_SIZE=1`` an item is committed before Scrapy logs it as
scraped, so "Scraped from" lines are the releases the log reported stored.

A plain sqlite3 reader and Datasette (in-process) query the archive while a
crawl writes it and must never see "database is locked".
``benchmarks/crash.py`` does the same with 20 kills and a 60-second load.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import start_child

from crawler.demo.server import SiteServer
from pipelines.extraction import content_hash

CRAWL = """
import json, sys
from crawler.runner import build_settings, run_crawl
from crawler.sources import load_sources
run_crawl(load_sources(sys.argv[1]), build_settings(sys.argv[2], overrides=json.loads(sys.argv[3])))
"""
SETTINGS = {"LOG_LEVEL": "DEBUG", "ARCHIVE_BATCH_SIZE": 1, "AUTOTHROTTLE_ENABLED": False,
            "EXTENSIONS": {"crawler.middlewares.throttle.SourceAwareAutoThrottle": None}}
SCRAPED = re.compile(r"Scraped from <200 (\S+/news/r\d+\.html)>")
WORDS = ["minister", "statement", "cooperation", "partners", "security", "trade", "rights", "agreement", "officials", "region"]


def build_site(root: Path, releases: int) -> None:
    (root / "news").mkdir(parents=True)
    (root / "robots.txt").write_text("User-agent: *\nAllow: /\n")
    locs = []
    for i in range(releases):
        paras = "".join(
            "<p>" + " ".join(WORDS[(i + j * 3 + k) % len(WORDS)] for k in range(50)) + f" ({i}.{j})</p>"
            for j in range(5))
        (root / "news" / f"r{i}.html").write_text(
            f'<html lang="en"><head><title>Statement {i} on cooperation</title>'
            f'<meta name="dcterms.issued" content="2020-01-{1 + i % 28:02d}"></head>'
            f"<body><main><h1>Statement {i} on cooperation</h1>{paras}</main></body></html>")
        locs.append(f"<url><loc>{{{{BASE}}}}/news/r{i}.html</loc></url>")
    (root / "sitemap.xml").write_text('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                                      + "".join(locs) + "</urlset>")


def start_crawl(work: Path, sources: Path, db: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return start_child([sys.executable, "-c", CRAWL, str(sources), str(db), json.dumps(SETTINGS)], work, env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def check_archive(db_path: Path, reported: set[str]) -> int:
    """Integrity, and every reported release present and intact; returns the number of releases."""
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
        if not conn.execute("select 1 from sqlite_master where name = 'releases'").fetchone():
            assert not reported, "releases were logged as stored but the archive has no releases table"
            return 0  # killed while the schema was being created; the next run completes it
        rows = {url: (rid, text, digest) for rid, url, text, digest in
                conn.execute("select id, url, text, content_hash from releases")}
        for url in reported:
            assert url in rows, f"{url} was logged as stored but is not in the archive"
            rid, text, digest = rows[url]
            assert text and digest == content_hash(text), url
            assert conn.execute("select count(*) from release_versions where release_id = ?", [rid]).fetchone()[0] == 1
        return len(rows)
    finally:
        conn.close()


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    build_site(root, 150)
    server = SiteServer(root).start()
    sources = tmp_path / "sources.toml"
    sources.write_text(f"""[[sources]]
id = "crashy"
name = "Crash test site"
country = "CA"
kind = "government"
languages = ["en"]
sitemaps = ["{server.base_url}/sitemap.xml"]
article_pattern = '/news/r'
delay = 0
""")
    yield tmp_path, sources, server
    server.stop()


def test_sigkill_at_random_moments_loses_nothing_reported(site):
    work, sources, server = site
    db = work / "archive.db"
    rng = random.Random(int(os.environ.get("CRASH_SEED", "9")))
    reported: set[str] = set()
    for kill in range(3):
        crawl = start_crawl(work, sources, db)
        time.sleep(rng.uniform(2.5, 5.0))
        crawl.send_signal(signal.SIGKILL)
        _, stderr = crawl.communicate(timeout=30)
        reported |= set(SCRAPED.findall(stderr))
        if db.exists():
            check_archive(db, reported)
    crawl = start_crawl(work, sources, db)
    _, stderr = crawl.communicate(timeout=300)
    assert crawl.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    assert check_archive(db, reported | set(SCRAPED.findall(stderr))) == 150
    conn = sqlite3.connect(db)
    assert conn.execute("select count(distinct url), count(*) from releases").fetchone() == (150, 150)
    assert conn.execute("select count(*) from release_versions").fetchone()[0] == 150
    assert conn.execute("select count(*) from releases_fts_rows").fetchone()[0] == 150
    conn.close()


def test_readers_never_see_a_locked_database(site):
    from archive.site.serve import make_datasette

    work, sources, server = site
    db = work / "archive.db"
    crawl = start_crawl(work, sources, db)
    errors: list[str] = []
    counts = {"sqlite": 0, "datasette": 0}
    stop = threading.Event()

    def plain_reader():
        while not stop.is_set():
            if not db.exists():
                time.sleep(0.05)
                continue
            try:
                conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
                conn.execute("select count(*), max(id) from releases").fetchone()
                conn.execute("select count(*) from releases_fts where releases_fts match 'minister'").fetchone()
                conn.close()
                counts["sqlite"] += 1
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    errors.append(f"sqlite3: {exc}")
            time.sleep(0.01)

    def datasette_reader():
        async def load():
            ds = None
            while not stop.is_set():
                if ds is None:
                    if not db.exists():
                        await asyncio.sleep(0.1)
                        continue
                    await asyncio.sleep(1)  # let the crawl create the schema
                    ds = make_datasette(db)
                for path in (f"/{db.stem}/releases.json?_size=5", f"/{db.stem}.json?sql=select+count(*)+from+releases"):
                    response = await ds.client.get(path)
                    if "database is locked" in response.text:
                        errors.append(f"datasette {path}: database is locked")
                    counts["datasette"] += 1
                await asyncio.sleep(0.02)

        asyncio.run(load())

    threads = [threading.Thread(target=plain_reader), threading.Thread(target=datasette_reader)]
    for thread in threads:
        thread.start()
    try:
        _, stderr = crawl.communicate(timeout=300)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert crawl.returncode == 0, stderr[-3000:]
    assert not errors, errors[:5]
    assert counts["sqlite"] > 20 and counts["datasette"] > 10, counts
