"""The local HTTP server that serves the fixture and demo sites."""

from __future__ import annotations

import gzip
import http.client
import json
import re
from urllib.parse import urlsplit

import pytest
import tomllib

from crawler.demo.server import (
    DEMO_SITES,
    SiteServer,
    serve_sites,
    stop_all,
    substitute_bases,
)

FIXTURE_SITES = ("feed_site", "sitemap_site", "listing_site", "gbk_site")


def fetch(server_or_url, path: str = "", headers: dict | None = None, method: str = "GET"):
    """(status, headers, body) without following redirects."""
    url = server_or_url if isinstance(server_or_url, str) else server_or_url.base_url + path
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        target = parts.path + ("?" + parts.query if parts.query else "")
        conn.request(method, target or "/", headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture
def tiny_site(tmp_path):
    root = tmp_path / "tiny"
    (root / "news").mkdir(parents=True)
    (root / "news" / "index.html").write_text('<a href="{{BASE}}/news/a.html">A</a>', encoding="utf-8")
    (root / "news" / "a.html").write_text("<p>A</p>", encoding="utf-8")
    (root / "news" / "page-2.html").write_text("<p>page two</p>", encoding="utf-8")
    (root / "gbk.htm").write_bytes("<p>中华人民共和国 {{BASE}}/x 网络 知识产权</p>".encode("gbk"))
    (root / "image.png").write_bytes(b"\x89PNG{{BASE}}")
    (root / "sitemap.xml.gz").write_bytes(gzip.compress(b"<urlset><url><loc>{{BASE}}/a</loc></url></urlset>"))
    (root / "_routes.json").write_text(json.dumps({
        "/gone.html": {"status": 410},
        "/old.html": {"location": "/news/a.html", "status": 302},
        "/moved.html": {"location": "/news/a.html"},
        "/news/?page=2": {"body_file": "news/page-2.html"},
        "/feed": {"body_file": "news/a.html", "content_type": "application/rss+xml; charset=utf-8",
                  "headers": {"X-Test": "yes"}},
        "/flaky.html": {"status": 503, "times": 1, "body_file": "news/a.html", "headers": {"Retry-After": "0"}},
    }), encoding="utf-8")
    with SiteServer(root) as server:
        yield server


def test_base_url_and_token_substitution(tiny_site):
    assert tiny_site.base_url.startswith("http://127.0.0.1:")
    assert tiny_site.port > 0
    status, headers, body = fetch(tiny_site, "/news/")
    assert status == 200
    assert body == f'<a href="{tiny_site.base_url}/news/a.html">A</a>'.encode()
    assert headers["content-type"] == "text/html"  # no charset parameter


def test_gbk_bytes_untouched_except_the_token(tiny_site):
    original = (tiny_site.root / "gbk.htm").read_bytes()
    status, headers, body = fetch(tiny_site, "/gbk.htm")
    assert status == 200 and headers["content-type"] == "text/html"
    assert body == original.replace(b"{{BASE}}", tiny_site.base_url.encode())
    assert body.decode("gbk") == f"<p>中华人民共和国 {tiny_site.base_url}/x 网络 知识产权</p>"


def test_binary_files_are_not_rewritten(tiny_site):
    assert fetch(tiny_site, "/image.png")[2] == b"\x89PNG{{BASE}}"


def test_gzip_sitemap_served_as_is_with_token_filled(tiny_site):
    status, headers, body = fetch(tiny_site, "/sitemap.xml.gz")
    assert status == 200
    assert headers["content-type"] == "application/x-gzip"
    assert "content-encoding" not in headers
    assert gzip.decompress(body) == f"<urlset><url><loc>{tiny_site.base_url}/a</loc></url></urlset>".encode()


def test_directory_index_with_and_without_slash(tiny_site):
    assert fetch(tiny_site, "/news")[0] == 200
    assert fetch(tiny_site, "/news/")[2] == fetch(tiny_site, "/news")[2]


def test_missing_traversal_and_routes_file_are_404(tiny_site):
    assert fetch(tiny_site, "/nope.html")[0] == 404
    assert fetch(tiny_site, "/../tiny/news/a.html")[0] in (200, 404)  # normalised inside the root
    assert fetch(tiny_site, "/%2e%2e/%2e%2e/etc/passwd")[0] == 404
    assert fetch(tiny_site, "/_routes.json")[0] == 404


def test_routes_status_redirect_body_file_and_headers(tiny_site):
    assert fetch(tiny_site, "/gone.html")[0] == 410
    status, headers, _ = fetch(tiny_site, "/old.html")
    assert status == 302 and headers["location"] == tiny_site.base_url + "/news/a.html"
    status, headers, _ = fetch(tiny_site, "/moved.html")
    assert status == 301 and headers["location"] == tiny_site.base_url + "/news/a.html"
    assert fetch(tiny_site, "/news/?page=2")[2] == b"<p>page two</p>"
    # an unknown query string falls back to the path
    assert fetch(tiny_site, "/news/a.html?utm_source=x")[2] == b"<p>A</p>"
    status, headers, body = fetch(tiny_site, "/feed")
    assert (status, headers["content-type"], headers["x-test"], body) == (
        200, "application/rss+xml; charset=utf-8", "yes", b"<p>A</p>")


def test_route_limited_to_first_requests(tiny_site):
    status, headers, _ = fetch(tiny_site, "/flaky.html")
    assert status == 503 and headers["retry-after"] == "0"
    assert fetch(tiny_site, "/flaky.html")[0] == 200


def test_conditional_requests_answer_304(tiny_site):
    status, headers, _ = fetch(tiny_site, "/news/a.html")
    etag, last_modified = headers["etag"], headers["last-modified"]
    assert status == 200 and etag.startswith('"')
    status, headers, body = fetch(tiny_site, "/news/a.html", {"If-None-Match": etag})
    assert (status, body, headers["etag"]) == (304, b"", etag)
    assert fetch(tiny_site, "/news/a.html", {"If-Modified-Since": last_modified})[0] == 304
    assert fetch(tiny_site, "/news/a.html", {"If-None-Match": '"other"'})[0] == 200
    # If-None-Match wins over If-Modified-Since
    assert fetch(tiny_site, "/news/a.html", {"If-None-Match": '"other"', "If-Modified-Since": last_modified})[0] == 200
    assert fetch(tiny_site, "/news/a.html", {"If-Modified-Since": "Thu, 01 Jan 1998 00:00:00 GMT"})[0] == 200


def test_etag_changes_when_the_file_changes(tiny_site):
    etag = fetch(tiny_site, "/news/a.html")[1]["etag"]
    (tiny_site.root / "news" / "a.html").write_text("<p>A, edited</p>", encoding="utf-8")
    status, headers, body = fetch(tiny_site, "/news/a.html", {"If-None-Match": etag})
    assert status == 200 and body == b"<p>A, edited</p>" and headers["etag"] != etag


def test_requests_are_logged_in_order(tiny_site):
    fetch(tiny_site, "/news/", {"User-Agent": "pressarchive-test/1"})
    fetch(tiny_site, "/news/?page=2")
    fetch(tiny_site, "/nope.html", method="HEAD")
    fetch(tiny_site, "/news/a.html", {"If-None-Match": '"x"', "If-Modified-Since": "Thu, 01 Jan 1998 00:00:00 GMT"})
    log = tiny_site.requests
    assert log == ["/news/", "/news/?page=2", "/nope.html", "/news/a.html"]
    assert tiny_site.paths == ["/news/", "/news/?page=2", "/nope.html", "/news/a.html"]
    assert "/news/?page=2" in log
    assert log[0].method == "GET" and log[0].user_agent == "pressarchive-test/1" and log[0].status == 200
    assert log[2].method == "HEAD" and log[2].status == 404
    assert log[3].if_none_match == '"x"' and log[3].if_modified_since.startswith("Thu, 01 Jan 1998")
    tiny_site.reset_requests()
    assert tiny_site.requests == []


def test_serve_sites_and_substitute_bases():
    servers = serve_sites(DEMO_SITES)
    try:
        assert set(servers) == {"gov", "embassy"}
        assert servers["gov"].port != servers["embassy"].port
        text = substitute_bases("a = '{base_gov}/x'\nb = '\\d{4}' '{base_embassy}'", servers)
        assert text == f"a = '{servers['gov'].base_url}/x'\nb = '\\d{{4}}' '{servers['embassy'].base_url}'"
        assert fetch(servers["embassy"], "/eng/sgxw/index.htm")[0] == 200
    finally:
        stop_all(servers)


# The fixture and demo sites themselves ------------------------------------------------


def test_fixture_sources_fill_every_placeholder(fixture_sources, fixture_servers):
    text = fixture_sources.read_text(encoding="utf-8")
    assert not re.search(r"\{base_[a-z_]+\}", text)
    ids = [s["id"] for s in tomllib.loads(text)["sources"]]
    assert ids == ["fixture-feed", "fixture-sitemap", "fixture-listing", "fixture-gbk"]
    for source in tomllib.loads(text)["sources"]:
        for url in source["feeds"] + source["sitemaps"] + source["listings"]:
            assert fetch(url)[0] == 200, url


@pytest.mark.parametrize("site", FIXTURE_SITES)
def test_expected_releases_are_served(site, site_server, expected):
    server = site_server(site)
    spec = expected[site]
    for release in spec["releases"]:
        status, headers, body = fetch(server, release["path"])
        assert status == 200, release["path"]
        assert headers["content-type"] == "text/html"
        gbk = release.get("encoding_case", "utf8").startswith("gbk")
        text = body.decode("gbk" if gbk else "utf-8")
        assert release["snippet"] in text
        assert release["published"] <= "2017-06-30"
    for path in spec["missing"]:
        assert fetch(server, path)[0] == 404
    for path in spec["empty"]:
        assert fetch(server, path)[0] == 200


def test_gbk_site_pages_are_gbk_bytes(site_server, expected):
    server = site_server("gbk_site")
    cases = {r["encoding_case"]: r for r in expected["gbk_site"]["releases"]}
    assert set(cases) == {"gbk_meta", "gbk_nometa", "utf8_lying"}
    for release in expected["gbk_site"]["releases"]:
        body = fetch(server, release["path"])[2]
        if release["encoding_case"] == "utf8_lying":
            assert b'<meta charset="gb2312">' in body
            assert release["snippet"] in body.decode("utf-8")
        else:
            with pytest.raises(UnicodeDecodeError):
                body.decode("utf-8")
            assert release["snippet"] in body.decode("gbk")
    listing = fetch(server, "/chn/zlgxw/index.htm")[2]
    assert b"charset" not in listing
    assert "下一页".encode("gbk") in listing


def test_robots_disallowed_pages_exist_so_a_request_would_show(site_server):
    server = site_server("sitemap_site")
    robots = fetch(server, "/robots.txt")[2].decode()
    assert f"Sitemap: {server.base_url}/sitemap_index.xml" in robots and "Disallow: /private/" in robots
    index = fetch(server, "/sitemap_index.xml")[2].decode()
    assert f"{server.base_url}/sitemap-2017.xml.gz" in index
    news = fetch(server, "/sitemap-news.xml")[2].decode()
    assert f"{server.base_url}/private/" in news


def test_listing_site_pagination_routes(site_server):
    server = site_server("listing_site")
    assert b"uk-supports-polio-eradication" in fetch(server, "/government/latest?page=4")[2]
    assert b"Next \xe2\x80\xba" in fetch(server, "/government/latest/page-2")[2]
    assert b'rel="next"' in fetch(server, "/government/latest")[2]


def test_demo_sites_hold_the_dialogue_statements(demo_servers, demo_sources):
    gov, embassy = demo_servers["gov"], demo_servers["embassy"]
    page = fetch(gov, "/en/global-affairs/news/2017/06/canada-china-high-level-national-security-and-rule-of-law-dialogue.html")[2]
    assert (b"neither country's government would conduct or knowingly support "
            b"cyber-enabled theft of intellectual property") in page
    assert b'name="dcterms.issued" title="W3CDTF" content="2017-06-22"' in page
    feed = fetch(gov, "/en/global-affairs/news.atom")[2].decode()
    assert gov.base_url + "/en/global-affairs/news/2017/06/" in feed
    assert fetch(gov, "/en/global-affairs/news.html?idx=20")[0] == 200
    zh = fetch(embassy, "/chn/sgxw/201706/t20170623_1234568.htm")[2].decode("utf-8")
    assert "网络" in zh and "知识产权" in zh and '<meta name="PubDate" content="2017-06-23 10:00">' in zh
    en = fetch(embassy, "/eng/sgxw/201706/t20170623_1234567.htm")[2].decode("utf-8")
    assert "cyber-enabled theft of intellectual property" in en
    listing = fetch(embassy, "/eng/sgxw/index.htm")[2].decode("utf-8")
    assert 'createPageHTML(3, 0, "index", "htm")' in listing and ">Next</a>" in listing
    sources = tomllib.loads(demo_sources.read_text(encoding="utf-8"))["sources"]
    assert [s["id"] for s in sources] == ["demo-gac", "demo-cn-embassy-en", "demo-cn-embassy-zh"]
    for source in sources:
        for url in source["feeds"] + source["listings"]:
            assert fetch(url)[0] == 200, url
