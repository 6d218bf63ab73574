"""Statement types: the rules' order (archive/statement_type.py) and the feed category reaching them.

The category of a feed item is parsed by crawler/discovery/feeds.py and carried in the
release's hints to the store, where it is the last signal after the source's own
rules, the title and the URL. The crawl test serves a copy of tests/sites/feed_site
whose Atom entries carry categories, and runs ``python -m crawler crawl`` on it.
"""

from __future__ import annotations

import shutil

import sqlite_utils
from conftest import SITES

from archive.statement_type import classify
from crawler.discovery.feeds import parse_feed

ATOM_ENTRY = """<entry>
<title>{title}</title>
<link rel="alternate" type="text/html" href="{{{{BASE}}}}{path}"/>
<id>{{{{BASE}}}}{path}</id>
<published>2017-06-26T10:00:00-04:00</published>
{categories}
<summary type="html">Summary.</summary>
</entry>"""


def test_classify_order_custom_title_url_category():
    custom = {r"/special/": "speech"}
    assert classify("https://x.gov/special/statements/1", "Joint statement", "Readouts", custom) == "speech"
    assert classify("https://x.gov/statements/1", "Joint statement on trade", "Readouts") == "joint_statement"
    assert classify("https://x.gov/statements/1", "Canada Day", "Readouts") == "statement"
    assert classify("https://x.gov/news/1", "Canada Day", "Readouts") == "readout"
    assert classify("https://x.gov/news/1", "Canada Day", None) == "other"
    assert classify("https://x.gov/news/1", "国务委员与美国国务卿通电话", None) == "readout"


def test_feed_categories_are_parsed_from_rss_and_atom():
    rss = b"""<?xml version="1.0"?><rss version="2.0"><channel>
    <item><title>A</title><link>https://x.gov/a</link><category>News</category><category>Readouts</category></item>
    <item><title>B</title><link>https://x.gov/b</link></item></channel></rss>"""
    atom = b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom">
    <entry><title>C</title><link href="https://x.gov/c"/><category term="speeches" label="Speeches"/></entry>
    <entry><title>D</title><link href="https://x.gov/d"/><category term="media-advisory"/></entry></feed>"""
    assert [e.category for e in parse_feed(rss, "https://x.gov/feed")] == ["News | Readouts", None]
    assert [e.category for e in parse_feed(atom, "https://x.gov/feed")] == ["Speeches", "media-advisory"]
    assert classify("https://x.gov/a", "A", "News | Readouts") == "readout"


def test_crawl_types_a_release_by_its_feed_category(tmp_path, site_server, cli):
    """A release whose title and URL say nothing gets its type from the feed's category."""
    site = tmp_path / "site"
    shutil.copytree(SITES / "feed_site", site)
    atom = site / "en" / "news.atom"
    advisory = "/en/news/backgrounders/canada-150-celebrations-on-parliament-hill"
    text = atom.read_text(encoding="utf-8")
    start = text.index("<entry>\n<title>Canada 150")
    end = text.index("</entry>", start) + len("</entry>")
    entry = ATOM_ENTRY.format(title="Canada 150 celebrations on Parliament Hill", path=advisory,
                              categories='<category term="media-advisories" label="Media advisories"/>')
    atom.write_text(text[:start] + entry + text[end:], encoding="utf-8")
    server = site_server(site)
    sources = tmp_path / "sources.toml"
    sources.write_text(f"""
[[sources]]
id = "cat-feed"
name = "Feed with categories"
country = "CA"
kind = "head_of_government"
languages = ["en"]
feeds = ["{server.base_url}/en/news.atom"]
article_pattern = '/en/news/(news-releases|backgrounders)/[a-z0-9/-]+'
delay = 0
""", encoding="utf-8")
    result = cli(["crawl", "--sources", str(sources), "--db", "archive.db", "--log-level", "WARNING"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["url"][len(server.base_url):]: r["statement_type"]
            for r in sqlite_utils.Database(tmp_path / "archive.db").query("select url, statement_type from releases")}
    assert rows[advisory] == "notice", rows
    # the other entry has no category: its URL section decides, as before
    assert rows["/en/news/news-releases/2017/06/23/prime-minister-announces-new-appointments-advisory-council"] \
        == "press_release", rows


def test_advisory_is_a_notice_only_as_a_noun():
    assert classify("https://x.gov/n/1", "Media Advisory: Prime Minister to travel to Ottawa") == "notice"
    assert classify("https://x.gov/n/1", "Travel advisory for Sudan") == "notice"
    assert classify("https://x.gov/n/1", "Advisory - itinerary for Friday") == "notice"
    assert classify("https://x.gov/n/1", "Prime Minister names members of the Advisory Council on Youth") == "other"
    assert classify("https://x.gov/news-releases/1", "New advisory board appointed") == "press_release"
