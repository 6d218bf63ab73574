"""WARC capture: the writer (rotation, digests, `warcio check`, interrupted runs), reading back,
and the downloader middleware in real crawls against local servers."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import child_env, run_child, start_child
from scrapy.exceptions import NotConfigured
from scrapy.http import HtmlResponse, Request
from scrapy.utils.test import get_crawler
from warcio.archiveiterator import ArchiveIterator

from archive.warc import WarcLocation, WarcWriter, iter_records, read_record
from crawler.middlewares.warc import WarcCaptureMiddleware
from pipelines.pdf import analyse_pdf

REPO = Path(__file__).resolve().parents[1]
PDFS = Path(__file__).parent / "pdfs"
WARCIO = Path(sys.executable).with_name("warcio")
NAME_RE = re.compile(r"^pressarchive-\d{8}T\d{6}Z-\d{5}\.warc\.gz$")
MIDDLEWARE = json.dumps({"crawler.middlewares.warc.WarcCaptureMiddleware": 950})


def warcio_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(WARCIO), "check", "-v", str(path)], capture_output=True, text=True, timeout=60)


def sha1_digest(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def all_records(folder: Path) -> list[tuple[str, dict, bytes]]:
    """(file name, WARC headers, record block: HTTP head and raw payload) of every record, in file order."""
    found = []
    for path in sorted(folder.glob("*.warc.gz")):
        with open(path, "rb") as stream:
            for record in ArchiveIterator(stream, no_record_parse=True):
                found.append((path.name, dict(record.rec_headers.headers), record.raw_stream.read()))
    return found


def exchange(writer: WarcWriter, n: int, body: bytes, **kwargs) -> WarcLocation:
    headers = kwargs.pop("headers", [("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
    return writer.write_exchange(
        f"https://www.example.gov/news/{n}?lang=en", [("User-Agent", "pressarchive/test")], "GET",
        kwargs.pop("status", 200), None, headers, body, **kwargs,
    )


# --- writer --------------------------------------------------------------------------------------


def test_writer_rotates_and_every_file_passes_warcio_check(tmp_path):
    bodies = [os.urandom(700) + f"<p>release {n}</p>".encode() for n in range(12)]
    with WarcWriter(tmp_path, max_size=3_000) as writer:
        locations = [exchange(writer, n, body) for n, body in enumerate(bodies)]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) >= 3 and files == writer.files, "rotated into several files, names sort in order"
    assert all(NAME_RE.match(name) for name in files)
    assert writer.bytes_written == sum((tmp_path / name).stat().st_size for name in files)
    for name in files[:-1]:  # a file is only left once it has passed max_size
        assert (tmp_path / name).stat().st_size >= 3_000
    for name in files:
        result = warcio_check(tmp_path / name)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "digest pass" in result.stdout and "fail" not in result.stdout.lower()
    for location, body in zip(locations, bodies):
        status, headers, payload = read_record(tmp_path, location.file, location.offset)
        assert (status, payload) == (200, body)
        assert ("Content-Type", "text/html") in headers


def test_records_carry_the_warc_headers(tmp_path):
    body = b"<html><body>Statement by the Spokesperson</body></html>"
    with WarcWriter(tmp_path) as writer:
        location = exchange(writer, 1, body)
    records = all_records(tmp_path)
    assert [r[1]["WARC-Type"] for r in records] == ["warcinfo", "response", "request"]
    _, info, info_payload = records[0]
    assert info["WARC-Filename"] == location.file
    assert b"software: pressarchive/" in info_payload and b"robots: obey" in info_payload
    assert b"format: WARC File Format 1.1" in info_payload
    _, response, response_payload = records[1]
    _, request, request_payload = records[2]
    assert response["WARC-Target-URI"] == request["WARC-Target-URI"] == "https://www.example.gov/news/1?lang=en"
    assert response["WARC-Payload-Digest"] == sha1_digest(body)
    assert request["WARC-Concurrent-To"] == response["WARC-Record-ID"]
    assert response["WARC-Warcinfo-ID"] == info["WARC-Record-ID"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", response["WARC-Date"])
    assert response_payload.startswith(b"HTTP/1.1 200 OK\r\n") and response_payload.endswith(body)
    assert request_payload.startswith(b"GET /news/1?lang=en HTTP/1.1\r\nHost: www.example.gov\r\n")
    with open(tmp_path / location.file, "rb") as stream:
        iterator = ArchiveIterator(stream)
        spans = []
        for record in iterator:
            iterator.read_to_end(record)
            spans.append((record.rec_type, iterator.get_record_offset(), iterator.get_record_length()))
    assert ("response", location.offset, location.length) in spans


def test_read_back_undoes_content_encoding_and_chunking(tmp_path):
    page = "<html><body>外交部发言人答记者问</body></html>".encode() * 20
    with WarcWriter(tmp_path) as writer:
        compressed = exchange(writer, 1, gzip.compress(page), headers=[
            ("Content-Type", "text/html; charset=utf-8"), ("Content-Encoding", "gzip"),
            ("Transfer-Encoding", "chunked")])
        not_modified = exchange(writer, 2, b"", status=304, headers=[("ETag", '"abc"')])
    status, headers, body = read_record(tmp_path, compressed.file, compressed.offset)
    assert status == 200 and body == page
    # Scrapy hands over a de-chunked body: the header is kept under another name so readers do not de-chunk.
    assert ("X-Archive-Orig-Transfer-Encoding", "chunked") in headers
    assert not any(name.lower() == "transfer-encoding" for name, _ in headers)
    assert read_record(tmp_path, not_modified.file, not_modified.offset) == (304, [("ETag", '"abc"')], b"")
    stored = list(iter_records(tmp_path / compressed.file))
    assert [s.location for s in stored] == [compressed, not_modified]
    assert stored[0].body == page and stored[0].url.endswith("/news/1?lang=en")
    assert warcio_check(tmp_path / compressed.file).returncode == 0


def test_read_record_refuses_other_records_and_paths(tmp_path):
    with WarcWriter(tmp_path) as writer:
        location = exchange(writer, 1, b"x")
    with pytest.raises(ValueError, match="warcinfo"):
        read_record(tmp_path, location.file, 0)
    with pytest.raises(ValueError, match="outside"):
        read_record(tmp_path, "../" + location.file, location.offset)


def test_a_new_writer_never_appends_to_an_old_file(tmp_path):
    with WarcWriter(tmp_path) as first:
        exchange(first, 1, b"one")
    with WarcWriter(tmp_path) as second:
        exchange(second, 2, b"two")
    assert len(set(first.files + second.files)) == 2
    assert all(warcio_check(p).returncode == 0 for p in tmp_path.iterdir())


WRITER_SCRIPT = """
import sys, time
sys.path.insert(0, {repo!r})
from archive.warc import WarcWriter
writer = WarcWriter({folder!r}, max_size=20_000)
n = 0
while True:
    body = (b"<p>release %d</p>" % n) * 500
    writer.write_exchange("https://www.example.gov/r/%d" % n, [], "GET", 200, None,
                          [("Content-Type", "text/html")], body)
    n += 1
    print(n, flush=True)
"""


def test_a_killed_writer_leaves_readable_files(tmp_path):
    folder = tmp_path / "warc"
    script = WRITER_SCRIPT.format(repo=str(REPO), folder=str(folder))
    process = start_child([sys.executable, "-c", script], tmp_path, dict(os.environ), stdout=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:
            if int(line) >= 150:  # well into its second file, mid-run
                break
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=10)
    files = sorted(folder.glob("*.warc.gz"))
    assert len(files) >= 2
    count = 0
    for path in files:
        result = warcio_check(path)
        assert result.returncode == 0, result.stdout + result.stderr
        for stored in iter_records(path):
            assert stored.url == f"https://www.example.gov/r/{count}"
            assert stored.body == (b"<p>release %d</p>" % count) * 500
            count += 1
    assert count >= 150


# --- middleware, unit ----------------------------------------------------------------------------


def test_middleware_is_off_when_disabled(tmp_path):
    crawler = get_crawler(settings_dict={"WARC_ENABLED": False, "ARCHIVE_DB": str(tmp_path / "a.db")})
    with pytest.raises(NotConfigured):
        WarcCaptureMiddleware.from_crawler(crawler)


def test_middleware_writes_next_to_the_archive_and_sets_meta(tmp_path):
    crawler = get_crawler(settings_dict={"ARCHIVE_DB": str(tmp_path / "archive.db")})
    crawler.spider = None
    middleware = WarcCaptureMiddleware.from_crawler(crawler)
    request = Request("https://www.example.gov/news/1", meta={"source_id": "gov"})
    body = b"<html><body><p>Release</p></body></html>"
    response = HtmlResponse(request.url, status=200, headers={"Content-Type": "text/html"}, body=body,
                            request=request, protocol="HTTP/1.1")
    assert middleware.process_response(request, response) is response
    middleware.spider_closed()
    location = request.meta["warc"]
    assert set(location) == {"file", "offset", "length"}
    assert (tmp_path / "warc" / location["file"]).is_file()
    assert read_record(tmp_path / "warc", location["file"], location["offset"])[2] == body
    stats = crawler.stats
    assert stats.get_value("warc/records") == 1
    assert stats.get_value("warc/bytes_written") == (tmp_path / "warc" / location["file"]).stat().st_size
    assert stats.get_value("pressarchive/gov/warc_bytes") > location["length"]
    cached = HtmlResponse(request.url, body=body, request=request, flags=["cached"])
    middleware.process_response(Request(request.url), cached)
    assert stats.get_value("warc/records") == 1, "responses from the HTTP cache were not fetched now"


# --- middleware, real crawls ---------------------------------------------------------------------


def scrapy_run(args, cwd=REPO, timeout=180):
    return run_child([sys.executable, "-m", "scrapy", *args], cwd, child_env(), timeout)


def test_crawl_captures_every_response_as_served(tmp_path, fixture_sources, fixture_servers):
    warc_dir = tmp_path / "warc"
    result = scrapy_run([
        "crawl", "releases", "-a", f"sources_file={fixture_sources}",
        "-s", f"ARCHIVE_DB={tmp_path / 'archive.db'}", "-s", f"WARC_DIR={warc_dir}",
        "-s", f"DOWNLOADER_MIDDLEWARES={MIDDLEWARE}", "-s", "WARC_MAX_SIZE=40000",
        # Capture is what is tested here, not cleaning and storage.
        "-s", "ITEM_PIPELINES={}", "-s", "LOG_LEVEL=INFO",
    ])
    assert result.returncode == 0, result.stderr[-3000:]
    files = sorted(warc_dir.glob("*.warc.gz"))
    assert len(files) >= 2, "WARC_MAX_SIZE rotates files"
    for path in files:
        check = warcio_check(path)
        assert check.returncode == 0, check.stdout
    responses = [(headers, payload) for _, headers, payload in all_records(warc_dir)
                 if headers["WARC-Type"] == "response"]
    captured: dict[str, list[bytes]] = {}
    for headers, payload in responses:
        captured.setdefault(headers["WARC-Target-URI"], []).append(payload.split(b"\r\n\r\n", 1)[1])
    fetched = []
    for server in fixture_servers.values():
        for record in server.requests:
            url = server.url(record.path)
            fetched.append(url)
            served = server.answer("GET", record.path, {}).body
            assert captured.get(url) and all(body == served for body in captured[url]), url
    assert sorted(fetched) == sorted(u for u, bodies in captured.items() for _ in bodies), \
        "one response record per request the servers answered"
    paths = {url.split("/", 3)[3] for url in captured}
    assert "robots.txt" in paths
    assert {"en/news.rss", "en/news.atom", "sitemap_index.xml", "government/latest"} <= paths
    assert any(p.startswith("en/news/statements/") for p in paths)
    assert any(p.startswith("chn/zlgxw/201706/") for p in paths)
    assert f"'warc/records': {len(responses)}" in result.stderr


SPIDER = '''
import scrapy

class CaptureSpider(scrapy.Spider):
    name = "capture"
    start_urls = [{start!r}]

    def parse(self, response):
        yield {{"url": response.url, "warc": response.meta.get("warc"), "length": len(response.body),
               "starts": response.body[:15].decode("latin-1")}}
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, self.parse)
'''


def test_spider_callbacks_see_where_the_raw_response_was_stored(tmp_path, site_server):
    site = tmp_path / "site"
    site.mkdir()
    page = b"<html><body><h1>Statement</h1><p>Full text.</p></body></html>"
    (site / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n")
    (site / "index.html").write_text('<html><body><a href="/statement.html">Statement</a>'
                                     '<a href="/statement.pdf">Full statement (PDF)</a></body></html>')
    (site / "statement.html.gz").write_bytes(gzip.compress(page, mtime=0))
    shutil.copy(PDFS / "en_press_release.pdf", site / "statement.pdf")
    (site / "_routes.json").write_text(json.dumps({"/statement.html": {
        "body_file": "statement.html.gz", "content_type": "text/html; charset=utf-8",
        "headers": {"Content-Encoding": "gzip"}}}))
    server = site_server(site)
    spider = tmp_path / "capture_spider.py"
    spider.write_text(SPIDER.format(start=server.url("/")))
    warc_dir = tmp_path / "warc"
    result = scrapy_run([
        "runspider", str(spider), "-O", str(tmp_path / "items.json"), "-s", f"WARC_DIR={warc_dir}",
        "-s", f"DOWNLOADER_MIDDLEWARES={MIDDLEWARE}", "-s", "ITEM_PIPELINES={}", "-s", "DOWNLOAD_DELAY=0",
    ])
    assert result.returncode == 0, result.stderr[-3000:]
    items = {item["url"]: item for item in json.loads((tmp_path / "items.json").read_text())}
    assert set(items) == {server.url("/"), server.url("/statement.html"), server.url("/statement.pdf")}
    html = items[server.url("/statement.html")]
    assert html["starts"] == "<html><body><h1", "the spider gets the decompressed page"
    status, headers, body = read_record(warc_dir, **{k: html["warc"][k] for k in ("file", "offset")})
    assert status == 200 and body == page and ("Content-Encoding", "gzip") in headers
    raw = [payload for _, h, payload in all_records(warc_dir)
           if h["WARC-Type"] == "response" and h["WARC-Target-URI"] == server.url("/statement.html")]
    assert raw == [b"".join(raw[0].partition(b"\r\n\r\n")[:2]) + gzip.compress(page, mtime=0)], \
        "the WARC holds the body as sent, still gzip-compressed"
    pdf = items[server.url("/statement.pdf")]["warc"]
    _, _, pdf_body = read_record(warc_dir, pdf["file"], pdf["offset"])
    assert pdf_body == (PDFS / "en_press_release.pdf").read_bytes()
    rerun = analyse_pdf(pdf_body, server.url("/statement.pdf"))  # re-extraction with no network
    assert rerun.status == "text" and rerun.extraction.published == "2024-03-14"
    robots = [h for _, h, _ in all_records(warc_dir) if h.get("WARC-Target-URI") == server.url("/robots.txt")]
    assert len(robots) == 2, "robots.txt: its response and request records"


def test_every_offset_is_a_record_or_unreadable_never_another_error(tmp_path):
    """The site reads a capture at a stored offset; a wrong offset (a file edited, an archive from
    elsewhere) must be CaptureUnreadable (a 410 page), whatever bytes are there: garbage makes warcio
    fail in many ways, an AttributeError on a record without HTTP headers among them."""
    from archive.warc import CaptureUnreadable, read_capture

    with WarcWriter(tmp_path) as writer:
        offsets = [writer.write_exchange(
            f"https://example.org/{n}", [("Accept", "text/html")], "GET", 200, "OK",
            [("Content-Type", "text/html; charset=utf-8")], f"<p>release {n}</p>".encode() * 40).offset
            for n in range(3)]
        name = writer.files[0]
    size = (tmp_path / name).stat().st_size
    read, unreadable = [], 0
    for offset in range(size + 2):
        try:
            read.append((offset, read_capture(tmp_path, name, offset).url))
        except CaptureUnreadable:
            unreadable += 1
    assert read == [(offset, f"https://example.org/{n}") for n, offset in enumerate(offsets)]
    assert unreadable == size + 2 - 3
    # a response record whose block is not an HTTP message (warcio gives it no HTTP headers)
    block = b"not an http message"
    (tmp_path / "foreign.warc").write_bytes(
        b"WARC/1.1\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-000000000001>\r\n"
        b"WARC-Target-URI: https://example.org/x\r\nWARC-Date: 2024-01-01T00:00:00Z\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Length: " + str(len(block)).encode()
        + b"\r\n\r\n" + block + b"\r\n\r\n")
    with pytest.raises(CaptureUnreadable, match="not a readable response record"):
        read_capture(tmp_path, "foreign.warc", 0)
