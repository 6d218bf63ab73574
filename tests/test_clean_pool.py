"""The cleaning pool: pages cleaned in worker processes; a dead worker does not stop the crawl."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import child_env
from scrapy.exceptions import DropItem
from scrapy.settings import Settings
from scrapy.signalmanager import SignalManager
from scrapy.statscollectors import MemoryStatsCollector

from archive.items import EntryFetch, ReleaseItem
from pipelines.clean import CleanPipeline

PAGE = ("<html lang='en'><head><title>Statement on trade - Ministry</title></head><body><main>"
        "<h1>Statement on trade</h1>" + "<p>The minister today welcomed the agreement on trade and "
        "investment between the two countries and thanked the negotiators for their work.</p>" * 4
        + "</main></body></html>").encode()


class Crawler:
    """What CleanPipeline uses of a Scrapy crawler: the project's settings (a crawl always has
    them), signals and stats."""

    def __init__(self, workers):
        self.settings = Settings()
        self.settings.setmodule("crawler.settings", priority="project")
        self.settings.set("CLEAN_WORKERS", workers)
        self.signals = SignalManager()
        self.stats = MemoryStatsCollector(self)
        self.spider = None


def item(body=PAGE, url="http://gov.example/news/a.html", content_type="text/html"):
    return ReleaseItem(source_id="s", url=url, fetched_url=url, http_status=200, content_type=content_type,
                       http_charset=None, fetched_at="2024-03-01T12:00:00Z", body=body)


@pytest.fixture(params=[2, 0], ids=["pool", "inline"])
def pipeline(request):
    pipe = CleanPipeline(Crawler(request.param))
    pipe.open_spider()
    yield pipe
    pipe.close_spider()
    assert pipe.pool is None


def test_cleans_and_passes_other_items_through(pipeline):
    cleaned = asyncio.run(pipeline.process_item(item()))
    assert cleaned.title == "Statement on trade" and "welcomed the agreement" in cleaned.text
    assert len(cleaned.content_hash) == 64 and cleaned.word_count > 20 and cleaned.extractor
    fetch = EntryFetch("s", "http://gov.example/feed", "feed", "2024-03-01T12:00:00Z", 200)
    assert asyncio.run(pipeline.process_item(fetch)) is fetch


def test_empty_and_binary_pages_are_dropped_and_counted(pipeline):
    for body in (b"", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8):
        with pytest.raises(DropItem):
            asyncio.run(pipeline.process_item(item(body)))
    assert pipeline.crawler.stats.get_value("pressarchive/s/empty") == 2


def test_the_pool_starts_with_the_first_page_to_clean():
    """A crawl that has nothing to clean (feeds and pages unchanged) starts no process."""
    pipe = CleanPipeline(Crawler(2))
    pipe.open_spider()
    try:
        fetch = EntryFetch("s", "http://gov.example/feed", "feed", "2024-03-01T12:00:00Z", 200)
        assert asyncio.run(pipe.process_item(fetch)) is fetch
        assert pipe.pool is None
        cleaned = asyncio.run(pipe.process_item(item()))
        assert "welcomed the agreement" in cleaned.text
        assert pipe.pool is not None and len(pipe.pool._processes) == 1, "one page, one worker started"
    finally:
        pipe.close_spider()
    assert pipe.pool is None


def test_workers_start_without_scrapy_and_clean_without_importing_anything():
    """A worker is forked from a forkserver that has imported what a page needs
    (WORKER_PRELOAD) and nothing of Scrapy or Twisted: a crawl's workers start in a
    fraction of a second, and cleaning a page imports nothing more."""
    pipe = CleanPipeline(Crawler(2))
    pipe.start_pool()
    try:
        loaded = "sorted(__import__('sys').modules)"
        before = set(pipe.pool.submit(eval, loaded).result(timeout=60))
        assert "pipelines.cleaning" in before and "pipelines.extraction" in before
        assert not {name.split(".")[0] for name in before} & {"scrapy", "twisted", "parsel"}
        cleaned = asyncio.run(pipe.process_item(item()))
        assert "welcomed the agreement" in cleaned.text
        after = set().union(*(pipe.pool.submit(eval, loaded).result(timeout=60) for _ in range(4)))
        assert not {name.split(".")[0] for name in after} & {"scrapy", "twisted"}
    finally:
        pipe.close_spider()


def test_a_dead_worker_restarts_the_pool_and_the_page_is_retried():
    pipe = CleanPipeline(Crawler(2))
    pipe.open_spider()

    async def clean_while_killing():
        first = asyncio.ensure_future(pipe.process_item(item()))
        await asyncio.sleep(0)  # submitted: the pool spawns its workers
        while not pipe.pool._processes:
            await asyncio.sleep(0.01)
        for pid in list(pipe.pool._processes):
            os.kill(pid, signal.SIGKILL)
        return await first

    try:
        cleaned = asyncio.run(clean_while_killing())
        assert "welcomed the agreement" in cleaned.text
        assert pipe.generation == 2  # the broken pool was replaced once
        again = asyncio.run(pipe.process_item(item(url="http://gov.example/news/b.html")))
        assert again.text
    finally:
        pipe.close_spider()


def test_a_page_that_takes_too_long_is_an_error_and_the_pool_goes_on():
    """Cleaning is superlinear in a page's linked paragraphs (link lists are cut at LINK_ITEMS_KEPT, but
    3,000 paragraphs of 10 links take ~24 s here, 500 ~1.3 s): past CLEAN_TIMEOUT the worker is
    stopped, the page is an error, and the next page is cleaned."""
    crawler = Crawler(2)
    crawler.settings.set("CLEAN_TIMEOUT", 1.5)
    pipe = CleanPipeline(crawler)
    pipe.open_spider()
    paragraphs = "".join(f"<p>Annex {i} lists these documents for the record: "
                         + " ".join(f'<a href="/doc/{i}-{k}.pdf">document {k}</a>' for k in range(10)) + "</p>"
                         for i in range(3000))
    slow = f"<html><body><main><h1>Annex</h1>{paragraphs}</main></body></html>".encode()

    async def warm():  # both workers started (a worker's start on a busy machine is not the page's time)
        return await asyncio.gather(*(pipe.process_item(item(url=f"http://gov.example/news/warm{i}.html"))
                                      for i in range(2)))

    async def both():
        stuck = asyncio.ensure_future(pipe.process_item(item(slow, url="http://gov.example/news/slow.html")))
        fine = asyncio.ensure_future(pipe.process_item(item(url="http://gov.example/news/fine.html")))
        return await asyncio.gather(stuck, fine, return_exceptions=True)

    try:
        assert all(warmed.text for warmed in asyncio.run(warm()))
        started = time.monotonic()
        stuck, fine = asyncio.run(both())
        assert isinstance(stuck, DropItem), stuck
        assert "welcomed the agreement" in fine.text, "the other worker's page is cleaned"
        assert time.monotonic() - started < 10
        assert crawler.stats.get_value("pressarchive/s/errors") == 1
        assert pipe.pool is None, "the stuck worker's pool was stopped"
        after = asyncio.run(pipe.process_item(item(url="http://gov.example/news/after.html")))
        assert after.text and pipe.generation == 2
    finally:
        pipe.close_spider()


def test_the_crawl_process_leaves_the_extractor_to_its_workers(tmp_path, fixture_sources):
    """A real crawl cleans its pages in the workers, and its own process never imports the
    extractor (trafilatura and the libraries behind it, PDF reading): that import is the
    forkserver's, once, not a second one per crawl."""
    probe = ("import atexit, sys\n"
             "heavy = {'trafilatura', 'justext', 'htmldate', 'courlan', 'pdfminer', 'pipelines.extraction',"
             " 'pipelines.pdf'}\n"
             "atexit.register(lambda: print('IMPORTED', sorted(heavy & set(sys.modules)), file=sys.stderr))\n"
             "from crawler.cli import main\n"
             "sys.argv[0] = 'pressarchive'\n"
             "main()\n")
    db = tmp_path / "archive.db"
    done = subprocess.run([sys.executable, "-c", probe, "crawl", "--sources", str(fixture_sources), "--db", str(db),
                           "fixture-feed"], cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                          timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    assert "IMPORTED []" in done.stderr.splitlines()
    texts = [row[0] for row in sqlite3.connect(db).execute("select text from releases")]
    assert len(texts) >= 3 and all(len(text) > 200 for text in texts)
