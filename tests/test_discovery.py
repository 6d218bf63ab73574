"""Discovery parsing on hand-built feeds, sitemaps and listing pages, and URL normalisation."""

import gzip

from scrapy.http import HtmlResponse

from archive.urls import normalise_url
from crawler.discovery import feeds, listings, sitemaps
from crawler.sources import Source

SOURCE = Source(
    id="t", name="T", country="CN", kind="embassy", languages=["en"],
    article_pattern=r"/eng/sgxw/\d{6}/t\d{8}_\d+\.htm$", listings=["https://ca.example.gov.cn/eng/sgxw/"],
    pagination_pattern=r"/eng/sgxw/list\?page=\d+$", allowed_domains=["example.gov.cn"],
)


def html(url, body):
    return HtmlResponse(url=url, body=body.encode("utf-8"), encoding="utf-8")


def test_rss_and_atom_entries():
    rss = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>x</title>
      <item><title>Statement one</title><link>https://a.example/news/2017/06/one.html</link>
        <pubDate>Thu, 22 Jun 2017 14:30:00 -0400</pubDate><description>Teaser</description></item>
      <item><title>No link</title></item>
      <item><guid>https://a.example/news/2017/06/two.html</guid><pubDate>bad date</pubDate></item>
    </channel></rss>"""
    entries = feeds.parse_feed(rss, "https://a.example/feed.xml")
    assert [(e.url, e.title, e.date) for e in entries] == [
        ("https://a.example/news/2017/06/one.html", "Statement one", "2017-06-22"),
        ("https://a.example/news/2017/06/two.html", None, None),
    ]
    assert entries[0].summary == "Teaser"
    atom = b"""<feed xmlns="http://www.w3.org/2005/Atom"><entry><title>A</title>
      <link rel="alternate" href="/news/2017/06/a.html"/><link rel="enclosure" href="/x.pdf"/>
      <published>2017-06-23T10:00:00+08:00</published></entry></feed>"""
    (entry,) = feeds.parse_feed(atom, "https://b.example/atom")
    assert (entry.url, entry.date) == ("https://b.example/news/2017/06/a.html", "2017-06-23")
    assert feeds.is_feed(atom) and feeds.is_feed(rss)
    assert not feeds.is_feed(b"<html><body>Not a feed</body></html>")
    assert feeds.parse_feed(b"\x00\x01 garbage", "https://a.example/") == []


def test_feed_with_external_entity_is_not_resolved(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    xxe = f"""<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]>
      <rss><channel><item><title>&x;</title><link>https://a.example/n/1</link></item></channel></rss>""".encode()
    entries = feeds.parse_feed(xxe, "https://a.example/")
    assert all("TOPSECRET" not in (e.title or "") for e in entries)


def test_sitemaps_index_urlset_and_robots():
    index = b"""<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
      <sitemap><loc>https://a.example/sitemap-1.xml.gz</loc><lastmod>2017-06-30</lastmod></sitemap></sitemapindex>"""
    result = sitemaps.parse_sitemap(index)
    assert result.kind == "sitemapindex"
    assert result.entries == [("https://a.example/sitemap-1.xml.gz", "2017-06-30")]
    urlset = gzip.decompress(gzip.compress(b"""<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
      <url><loc>https://a.example/news/1.html</loc><lastmod>2017-06-22T10:00:00Z</lastmod></url>
      <url><loc>https://a.example/news/2.html</loc></url></urlset>"""))
    result = sitemaps.parse_sitemap(urlset)
    assert result.kind == "urlset"
    assert result.entries == [("https://a.example/news/1.html", "2017-06-22"), ("https://a.example/news/2.html", None)]
    assert sitemaps.parse_sitemap(b"<html>nope</html>") is None
    robots = b"User-agent: *\nDisallow: /private/\nSitemap: https://a.example/sitemap_index.xml\n"
    assert sitemaps.robots_sitemaps(robots, "https://a.example/robots.txt") == ["https://a.example/sitemap_index.xml"]


def test_listing_keeps_releases_and_pagination_not_navigation():
    page = html("https://ca.example.gov.cn/eng/sgxw/", """<html><body>
      <nav><a href="/eng/">Home</a><a href="/eng/about/">About</a><a href="mailto:x@y">Mail</a></nav>
      <ul><li><a href="201706/t20170623_1234567.htm">Remarks on cyber security</a></li>
          <li><a href="/eng/sgxw/201706/t20170622_1234566.htm#top">Second</a></li>
          <li><a href="https://evil.example.com/eng/sgxw/201706/t20170621_1.htm">Offsite</a></li></ul>
      <a href="list?page=2">2</a> <a href="/eng/sgxw/archive.htm">下一页</a>
      <footer><a href="/eng/privacy.htm">Privacy</a><a href="https://twitter.com/x">Twitter</a></footer>
      <script>createPageHTML(4, 0, "index", "htm");</script></body></html>""")
    links = listings.listing_links(page, SOURCE)
    assert [u for u, _ in links.releases] == [
        "https://ca.example.gov.cn/eng/sgxw/201706/t20170623_1234567.htm",
        "https://ca.example.gov.cn/eng/sgxw/201706/t20170622_1234566.htm",
    ]
    assert links.pages == [
        "https://ca.example.gov.cn/eng/sgxw/list?page=2",
        "https://ca.example.gov.cn/eng/sgxw/archive.htm",
        "https://ca.example.gov.cn/eng/sgxw/index_1.htm",
    ]


def test_trs_pager_and_rel_next():
    assert listings.trs_next_page("https://x.gov.cn/eng/sgxw/index_1.htm", 'createPageHTML(3, 1, "index", "htm")') == "https://x.gov.cn/eng/sgxw/index_2.htm"
    assert listings.trs_next_page("https://x.gov.cn/eng/sgxw/index_2.htm", 'createPageHTML(3, 2, "index", "htm")') is None
    assert listings.trs_next_page("https://x.gov.cn/web/a/index.shtml", "var countPage = 5;") == "https://x.gov.cn/web/a/index_1.shtml"
    assert listings.trs_next_page("https://x.gov.cn/eng/", "no pager here") is None
    assert listings.is_next_link("whatever", "next") and listings.is_next_link(" Next › ", None)
    assert listings.is_next_link("下一页", None) and not listings.is_next_link("Next steps for Canada", None)


def test_normalise_url():
    assert normalise_url("HTTPS://WWW.Canada.ca:443/en/news/a.html?utm_source=x&id=3#frag") == "https://www.canada.ca/en/news/a.html?id=3"
    assert normalise_url("http://127.0.0.1:8080/a?b=1&c=%20x") == "http://127.0.0.1:8080/a?b=1&c=%20x"
    assert normalise_url("https://a.example") == "https://a.example/"
