"""Hostile input: every kind of bad page, server and redirect, against the local mock server.

tests/sites/hostile_site holds the bad pages (its ``_routes.json`` the bad
answers: loops, 403/410/429/500/503, slow, redirects to private addresses);
the 50 MB page, the gzip bomb and the 50,000-URL sitemap are generated in
tmp_path at test time. Each case must end in one clear log line naming the
URL and the problem, be counted in ``crawl_runs``, let the crawl go on, and
leave what is archived unchanged.

Crawls run in a child process through :func:`crawler.runner.run_crawl` with
settings overrides (a short DOWNLOAD_TIMEOUT, the SSRF middleware).
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import sys
import zlib
from pathlib import Path

import pytest
import sqlite_utils
from conftest import child_env, run_child

from archive.urls import normalise_url
from crawler.demo.server import SiteServer
from crawler.middlewares.ssrf import non_public_reason

SITE = Path(__file__).parent / "sites" / "hostile_site"
T0 = "2024-03-20T12:00:00Z"
LATER = "2024-03-20T14:00:00Z"  # the first recheck (1 hour) is due
SSRF = {"crawler.middlewares.ssrf.SSRFProtectionMiddleware": 40}
SETTINGS = {"DOWNLOAD_TIMEOUT": 2, "DOWNLOAD_MAXSIZE": 16_000_000, "DOWNLOADER_MIDDLEWARES": SSRF,
            "LOG_LEVEL": "INFO"}
CRAWL = """
import json, sys
from crawler.runner import build_settings, run_crawl
from crawler.sources import load_sources
run_crawl(load_sources(sys.argv[1]), build_settings(sys.argv[2], overrides=json.loads(sys.argv[3])))
"""


def run_crawl(cwd: Path, sources: Path, overrides: dict | None = None, when: str | None = None, timeout=180):
    env = child_env(when)
    result = run_child([sys.executable, "-c", CRAWL, str(sources), "archive.db",
                        json.dumps({**SETTINGS, **(overrides or {})})], cwd, env, timeout)
    return result, sqlite_utils.Database(cwd / "archive.db")


def source_toml(source_id: str, base: str, *, feeds=(), sitemaps=(), listings=(), pattern="/news/r/", extra="") -> str:
    def urls(paths):
        return json.dumps([base + p for p in paths])
    return f"""
[[sources]]
id = "{source_id}"
name = "Hostile {source_id}"
country = "CA"
kind = "government"
languages = ["en", "zh"]
feeds = {urls(feeds)}
sitemaps = {urls(sitemaps)}
listings = {urls(listings)}
article_pattern = '{pattern}'
delay = 0
{extra}
"""


def generate_big_files(root: Path) -> None:
    generated = root / "generated"
    generated.mkdir(exist_ok=True)
    para = b"<p>" + b"The delegation met again to discuss the text of the agreement line by line. " * 20 + b"</p>\n"
    (generated / "big.html").write_bytes(b"<html><body><main><h1>Big</h1>" + para * (50_000_000 // len(para))
                                         + b"</main></body></html>")
    # 300 MB of spaces in 290 KB of gzip, sent with Content-Encoding: gzip
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunks = [packer.compress(b"<html><body>")] + [packer.compress(b" " * 1_000_000) for _ in range(300)]
    (generated / "bomb.bin").write_bytes(b"".join(chunks) + packer.flush())


def lines_with(stderr: str, needle: str) -> list[str]:
    return [line for line in stderr.splitlines() if needle in line]


def errors_for(stderr: str, url: str) -> list[str]:
    """Log lines of WARNING and above naming ``url`` exactly (not as a prefix of another URL)."""
    return [line for line in stderr.splitlines()
            if (" WARNING: " in line or " ERROR: " in line) and (url + " " in line or url + ":" in line
                                                                 or line.endswith(url) or url + ";" in line)]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """The hostile site crawled once: (result, db, server, base, workdir)."""
    work = tmp_path_factory.mktemp("hostile")
    root = work / "site"
    shutil.copytree(SITE, root)
    generate_big_files(root)
    server = SiteServer(root).start()
    base = server.base_url
    sources = work / "sources.toml"
    sources.write_text(source_toml("hostile", base, feeds=["/feed.xml", "/atom.xml"],
                                   sitemaps=["/sitemap.xml", "/sitemap-html.xml"], listings=["/news/"]))
    result, db = run_crawl(work, sources, when=T0)
    yield result, db, server, base, work
    server.stop()


def stored(db, base, path):
    return db.execute("select * from releases where url = ?", [base + path]).fetchone() is not None


def release(db, base, path) -> dict:
    rows = list(db.query("select * from releases where url = ?", [base + path]))
    assert len(rows) == 1, path
    return rows[0]


# -- the crawl survives and accounts for everything --------------------------------------------------


def test_crawl_goes_on_and_counts_the_problems(hostile):
    result, db, _, base, _ = hostile
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    run = next(db.query("select * from crawl_runs"))
    assert run["status"] == "partial" and run["finished"]
    for path in ("good-1", "good-2", "good-3", "busy", "malformed", "bom-utf8", "bom-utf16", "script",
                 "long-title", "gb2312-declared-utf8", "utf8-declared-gbk"):
        assert stored(db, base, f"/news/r/{path}.html"), path
    assert run["new"] == 11 == db["releases"].count
    assert run["empty"] == 3  # empty body, binary, JavaScript-only
    # 403, 404, 410, 429, 500, 503, slow, big, connection refused, 2 SSRF redirects, broken feed/sitemaps
    assert run["errors"] >= 13


@pytest.mark.parametrize("path, problem", [
    ("/news/r/forbidden.html", "HTTP 403"),
    ("/news/r/missing.html", "HTTP 404"),
    ("/news/r/gone.html", "HTTP 410"),
    ("/news/r/throttled.html", "HTTP 429"),
    ("/news/r/server-error.html", "HTTP 500"),
    ("/news/r/unavailable.html", "HTTP 503"),
    ("/news/r/slow.html", "took longer than 2.0 seconds"),
    ("/news/r/big.html", "larger than download max size"),
    ("/news/r/empty.html", "no main text"),
    ("/news/r/binary.html", "binary content"),
    ("/news/r/js-only.html", "JavaScript-only page"),
])
def test_one_clear_line_per_bad_page_and_nothing_stored(hostile, path, problem):
    result, db, _, base, _ = hostile
    lines = [line for line in errors_for(result.stderr, base + path) if "robots.txt" not in line]
    assert len(lines) == 1, lines or result.stderr[-3000:]
    assert problem in lines[0] and "source 'hostile'" in lines[0]
    assert not stored(db, base, path)


def test_link_to_another_port_of_the_host_is_refused(hostile):
    # The source is on 127.0.0.1:<its port>; port 9 of the same host is another server, which
    # the source's URLs do not name: refused before connecting (crawler/middlewares/ssrf.py, trust by origin).
    result, _, _, base, _ = hostile
    lines = [line for line in lines_with(result.stderr, "http://127.0.0.1:9/news/r/refused.html")
             if " WARNING: " in line or " ERROR: " in line]
    assert len(lines) == 1 and "refused" in lines[0] and "loopback address" in lines[0], lines
    assert f"configured there only at {base}" in lines[0]
    assert "Connection was refused" not in result.stderr


def test_connection_refused(tmp_path):
    # A source configured on a closed port: its own origin, so it is tried, and fails in one line.
    sources = tmp_path / "sources.toml"
    sources.write_text(source_toml("closed", "http://127.0.0.1:9", feeds=["/feed.xml"]))
    result, db = run_crawl(tmp_path, sources)
    lines = [line for line in lines_with(result.stderr, "http://127.0.0.1:9/feed.xml") if "ERROR" in line]
    assert len(lines) == 1 and "Connection was refused" in lines[0], result.stderr[-3000:]
    assert next(db.query("select status from crawl_runs"))["status"] == "failed"


def test_dns_failure_is_one_line(tmp_path):
    sources = tmp_path / "sources.toml"
    sources.write_text(source_toml("nowhere", "http://no-such-host.invalid", feeds=["/feed.xml"]))
    result, db = run_crawl(tmp_path, sources, timeout=120)
    lines = [line for line in lines_with(result.stderr, "no-such-host.invalid/feed.xml") if "ERROR" in line]
    assert len(lines) == 1 and "DNS lookup failed" in lines[0], result.stderr[-3000:]
    assert next(db.query("select status from crawl_runs"))["status"] == "failed"


def test_retry_then_success_is_stored(hostile):
    result, _, server, base, _ = hostile
    assert [r.status for r in server.requests if r.path == "/news/r/busy.html"][:2] == [503, 200]
    assert not errors_for(result.stderr, base + "/news/r/busy.html")


def test_gzip_bomb_stops_at_the_size_limit(hostile):
    result, db, _, base, _ = hostile
    url = base + "/news/r/bomb.html"
    assert not stored(db, base, "/news/r/bomb.html")
    assert lines_with(result.stderr, url) and "exceeded DOWNLOAD_MAXSIZE" in lines_with(result.stderr, url)[0]


def test_gzip_bomb_is_counted_as_an_error(hostile):
    result, _, _, base, _ = hostile
    url = base + "/news/r/bomb.html"
    assert [line for line in lines_with(result.stderr, url) if "ERROR" in line]


@pytest.mark.parametrize("path", ["/news/r/loop-a.html", "/news/r/self-loop.html"])
def test_redirect_loop_is_one_line(hostile, path):
    result, _, _, base, _ = hostile
    lines = [line for line in lines_with(result.stderr, base + path) if "redirect loop" in line]
    assert len(lines) == 1


def test_redirect_loops_store_nothing_and_end(hostile):
    _, db, server, base, _ = hostile
    assert not stored(db, base, "/news/r/loop-a.html") and not stored(db, base, "/news/r/self-loop.html")
    assert server.paths.count("/news/r/self-loop.html") <= 6


# -- pages that are stored, correctly -------------------------------------------------------------------


def test_malformed_html_is_recovered(hostile):
    _, db, _, base, _ = hostile
    row = release(db, base, "/news/r/malformed.html")
    assert row["title"].startswith("Statement on maritime security")
    assert "freedom of navigation" in row["text"] and "Law of the Sea" in row["text"]


@pytest.mark.parametrize("path, encoding, title", [
    ("/news/r/gb2312-declared-utf8.html", "utf-8", "外交部发言人答记者问（一）"),
    ("/news/r/utf8-declared-gbk.html", "gb18030", "外交部发言人答记者问（二）"),
    ("/news/r/bom-utf8.html", "utf-8", "Statement on the peace conference"),
    ("/news/r/bom-utf16.html", "utf-16", "Statement on the donor conference"),
])
def test_wrong_charsets_and_boms(hostile, path, encoding, title):
    _, db, _, base, _ = hostile
    row = release(db, base, path)
    assert (row["encoding"], row["title"]) == (encoding, title)
    assert "\ufeff" not in row["text"] and "\ufffd" not in row["text"] and "锟" not in row["text"]
    if "外交部" in title:
        assert "网络空间的和平" in row["text"] and row["language"] == "zh"


def test_absurdly_long_title_is_cut_with_a_line(hostile):
    result, db, _, base, _ = hostile
    row = release(db, base, "/news/r/long-title.html")
    assert len(row["title"]) <= 1000 and row["title"].endswith("…")
    lines = errors_for(result.stderr, base + "/news/r/long-title.html")
    assert len(lines) == 1 and "title of" in lines[0] and "cut to 1000" in lines[0]


def test_script_payloads_are_not_text(hostile):
    _, db, _, base, _ = hostile
    row = release(db, base, "/news/r/script.html")
    assert "document.cookie" not in row["text"] and "evil.example" not in row["text"]
    assert 'alert("head")' not in row["text"] and "onerror" not in row["text"] and "javascript:" not in row["text"]
    # What the page *says* (an escaped payload quoted in the text) is kept as text.
    assert "The payload <script>alert(1)</script> was reported" in row["text"]


def test_script_payload_is_escaped_when_served(hostile):
    from archive.site.serve import make_datasette

    _, db, _, base, work = hostile
    release_id = release(db, base, "/news/r/script.html")["id"]
    ds = make_datasette(work / "archive.db")
    import asyncio

    async def fetch():
        return await ds.client.get(f"/archive/releases/{release_id}")

    page = asyncio.run(fetch())
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)" in page.text


def test_same_release_under_tracking_params_and_fragment_is_one_row(hostile):
    _, db, server, base, _ = hostile
    assert db.execute("select count(*) from releases where url like ?", [base + "/news/r/good-1%"]).fetchone()[0] == 1
    assert server.paths.count("/news/r/good-1.html") == 1


def test_url_variants_normalise_to_one_key():
    key = "http://gov.example/news/r/a.html"
    for variant in ("http://GOV.Example/news/r/a.html", "HTTP://gov.example:80/news/r/a.html#top",
                    "http://gov.example/news/r/a.html?utm_source=x&utm_campaign=y", "http://gov.example/news/r/a.html#"):
        assert normalise_url(variant) == key


def test_http_and_https_are_one_release(tmp_path):
    from archive import history
    from archive.clock import parse_iso
    from archive.schema import open_archive

    db = open_archive(tmp_path / "a.db")
    base = {"title": "Statement", "text": "The same statement.", "source_id": "s"}
    when = parse_iso("2024-01-01T00:00:00Z")
    first = history.apply_release(db, dict(base, url="http://gov.example/news/r/a.html",
                                            last_seen="2024-01-01T00:00:00Z"), now=when)
    again = history.apply_release(db, dict(base, url="https://gov.example/news/r/a.html",
                                            last_seen="2024-01-01T01:00:00Z"), now=when)
    assert first == ("new", 1) and again == ("unchanged", 1)
    assert [r["url"] for r in db["releases"].rows] == ["http://gov.example/news/r/a.html"]
    gone = history.apply_check(db, "https://gov.example/news/r/a.html", outcome="removed",
                               at="2024-01-02T00:00:00Z", now=when, http_status=404)
    assert gone == ("removed", 1)


# -- feeds and sitemaps ---------------------------------------------------------------------------------


def test_invalid_feeds_and_sitemaps(hostile):
    result, db, _, base, _ = hostile
    atom = [line for line in lines_with(result.stderr, base + "/atom.xml") if "ERROR" in line]
    assert len(atom) == 1 and "not RSS or Atom" in atom[0]
    html = [line for line in lines_with(result.stderr, base + "/sitemap-html.xml") if "ERROR" in line]
    assert len(html) == 1 and "not a sitemap" in html[0]
    # The truncated feed and sitemap still gave their complete entries.
    assert stored(db, base, "/news/r/good-3.html") and stored(db, base, "/news/r/good-2.html")


def test_truncated_feed_and_sitemap_are_reported(hostile):
    result, *_ = hostile
    base = hostile[3]
    assert [line for line in lines_with(result.stderr, base + "/feed.xml") if "not well-formed" in line]
    assert [line for line in lines_with(result.stderr, base + "/sitemap.xml") if "not well-formed" in line]


def test_sitemap_with_50000_urls(tmp_path, site_server):
    root = tmp_path / "site"
    shutil.copytree(SITE, root)
    locs = [f"<url><loc>{{{{BASE}}}}/tags/topic-{i}.html</loc><lastmod>2024-01-01</lastmod></url>"
            for i in range(49_997)]
    locs += [f"<url><loc>{{{{BASE}}}}/news/r/good-{i}.html</loc></url>" for i in (1, 2, 3)]
    (root / "big-sitemap.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
        + "\n".join(locs) + "\n</urlset>\n")
    server = site_server(root)
    sources = tmp_path / "sources.toml"
    sources.write_text(source_toml("bigmap", server.base_url, sitemaps=["/big-sitemap.xml"]))
    result, db = run_crawl(tmp_path, sources, timeout=180)
    run = next(db.query("select * from crawl_runs"))
    assert run["status"] == "ok" and run["new"] == 3 and run["discovered"] == 3, result.stderr[-3000:]
    assert len(server.paths) == 5  # robots.txt, the sitemap, three releases


# -- robots.txt that is not a robots.txt ----------------------------------------------------------------


@pytest.fixture
def robots_sites(tmp_path, site_server):
    """Copies of the site whose robots.txt answers with HTML, 404, 500, and 503 asking to come back tomorrow."""
    answers = {"html": {"body_file": "news/index.html"}, "missing": {"status": 404}, "broken": {"status": 500},
               "tomorrow": {"status": 503, "headers": {"Retry-After": "86400"}}}
    servers = {}
    for name, route in answers.items():
        root = tmp_path / name
        (root / "news" / "r").mkdir(parents=True)
        shutil.copy(SITE / "news" / "r" / "good-1.html", root / "news" / "r" / "good-1.html")
        (root / "news" / "index.html").write_text('<a href="/news/r/good-1.html">Statement</a>')
        (root / "_routes.json").write_text(json.dumps({"/robots.txt": route}))
        servers[name] = site_server(root)
    return servers


def test_robots_txt_that_is_html_404_or_500(tmp_path, robots_sites):
    sources = tmp_path / "sources.toml"
    sources.write_text("".join(source_toml(name, s.base_url, listings=["/news/"]) for name, s in robots_sites.items()))
    result, db = run_crawl(tmp_path, sources)
    assert "Traceback" not in result.stderr
    runs = {r["source_id"]: r for r in db.query("select * from crawl_runs")}
    # An HTML page or a 404 has no rules: everything is allowed (RFC 9309 2.3.1.3).
    for name in ("html", "missing"):
        assert robots_sites[name].paths[0] == "/robots.txt"
        assert runs[name]["new"] == 1, (name, result.stderr[-3000:])
    # A 500 (after the retries) means complete disallow for this run (RFC 9309 2.3.1.4): nothing else is fetched.
    broken = robots_sites["broken"]
    assert set(broken.paths) == {"/robots.txt"}, broken.paths
    assert runs["broken"]["new"] == 0 and runs["broken"]["status"] != "ok"
    assert runs["broken"]["refused"] >= 1 and runs["broken"]["errors"] >= 1
    assert "robots.txt" in runs["broken"]["message"] and "HTTP 500" in runs["broken"]["message"]
    warnings = [line for line in lines_with(result.stderr, "treating the site as disallowed") if " WARNING: " in line]
    assert len(warnings) == 2, result.stderr[-3000:]
    line = next(w for w in warnings if broken.base_url + " " in w)
    assert f"robots.txt of {broken.base_url} answered HTTP 500: treating the site as disallowed" in line
    assert "RFC 9309" in line and "will try again next run" in line
    # 503 with a Retry-After beyond RETRY_AFTER_MAX: not retried, not waited for, the site disallowed.
    tomorrow = robots_sites["tomorrow"]
    assert tomorrow.paths == ["/robots.txt"]
    assert runs["tomorrow"]["new"] == 0 and runs["tomorrow"]["refused"] >= 1
    line = next(w for w in warnings if tomorrow.base_url + " " in w)
    assert "HTTP 503 with Retry-After of 86400 s" in line
    for name in ("html", "missing"):
        assert not [w for w in warnings if robots_sites[name].base_url + " " in w]


# -- Retry-After --------------------------------------------------------------------------------------


def test_retry_after_is_honoured_for_the_whole_host(tmp_path, site_server):
    """429 with Retry-After: 2 once: the retry, and every other request to the host, waits 2 s; a
    Retry-After of a day (more than RETRY_AFTER_MAX) is given up on at once, and the crawl goes on."""
    root = tmp_path / "site"
    (root / "news" / "r").mkdir(parents=True)
    pages = ["good-1", "good-2", "good-3", "busy", "later"]
    for page in pages:
        shutil.copy(SITE / "news" / "r" / "good-1.html", root / "news" / "r" / f"{page}.html")
    # LIFO scheduling: the last links go out first, so the 429s come before the other pages.
    (root / "news" / "index.html").write_text(" ".join(f'<a href="/news/r/{p}.html">{p}</a>' for p in pages))
    (root / "_routes.json").write_text(json.dumps({
        "/news/r/busy.html": {"status": 429, "times": 1, "headers": {"Retry-After": "2"}},
        "/news/r/later.html": {"status": 429, "headers": {"Retry-After": "86400"}},
    }))
    server = site_server(root)
    sources = tmp_path / "sources.toml"
    sources.write_text(source_toml("polite", server.base_url, listings=["/news/"]))
    # A download timeout a loaded machine cannot reach: with the module's 2 s, a 429 answered late
    # timed out in the crawler, whose timeout retry (not the 429) then let the next page go early.
    result, db = run_crawl(tmp_path, sources, {"DOWNLOAD_TIMEOUT": 30})
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    base = server.base_url

    busy = [r for r in server.requests if r.path == "/news/r/busy.html"]
    assert [r.status for r in busy] == [429, 200]
    assert busy[1].received - busy[0].received >= 2.0
    assert stored(db, base, "/news/r/busy.html")
    assert not errors_for(result.stderr, base + "/news/r/busy.html")
    # The whole host waited: nothing at all reached it in the 2 s after the 429 ...
    held = [r for r in server.requests if busy[0].received < r.received < busy[0].received + 1.95]
    assert not held, held
    # ... and there was something to hold back: pages fetched after the 429.
    assert [r for r in server.requests if r.received > busy[0].received and r.path != "/news/r/busy.html"]

    # A day's wait is not waited for: one request, one line with the URL, the status and the wait.
    assert server.paths.count("/news/r/later.html") == 1
    lines = errors_for(result.stderr, base + "/news/r/later.html")
    assert len(lines) == 1, lines or result.stderr[-3000:]
    assert "HTTP 429" in lines[0] and "86400 s" in lines[0] and "RETRY_AFTER_MAX" in lines[0]
    assert "source 'polite'" in lines[0]

    run = next(db.query("select * from crawl_runs"))
    assert run["new"] == 4 and run["errors"] == 1 and run["status"] == "partial"
    assert "later.html" in run["message"]


@pytest.mark.parametrize("header, date, expected", [
    ("120", None, 120.0),
    ("0", None, 0.0),
    ("Wed, 20 Mar 2024 12:02:00 GMT", "Wed, 20 Mar 2024 12:00:00 GMT", 120.0),  # against the server's Date
    ("Wed, 20 Mar 2024 11:00:00 GMT", "Wed, 20 Mar 2024 12:00:00 GMT", 0.0),  # in the past
    ("soon", None, None),
    ("-5", None, None),
    ("", None, None),
])
def test_retry_after_values(header, date, expected):
    from scrapy.http import Response

    from crawler.middlewares.retry import retry_after_seconds

    headers = {"Retry-After": header} if header else {}
    if date:
        headers["Date"] = date
    assert retry_after_seconds(Response("http://gov.example/", status=429, headers=headers)) == expected


def test_retry_after_date_without_server_date_uses_the_clock():
    import email.utils

    from scrapy.http import Response

    from crawler.middlewares.retry import retry_after_seconds

    now = 1_710_936_000.0
    header = email.utils.formatdate(now + 90, usegmt=True)
    response = Response("http://gov.example/", status=503, headers={"Retry-After": header})
    assert retry_after_seconds(response, now=now) == 90.0


# -- server-side request forgery ------------------------------------------------------------------------


@pytest.mark.parametrize("address, refused", [
    ("169.254.169.254", True), ("10.0.0.1", True), ("172.16.5.4", True), ("192.168.1.1", True),
    ("127.0.0.1", True), ("0.0.0.0", True), ("224.0.0.1", True), ("100.64.0.1", True),
    ("::1", True), ("fe80::1", True), ("fc00::1", True), ("::ffff:169.254.169.254", True), ("ff02::1", True),
    ("8.8.8.8", False), ("2001:4860:4860::8888", False),
])
def test_non_public_addresses(address, refused):
    ip = ipaddress.ip_address(address)
    ip = getattr(ip, "ipv4_mapped", None) or ip
    assert (non_public_reason(ip) is not None) is refused


@pytest.mark.parametrize("path, target", [
    ("/news/r/to-metadata.html", "http://169.254.169.254/latest/meta-data/"),
    ("/news/r/to-private.html", "http://10.0.0.1/admin/"),
])
def test_redirect_to_private_address_is_refused(hostile, path, target):
    result, db, _, base, _ = hostile
    lines = lines_with(result.stderr, target)
    refused = [line for line in lines if "refused" in line and "crawler.middlewares.ssrf" in line]
    assert len(refused) == 1 and base + path in refused[0] and "source 'hostile'" in refused[0]
    assert not [line for line in lines if "timed out" in line or "could not fetch" in line]
    assert not stored(db, base, path)


def test_links_to_private_addresses_are_refused_before_connecting(tmp_path, site_server):
    root = tmp_path / "site"
    (root / "news" / "r").mkdir(parents=True)
    shutil.copy(SITE / "news" / "r" / "good-1.html", root / "news" / "r" / "good-1.html")
    server = site_server(root)
    (root / "news" / "index.html").write_text(
        '<a href="/news/r/good-1.html">ok</a> <a href="http://169.254.169.254/news/r/keys.html">metadata</a>'
        ' <a href="http://10.0.0.1/news/r/admin.html">admin</a>')
    sources = tmp_path / "sources.toml"
    # A loose allowed_domains lets the spider follow the links; the middleware must still refuse them.
    sources.write_text(source_toml("ssrf", server.base_url, listings=["/news/"],
                                   extra='allowed_domains = ["127.0.0.1", "169.254.169.254", "10.0.0.1"]'))
    result, db = run_crawl(tmp_path, sources, {"DOWNLOAD_TIMEOUT": 3})
    for url, reason in [("http://169.254.169.254/news/r/keys.html", "link-local"),
                        ("http://10.0.0.1/news/r/admin.html", "private")]:
        lines = [line for line in lines_with(result.stderr, url) if " WARNING: " in line or " ERROR: " in line]
        assert len(lines) == 1 and "refused" in lines[0] and reason in lines[0], (url, result.stderr[-3000:])
    assert "robots.txt for 10.0.0.1" not in result.stderr and "robots.txt for 169.254" not in result.stderr
    assert "timed out" not in result.stderr and "took longer" not in result.stderr
    run = next(db.query("select * from crawl_runs"))
    assert run["new"] == 1 and run["errors"] == 2 and run["status"] == "partial"
    assert [r["url"] for r in db["releases"].rows] == [server.base_url + "/news/r/good-1.html"]


class _Crawler:
    def __init__(self, sources):
        from scrapy.settings import Settings
        from scrapy.signalmanager import SignalManager
        from scrapy.statscollectors import MemoryStatsCollector

        self.spider = type("Spider", (), {"sources": sources})()
        self.settings = Settings()
        self.signals = SignalManager()
        self.stats = MemoryStatsCollector(self)


@pytest.mark.parametrize("url, resolves_to, refused", [
    ("http://metadata.internal/latest/", "169.254.169.254", True),
    ("http://intranet.example/admin", "10.1.2.3", True),
    ("http://gov.example/news/r/a.html", "10.1.2.3", False),  # the source's own host: trusted
    ("http://news.example/r/a.html", "93.184.216.34", False),
    ("http://alias.example:8000/r/a.html", "127.0.0.1", False),  # a name for the source's own address and port
    # ... but not for another port of it: trust is by origin (scheme, host, port), not by host.
    ("http://alias.example/r/a.html", "127.0.0.1", True),
])
def test_names_are_vetted_by_the_address_they_resolve_to(url, resolves_to, refused):
    import asyncio

    from scrapy import Request

    from crawler.middlewares.ssrf import RefusedAddress, SSRFProtectionMiddleware
    from crawler.sources import load_sources

    sources = load_sources(text=source_toml("s", "http://gov.example", listings=["/news/"])
                           + source_toml("t", "http://127.0.0.1:8000", listings=["/news/"]))
    middleware = SSRFProtectionMiddleware(_Crawler({s.id: s for s in sources}))

    async def fake_resolve(host):
        return ipaddress.ip_address(resolves_to)

    middleware._resolve = fake_resolve
    source_id = "t" if "alias" in url else "s"
    request = Request(url, meta={"source_id": source_id})
    if refused:
        with pytest.raises(RefusedAddress):
            asyncio.run(middleware.process_request(request))
        assert middleware.stats.get_value(f"pressarchive/{source_id}/refused") == 1
    else:
        assert asyncio.run(middleware.process_request(request)) is None


# -- nothing archived changes -----------------------------------------------------------------------------


def test_archived_releases_survive_a_site_turning_hostile(hostile):
    _, _, server, _, work = hostile
    work2 = work / "second"
    work2.mkdir(exist_ok=True)
    shutil.copy(work / "archive.db", work2 / "archive.db")
    db2 = sqlite_utils.Database(work2 / "archive.db")
    columns = "url, title, text, content_hash, published, version_count, status, first_seen"
    before = list(db2.query(f"select {columns} from releases order by url"))
    versions = db2["release_versions"].count
    routes_file = server.root / "_routes.json"
    routes = json.loads(routes_file.read_text())
    hostile_routes = {
        "/news/r/good-1.html": {"body_file": "news/r/empty.html"},
        "/news/r/good-2.html": {"status": 500},
        "/news/r/good-3.html": {"body_file": "news/r/binary.html"},
        "/news/r/bom-utf8.html": {"body_file": "news/r/js-only.html"},
        "/news/r/busy.html": routes["/news/r/bomb.html"],
        "/news/r/script.html": {"status": 302, "location": "http://169.254.169.254/latest/meta-data/"},
    }
    routes_file.write_text(json.dumps({**routes, **hostile_routes}))
    try:
        sources = work / "sources.toml"
        result2, db2 = run_crawl(work2, sources, when=LATER)
    finally:
        routes_file.write_text(json.dumps(routes))
    assert "Traceback" not in result2.stderr
    for path in hostile_routes:
        assert server.paths.count(path) >= 2, path  # it was fetched again
    after = list(db2.query(f"select {columns} from releases order by url"))
    assert after == before
    assert db2["release_versions"].count == versions
    assert db2.execute("pragma integrity_check").fetchone()[0] == "ok"
