"""The discovery families' shared rules (crawler/discovery/common.py) and the one date parser.

``tests/test_discovery.py`` checks each family's parser on hand-built input and the crawl
tests (test_crawl, test_families, test_incremental, test_drift) the callbacks in real
crawls; here: the date values discovery reads, the "known, or recheck?" decision, how far
a run goes (:class:`Scope`), the helpers the families share, and the entry-error helper
in a real crawl of broken entry points.
"""

from __future__ import annotations

import pytest
import sqlite_utils
from conftest import write_sources

from archive.fetch_state import SourceState
from crawler.discovery import feeds, json_api, wordpress
from crawler.discovery.common import (
    NEW,
    RECHECK,
    Discovery,
    Scope,
    discovery_hints,
    iso_date,
    plain,
)
from crawler.sources import Source
from pipelines.dates import parse_date_value

# Real-world date values of feeds (RSS pubDate, Atom, dc:date), sitemaps (<lastmod>), JSON APIs
# (Government of Canada, GOV.UK, EC press corner, WordPress) and pages, with the date the parsers
# before the unification gave and which of them accepted it: ``feed`` (discovery.parse_date,
# feeds and sitemaps), ``api`` (discovery.parse_any_date, JSON APIs and WordPress), ``page``
# (pipelines.dates.parse_date_value). Each must read the same with the one parser left.
OLD_PARSERS = [
    ("Mon, 26 Jun 2017 14:00:00 GMT", "2017-06-26", "feed page api"),
    ("Mon, 26 Jun 2017 14:00:00 +0000", "2017-06-26", "feed page api"),
    ("Mon, 26 Jun 2017 23:30:00 -0500", "2017-06-26", "feed page api"),
    ("Mon, 26 Jun 2017 14:00:00 EDT", "2017-06-26", "feed page api"),
    ("Mon, 26 Jun 2017 14:00:00 UT", "2017-06-26", "feed page api"),
    ("Mon, 26 Jun 2017 14:00 GMT", "2017-06-26", "feed page api"),
    ("26 Jun 2017 14:00:00 +0100", "2017-06-26", "feed page api"),
    ("Mon, 26 Jun 17 14:00:00 GMT", "2017-06-26", "feed api"),
    ("Mon, 26 Jun 99 14:00:00 GMT", "1999-06-26", "feed api"),
    ("Mon,26 Jun 2017 14:00:00 GMT", "2017-06-26", "feed page api"),
    ("Monday, 26 June 2017 14:00:00 GMT", "2017-06-26", "feed page api"),
    ("Mon, 26 Jun 2017", "2017-06-26", "page"),
    ("Thu, 01 Jun 2017 00:00:00 +0800", "2017-06-01", "feed page api"),
    ("Mon, 6 Jun 2017 14:00:00 GMT", "2017-06-06", "feed page api"),
    ("Mon, 26 Jun 2017 14:00:00 Z", "2017-06-26", "feed page api"),
    ("Mon, 26 Jun 2017 14:00:00 CST", "2017-06-26", "feed page api"),
    ("Mon, 26 Jun 2017 14:00:00", "2017-06-26", "feed page api"),
    ("Jun 26 2017 14:00:00 GMT", "2017-06-26", "feed page api"),
    ("Mon, 26 June 2017 14:00:00 +0200", "2017-06-26", "feed page api"),
    ("Mon, 26 Juin 2017 14:00:00 +0200", "2017-06-26", "page"),
    ("26 Jun 1850 10:00:00 GMT", "1850-06-26", "feed api"),
    ("2017-06-26", "2017-06-26", "feed page api"),
    ("2017-06-26T14:00:00Z", "2017-06-26", "feed page api"),
    ("2017-06-26T14:00:00+08:00", "2017-06-26", "feed page api"),
    ("2017-06-26T23:30:00-05:00", "2017-06-26", "feed page api"),
    ("2017-06-26T14:00:00.123456Z", "2017-06-26", "feed page api"),
    ("2017-06-26T14:00+08:00", "2017-06-26", "feed page api"),
    ("2017-06-26 14:00:00", "2017-06-26", "feed page api"),
    ("2017-06-26 14:00", "2017-06-26", "feed page api"),
    (" 2017-06-26 ", "2017-06-26", "feed page api"),
    ("2017-6-26", "2017-06-26", "page"),
    ("2017/06/26", "2017-06-26", "page"),
    ("1850-06-26", "1850-06-26", "feed api"),
    ("0001-01-01", "0001-01-01", "feed api"),
    ("2017-06-26T14:00:00.000+01:00", "2017-06-26", "feed page api"),
    ("20170626", "2017-06-26", "page"),
    ("2017-06-26garbage", "2017-06-26", "feed page api"),
    ("2017-06-26T14:00:00-04:00", "2017-06-26", "feed page api"),
    ("2021-06-30T09:15:00.000+01:00", "2021-06-30", "feed page api"),
    ("1999-12-31T23:59:59Z", "1999-12-31", "feed page api"),
    ("2017-06-20T13:30:00", "2017-06-20", "feed page api"),
    ("26.06.2017", "2017-06-26", "page api"),
    ("6.6.2017", "2017-06-06", "page api"),
    ("06.26.2017", "2017-06-26", "page"),
    ("26.06.1850", "1850-06-26", "api"),
    ("26.06.2017 10:00", "2017-06-26", "page"),
    ("26/06/2017", "2017-06-26", "page"),
    ("06/26/2017", "2017-06-26", "page"),
    ("1498485600000", "2017-06-26", "api"),
    ("1498485600123", "2017-06-26", "api"),
    ("946684800000", "2000-01-01", "api"),
    ("999999999999", "2001-09-09", "api"),
    (1498485600000, "2017-06-26", "api"),
    ("149848560000", "1974-10-01", "api"),
    ("June 26, 2017", "2017-06-26", "page"),
    ("26 June 2017", "2017-06-26", "page"),
    ("2017年6月26日", "2017-06-26", "page"),
    ("2017年06月26日 10:00", "2017-06-26", "page"),
]
# ... and what none of them read, which the one parser refuses too.
REFUSED = [None, "", "   ", "Wed, 31 Jun 2017 14:00:00 GMT", "Mon, 32 Jun 2017 14:00:00 GMT",
           "Mon, 26 Foo 2017 14:00:00 GMT", "2017-06", "2017", "2017-02-30", "2017-13-01", "31.02.2017",
           "14984856000000", "1498485600", "yesterday", "n/a", "0", 0, "null", "TBD", "2017-06-xx"]


@pytest.mark.parametrize("value, expected, accepted_by", OLD_PARSERS)
def test_one_date_parser_reads_what_the_three_old_ones_read(value, expected, accepted_by):
    assert iso_date(value) == expected
    assert parse_date_value(value).isoformat() == expected


@pytest.mark.parametrize("value", REFUSED)
def test_one_date_parser_refuses_what_they_refused(value):
    assert iso_date(value) is None


def test_feed_dates_go_through_the_one_parser():
    rss = b"""<rss version="2.0"><channel>
      <item><link>https://a.example/n/1</link><pubDate>Mon, 26 Jun 17 14:00:00 GMT</pubDate></item>
      <item><link>https://a.example/n/2</link><pubDate>Mon, 26 Jun 2017</pubDate></item>
    </channel></rss>"""
    assert [e.date for e in feeds.parse_feed(rss, "https://a.example/")] == ["2017-06-26", "2017-06-26"]


# -- known, or recheck? ---------------------------------------------------------------------------

SOURCE = Source(id="t", name="T", country="CN", kind="embassy", languages=["en"],
                article_pattern=r"/news/\d+\.htm$", listings=["https://a.example/news/"],
                allowed_domains=["a.example"])


class Archived(Discovery):
    """The spider's view of an archive that holds ``known`` (url -> last seen)."""

    def __init__(self, known: dict[str, str], last_status: str | None = "ok"):
        self.state = {SOURCE.id: SourceState(known=known, last_status=last_status)}


def test_known_or_recheck():
    archive = Archived({"https://a.example/news/1.htm": "2017-06-26T10:00:00Z"})
    decide = archive._known_or_recheck
    assert decide(SOURCE, "https://a.example/news/2.htm") == NEW
    assert decide(SOURCE, "https://a.example/news/1.htm") is None
    assert decide(SOURCE, "https://a.example/news/1.htm", changed="2017-06-26") is None  # same day: not after
    assert decide(SOURCE, "https://a.example/news/1.htm", changed="2017-06-27") == RECHECK
    # One release under http and https, with tracking parameters: known all the same.
    assert decide(SOURCE, "http://a.example/news/1.htm?utm_source=x", changed="2017-06-01") is None


# -- how far a run goes -----------------------------------------------------------------------------


def test_scope_of_a_crawl_a_backfill_and_a_check():
    finished = {"t": SourceState(last_status="ok", due=[("https://a.example/news/1.htm", None, None)])}
    crawl = Scope(finished)
    assert crawl.paging and not crawl.deep("t")
    assert crawl.next_page("t", fresh=True) and not crawl.next_page("t", fresh=False)
    assert crawl.rechecks("t") == finished["t"].due
    assert crawl.take("t") and crawl.take("t")  # every new release

    assert Scope(finished, backfill=True).next_page("t", fresh=False)
    unfinished = Scope({"t": SourceState(last_status="interrupted")})
    assert unfinished.deep("t") and unfinished.next_page("t", fresh=False)

    check = Scope({"t": SourceState(last_status="interrupted", due=finished["t"].due), "u": SourceState()},
                  backfill=True, check=True)
    assert not check.paging and not check.deep("t") and not check.next_page("t", fresh=True)
    assert check.rechecks("t") == []
    assert check.take("t") and not check.take("t")  # one sample per source
    assert check.take("u")


# -- shared helpers ---------------------------------------------------------------------------------


def test_hints_carry_an_entry_points_date_as_a_feed_date():
    assert discovery_hints("2017-06-26", title="T") == {"title": "T", "date": "2017-06-26", "date_source": "feed"}
    assert discovery_hints(None, title="T", summary=None) == {"title": "T", "summary": None}
    assert plain("<b>Joint&nbsp;statement</b>\n on  trade") == "Joint statement on trade"
    assert plain("  ") is None and plain(None) is None


def test_wordpress_post_hints_and_the_modified_day():
    post = {"link": "https://a.example/news/1.htm", "title": {"rendered": "A &amp; B"},
            "date": "2017-06-20T09:30:00", "date_gmt": "2017-06-20T13:30:00", "modified_gmt": "2017-06-27T16:00:00"}
    hints, modified = wordpress.post_hints(post)
    assert hints == {"title": "A & B", "date": "2017-06-20", "date_source": "feed"} and modified == "2017-06-27"
    hints, modified = wordpress.post_hints(dict(post, modified_gmt="2017-06-20T18:00:00", title="no dict"))
    assert hints["title"] is None and modified is None  # edited the same day: not a change to fetch again
    assert wordpress.collection_url("https://a.example/wp-json/wp/v2/posts?categories=3", 2) == (
        "https://a.example/wp-json/wp/v2/posts?categories=3&per_page=100&page=2")


def test_json_api_pages():
    api = {"url": "x", "size": 10, "total_field": "meta.total"}
    assert json_api.page_url("/s?from={offset}&n={size}&p={page}", 3, 10) == "/s?from=20&n=10&p=3"
    assert json_api.has_more(api, {"meta": {"total": 25}}, [1], 2, max_pages=50)
    assert not json_api.has_more(api, {"meta": {"total": "20"}}, [1], 2, max_pages=50)
    assert not json_api.has_more(api, {}, [], 1, max_pages=50)  # an empty page is the last
    assert not json_api.has_more(dict(api, max_pages=2), {"meta": {"total": 99}}, [1], 2, max_pages=50)
    assert json_api.has_more({"url": "x"}, {}, [1], 49, max_pages=50) and not json_api.has_more({"url": "x"}, {}, [1], 50, 50)


# -- one entry-error helper: counted, the run's message, one line --------------------------------------

BROKEN_SOURCES = """
[[sources]]
id = "{id}"
name = "Broken {id}"
country = "CA"
kind = "government"
languages = ["en"]
{key} = ["{{base_site}}/{path}"]
article_pattern = '/news/\\d+\\.html$'
delay = 0
"""
BROKEN = {  # source id: (registry key, path, what the run says)
    "html-feed": ("feeds", "feed.xml", "is not RSS or Atom (check `feeds` in the registry)"),
    "bad-gzip": ("sitemaps", "sitemap.gz", "is not valid gzip"),
    "image-listing": ("listings", "news.png", "is not an HTML page"),
    "text-api": ("wp_rest", "wp-json/posts", "did not answer JSON (check `wp_rest` in the registry)"),
}


def test_broken_entry_points_are_errors_of_the_run_with_their_reason(tmp_path, site_server, cli):
    site = tmp_path / "site"
    site.mkdir()
    (site / "feed.xml").write_text("<html><body><p>Our news moved.</p></body></html>")
    (site / "sitemap.gz").write_bytes(b"\x1f\x8b\x08\x00 not gzip at all")
    (site / "news.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (site / "wp-json").mkdir()
    (site / "wp-json" / "posts").write_text("Service temporarily unavailable")
    template = tmp_path / "template.toml"
    template.write_text("".join(BROKEN_SOURCES.format(id=sid, key=key, path=path)
                                for sid, (key, path, _) in BROKEN.items()))
    sources = write_sources(template, {"site": site_server(site)}, tmp_path / "sources.toml")
    result = cli(["crawl", "--sources", sources, "--db", tmp_path / "a.db"], tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    runs = {r["source_id"]: r for r in sqlite_utils.Database(tmp_path / "a.db").query("select * from crawl_runs")}
    for sid, (_, path, reason) in BROKEN.items():
        run = runs[sid]
        assert run["status"] == "failed" and run["errors"] == 1, run
        assert path in run["message"] and reason in run["message"], run
        lines = [line for line in result.stderr.splitlines() if f"source '{sid}'" in line and "ERROR" in line]
        assert len(lines) == 1 and reason in lines[0], lines
