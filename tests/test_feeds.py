"""Atom feeds of watches and searches, and the exact counts of the timelines, in-process.

An archive is built with the archive's own schema, indexing and watches (``archive.watches``:
``add_watch``, ``run_watches``); the feeds are read through Datasette's in-process client and
parsed with ``feedparser``: no bozo flag, RFC 3339 dates, ids that do not change when the
watch runs again, a Chinese title intact, an archived title holding ``<script>`` kept as text.
The search feed lists exactly the newest matches the results page lists. The timeline of a
search counts every match per month and source exactly (the arrays' path and the SQL path
agree with counts made by hand), and the source page counts that source's releases per month.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path

import feedparser
import pytest

from archive.schema import open_archive
from archive.search_index import ensure_search, index_releases
from archive.site.serve import make_datasette
from archive.watches import Watch, add_watch, run_watches

SOURCES = [("mfa_cn", "中华人民共和国外交部"), ("gc_ca", "Global Affairs Canada"), ("state_us", "U.S. State"),
           ("uk", "GOV.UK"), ("eeas", "EEAS"), ("nato", "NATO"), ("un", "United Nations")]
SCRIPT_TITLE = "Cyber talks <script>alert('x')</script> & <b>bold</b>"
CHINESE_TITLE = "关于网络安全问题的声明"


def release(rid, source, published, title, text, language="en"):
    return {"id": rid, "source_id": source, "language": language, "published": published,
            "year": int(published[:4]) if published else None, "statement_type": "statement",
            "title": title, "text": text, "url": f"https://example.org/{source}/{rid}", "status": "live",
            "first_seen": f"2024-07-{rid % 28 + 1:02d}T10:00:00Z", "last_changed": None,
            "version_count": 1, "country": "CN" if source == "mfa_cn" else "XX", "kind": "government"}


# (source, published) of the releases mentioning "cyber": 7 sources (the top 5 and two "other"),
# spread over months with gaps, one without a date; and some releases that do not match.
CYBER = [("mfa_cn", "2024-01-05"), ("mfa_cn", "2024-01-20"), ("mfa_cn", "2024-03-02"), ("mfa_cn", "2024-06-30"),
         ("gc_ca", "2024-01-09"), ("gc_ca", "2024-04-11"), ("gc_ca", "2024-04-12"),
         ("state_us", "2024-02-01"), ("state_us", "2024-06-01"), ("uk", "2024-03-03"), ("uk", "2024-03-04"),
         ("eeas", "2024-05-05"), ("nato", "2024-06-06"), ("un", "2024-01-01"), ("un", None)]
OTHER = [("mfa_cn", "2023-12-31"), ("gc_ca", "2024-08-01")]


def build(path: Path) -> Path:
    db = open_archive(path)
    ensure_search(db)
    with db.conn:
        db["sources"].insert_all(({"id": sid, "name": name, "country": "XX"} for sid, name in SOURCES),
                                 pk="id", replace=True)
        rows = [release(i + 1, source, published, f"Cyber statement {i + 1}", f"On cyber security, part {i + 1}.")
                for i, (source, published) in enumerate(CYBER)]
        rows += [release(100 + i, source, published, f"Trade {i}", "Trade and tariffs.")
                 for i, (source, published) in enumerate(OTHER)]
        db["releases"].insert_all(rows, pk="id")
        index_releases(db, [r["id"] for r in rows])
    db.close()
    return path


class Client:
    def __init__(self, path):
        self.ds = make_datasette(path)
        self.loop = asyncio.new_event_loop()

    def get(self, path, status=200, **params):
        response = self.loop.run_until_complete(self.ds.client.get(path, params=params or None))
        assert response.status_code == status, (path, params, response.status_code, response.text[-2000:])
        return response

    def close(self):
        self.loop.close()


@pytest.fixture
def archive(tmp_path):
    return build(tmp_path / "archive.db")


@pytest.fixture
def client(archive):
    c = Client(archive)
    yield c
    c.close()


def parse(text: str):
    feed = feedparser.parse(text)
    assert not feed.bozo, feed.get("bozo_exception")
    return feed


def add_releases(path: Path, rows: list[dict]) -> None:
    db = open_archive(path)
    with db.conn:
        db["releases"].insert_all(rows, pk="id")
        index_releases(db, [r["id"] for r in rows])
    db.close()


def test_watch_feed_gains_entries_once_with_stable_ids(archive, client):
    db = open_archive(archive)
    add_watch(db, Watch(name="网络-cyber", query="cyber OR 网络安全"), "2024-07-01T00:00:00Z")
    db.close()
    # a new watch has no entries yet: a valid, empty feed (datasette-atom 0.9 answers 500 here)
    empty = parse(client.get("/archive/watch_feed.atom", watch="网络-cyber").text)
    assert empty.entries == [] and empty.feed.title == "pressarchive watch “网络-cyber”"

    add_releases(archive, [release(200, "mfa_cn", "2024-07-02", CHINESE_TITLE, "中国政府高度重视网络安全。", "zh"),
                           release(201, "gc_ca", "2024-07-03", SCRIPT_TITLE, "Cyber <i>security</i> talks."),
                           release(202, "gc_ca", "2024-07-04", "Trade again", "No match here.")])
    db = open_archive(archive)
    assert run_watches(db, "2024-07-05T00:00:00Z")["网络-cyber"]["new"] == 2
    db.close()
    first = client.get("/archive/watch_feed.atom", watch="网络-cyber")
    assert first.headers["content-type"].startswith("application/atom+xml")
    feed = parse(first.text)
    assert [e.title for e in feed.entries] == [SCRIPT_TITLE, CHINESE_TITLE]  # newest first
    by_title = {e.title: e for e in feed.entries}
    script = by_title[SCRIPT_TITLE]
    # the archived markup is text: escaped once in the HTML content, never an element of it
    assert "<script" not in script.content[0].value and "<i>" not in script.content[0].value
    assert "&lt;i&gt;security&lt;/i&gt;" in script.content[0].value
    assert "<script>" not in first.text and "<b>bold</b>" not in first.text
    assert by_title[CHINESE_TITLE].link == "https://example.org/mfa_cn/200"
    assert by_title[CHINESE_TITLE].author == "中华人民共和国外交部"
    assert "网络安全" in by_title[CHINESE_TITLE].content[0].value
    for entry in feed.entries:  # RFC 3339, UTC
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry.updated)
    first_ids = [e.id for e in feed.entries]
    assert len(set(first_ids)) == 2

    # an edit of a matching release and a removal: "changed" (with the diff) and "removed" entries
    db = open_archive(archive)
    with db.conn:
        db["release_versions"].insert({"release_id": 201, "version": 2, "fetched_at": "2024-07-06T12:00:00Z",
                                       "title": SCRIPT_TITLE, "text": "Cyber talks, edited.", "change": "edit",
                                       "diff": "-Cyber <i>security</i> talks.\n+Cyber talks, edited."})
        db["removals"].insert({"release_id": 200, "at": "2024-07-07T09:00:00Z", "event": "removed",
                               "http_status": 404, "detail": "HTTP 404"})
    counts = run_watches(db, "2024-07-08T00:00:00Z")["网络-cyber"]
    assert counts == {"new": 0, "changed": 1, "removed": 1}
    db.close()
    again = parse(client.get("/archive/watch_feed.atom", watch="网络-cyber").text)
    assert [e.title for e in again.entries] == [f"Removed: {CHINESE_TITLE}", f"Changed: {SCRIPT_TITLE}",
                                                SCRIPT_TITLE, CHINESE_TITLE]
    assert [e.id for e in again.entries][2:] == first_ids  # the same entries keep their ids
    changed = again.entries[1].content[0].value
    assert "<pre>" in changed and "-Cyber &lt;i&gt;security&lt;/i&gt; talks." in changed
    assert again.entries[0].updated == "2024-07-07T09:00:00Z" and again.entries[1].updated == "2024-07-06T12:00:00Z"

    # a third run with nothing new adds nothing, and the feed is the same, byte for byte in its entries
    db = open_archive(archive)
    assert run_watches(db, "2024-07-09T00:00:00Z")["网络-cyber"] == {"new": 0, "changed": 0, "removed": 0}
    db.close()
    third = client.get("/archive/watch_feed.atom", watch="网络-cyber").text
    assert third.split("<entry>", 1)[1] == client.get("/archive/watch_feed.atom", watch="网络-cyber").text.split(
        "<entry>", 1)[1]
    assert [e.id for e in parse(third).entries] == [e.id for e in again.entries]
    # another watch's entries are not in this feed; an unknown watch is an empty feed
    assert parse(client.get("/archive/watch_feed.atom", watch="nobody").text).entries == []


def test_search_feed_is_the_newest_exact_matches(archive, client):
    listed = client.get("/archive/releases.json", _search="cyber", _shape="array", _size="100").json()
    text = client.get("/archive/search_feed.atom", q="cyber").text
    feed = parse(text)
    assert len(listed) == len(CYBER) == len(feed.entries)
    assert [e.id for e in feed.entries] == [f"tag:pressarchive,2017:release/{r['id']}" for r in listed]
    assert [e.title for e in feed.entries] == [r["title"] for r in listed]
    # the snippet, words marked (feedparser's sanitiser drops <mark>, feed readers show it)
    assert "On &lt;mark&gt;cyber&lt;/mark&gt; security, part 4." in text
    assert feed.entries[0].content[0].value == "<p>On cyber security, part 4.</p>"
    assert feed.feed.title == "pressarchive search “cyber”: the 100 newest matches"
    # filters: the same as the results page's
    listed = client.get("/archive/releases.json", _search="cyber", source_id="gc_ca", _shape="array").json()
    feed = parse(client.get("/archive/search_feed.atom", q="cyber", source="gc_ca").text)
    assert [e.id.rsplit("/", 1)[1] for e in feed.entries] == [str(r["id"]) for r in listed]
    assert len(listed) == 3
    # no match: a valid empty feed
    assert parse(client.get("/archive/search_feed.atom", q="zebra").text).entries == []


def test_search_feed_cut_at_the_100_newest(tmp_path):
    path = tmp_path / "many" / "archive.db"
    path.parent.mkdir()
    db = open_archive(path)
    ensure_search(db)
    with db.conn:
        db["sources"].insert({"id": "gc_ca", "name": "Global Affairs Canada"}, pk="id")
        rows = [release(i, "gc_ca", f"20{10 + i // 12:02d}-{i % 12 + 1:02d}-15", f"Cyber {i}", "cyber")
                for i in range(1, 131)]
        db["releases"].insert_all(rows, pk="id")
        index_releases(db, [r["id"] for r in rows])
    db.close()
    c = Client(path)
    try:
        feed = parse(c.get("/archive/search_feed.atom", q="cyber").text)
        assert [int(e.id.rsplit("/", 1)[1]) for e in feed.entries] == list(range(130, 30, -1))
        page = c.get("/archive/releases", _search="cyber").text
        href = re.search(r'<link rel="alternate" type="application/atom\+xml" title="Atom feed of this search" '
                         r'href="([^"]+)"', page).group(1)
        assert href == "/archive/search_feed.atom?q=cyber"
        assert '>Atom feed of this search</a> (the 100 newest matches, for a feed reader)' in page
    finally:
        c.close()


def expected_counts(rows, source=None):
    return Counter((p[:7], s) for s, p in rows if p and (source is None or s == source))


def chart(html: str) -> dict:
    """The timeline's bars: month -> {series label: count}."""
    bars: dict = {}
    for month, body in re.findall(r'<g class="pa-month" data-month="([\d-]+)"[^>]*>(.*?)</g>', html, re.DOTALL):
        for label, count in re.findall(r'data-series="([^"]*)" data-count="(\d+)"', body):
            bars.setdefault(month, {})[label] = int(count)
    return bars


@pytest.mark.parametrize("extra", [{}, {"title__contains": "statement"}], ids=["arrays", "sql"])
def test_search_timeline_counts_every_match_exactly(client, extra):
    html = client.get("/archive/releases", _search="cyber", **extra).text
    bars = chart(html)
    names = dict(SOURCES)
    by_source = Counter(s for s, p in CYBER if p)
    top = [s for s, _ in sorted(by_source.items(), key=lambda kv: (-kv[1], kv[0]))][:5]
    expected: dict = {}
    for (month, source), n in expected_counts(CYBER).items():
        label = names[source] if source in top else "Other sources (2)"
        expected.setdefault(month, Counter())[label] += n
    assert bars == {m: dict(c) for m, c in expected.items()}
    assert re.search(r'data-months="6" data-bars="6"', html)  # 2024-01 to 2024-06, each with matches
    assert "14 releases in 6 months, 2024-01 to 2024-06 (exact counts; at most 4 in a month); " \
           "1 without a publication date are not drawn." in " ".join(html.split())


def test_search_timeline_follows_the_filters(client):
    bars = chart(client.get("/archive/releases", _search="cyber", source_id="mfa_cn").text)
    assert bars == {"2024-01": {"中华人民共和国外交部": 2}, "2024-03": {"中华人民共和国外交部": 1},
                    "2024-06": {"中华人民共和国外交部": 1}}
    html = client.get("/archive/releases", _search="cyber", source_id="mfa_cn").text
    assert 'data-months="6" data-bars="3"' in html  # the months between are drawn empty
    assert client.get("/archive/releases", _search="zebra").text.count('class="pa-month"') == 0


def test_source_page_releases_per_month(client):
    html = client.get("/archive/sources/gc_ca").text
    rows = CYBER + OTHER
    assert chart(html) == {m: {"Releases": n} for (m, _), n in expected_counts(rows, "gc_ca").items()}
    assert 'data-months="8" data-bars="3"' in html  # 2024-01 to 2024-08
    assert "Releases per month" in html
