"""The reading room's home and search-results pages, through an in-process Datasette.

A small archive is built with the archive's own schema and indexing (``open_archive``,
``index_releases``), with sources, crawl runs (one source broken), an edited release and a
removed one; the home page must show exactly what it holds. The results pages (the
releases table with ``_search``, and the ranked ``search`` query) must show the query box
first, the exact number of matches, one result per release with its link, publisher,
date, language, type and a highlighted snippet, and CSV/JSON of exactly the listed
results. On the crawled ``generated_archive`` (2,400 releases) the same holds past the
first page.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import sqlite3
from html.parser import HTMLParser
from pathlib import Path

import pytest

from archive.schema import open_archive
from archive.search_index import ensure_search, index_releases
from archive.site.serve import make_datasette

RELEASES = [
    # id, source_id, language, published, statement_type, title, text
    (1, "mfa_cn", "zh", "2024-05-01", "statement", "关于网络安全问题的声明",
     "中国政府高度重视网络安全。\n加强知识产权保护。"),
    (2, "state_us", "en", "2024-06-01", "press_release", "Statement on software exports",
     "The software industry depends on intellectual property rights."),
    (3, "state_us", "en", "2023-01-01", "readout", "War in the region",
     "Officials met on Tuesday. The war must end. We support 5G 网络 cooperation."),
    (4, "gc_ca", "en", "2019-07-04", "speech", "Remarks on trade",
     "Trade and the war on poverty were discussed at length."),
    (5, "gc_ca", "fr", None, "other", "Déclaration", "Le texte intégral de la déclaration."),
]
SOURCES = [
    ("mfa_cn", "Ministry of Foreign Affairs of the PRC", "CN"),
    ("state_us", "U.S. Department of State", "US"),
    ("gc_ca", "Global Affairs Canada", "CA"),
    ("gone_site", "A source whose site is gone", "CA"),
]


def build(path: Path) -> Path:
    db = open_archive(path)
    ensure_search(db)
    with db.conn:
        db["sources"].insert_all(({"id": sid, "name": name, "country": country} for sid, name, country in SOURCES),
                                 pk="id", replace=True)
        db["releases"].insert_all(
            {"id": rid, "source_id": source, "language": language, "published": published,
             "year": int(published[:4]) if published else None, "statement_type": stype, "title": title,
             "text": text, "url": f"https://example.org/{rid}", "status": "live",
             "first_seen": "2024-06-02T00:00:00Z", "version_count": 1}
            for rid, source, language, published, stype, title, text in RELEASES
        )
        index_releases(db, [row[0] for row in RELEASES])
        db["releases"].update(4, {"status": "removed", "removed_at": "2024-06-03T10:00:00Z"})
        db["release_versions"].insert({"release_id": 2, "version": 2, "fetched_at": "2024-06-03T00:00:00Z",
                                       "title": RELEASES[1][5], "text": RELEASES[1][6], "change": "edit",
                                       "diff": "-old\n+new"})
        runs = [("r1", sid, "2024-06-02T00:00:00Z", "2024-06-02T00:10:00Z", "ok", 3, 1, 0, 0)
                for sid in ("mfa_cn", "state_us", "gc_ca")]
        runs.append(("r1", "gone_site", "2024-06-02T00:00:00Z", "2024-06-02T00:01:00Z", "failed", 0, 0, 0, 4))
        runs += [("r2", "mfa_cn", "2024-06-03T00:00:00Z", "2024-06-03T00:05:00Z", "ok", 1, 1, 0, 0),
                 ("r2", "state_us", "2024-06-03T00:00:00Z", "2024-06-03T00:06:00Z", "ok", 1, 2, 1, 0),
                 ("r2", "gone_site", "2024-06-03T00:00:00Z", "2024-06-03T00:01:00Z", "failed", 0, 0, 0, 3)]
        db["crawl_runs"].insert_all(
            {"run_id": run, "source_id": sid, "started": started, "finished": finished, "status": status,
             "new": new, "changed": changed, "removed": removed, "errors": errors, "discovered": 5}
            for run, sid, started, finished, status, new, changed, removed, errors in runs
        )
    db.close()
    return path


@pytest.fixture
def archive(tmp_path, monkeypatch):
    monkeypatch.setenv("PRESSARCHIVE_NOW", "2024-06-03T12:00:00Z")  # the health verdicts' clock
    return build(tmp_path / "archive.db")


class Client:
    def __init__(self, path):
        self.ds = make_datasette(path)
        self.loop = asyncio.new_event_loop()

    def get(self, path, **params):
        response = self.loop.run_until_complete(self.ds.client.get(path, params=params or None))
        assert response.status_code == 200, (path, params, response.status_code, response.text[-2000:])
        return response

    def close(self):
        self.loop.close()


@pytest.fixture
def client(archive):
    c = Client(archive)
    yield c
    c.close()


class Page(HTMLParser):
    """The parts of a page the tests read: text by element class, links, forms' inputs."""

    def __init__(self, html: str):
        super().__init__()
        self.html = html
        self.stack: list[tuple[str, dict]] = []
        self.links: list[str] = []
        self.inputs: list[dict] = []
        self.texts: dict[str, list[str]] = {}
        self.title = ""
        self._open: list[list] = []  # [class, parts, depth]
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "input":
            self.inputs.append(attrs)
        if tag in ("br", "input", "meta", "link", "img"):
            return
        self.stack.append((tag, attrs))
        for cls in (attrs.get("class") or "").split():
            self._open.append([cls, [], len(self.stack)])

    def handle_endtag(self, tag):
        if not self.stack:
            return
        depth = len(self.stack)
        for entry in [e for e in self._open if e[2] == depth]:
            self.texts.setdefault(entry[0], []).append(" ".join("".join(entry[1]).split()))
            self._open.remove(entry)
        self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1][0] == "title":
            self.title += data
        for entry in self._open:
            entry[1].append(data)

    def text(self, cls: str) -> list[str]:
        return self.texts.get(cls, [])


def facts(page: Page) -> dict[str, str]:
    """The home page's "what the archive holds" list: dt -> dd text."""
    block = page.html[page.html.index('<dl class="pa-facts">'):page.html.index("</dl>")]
    pairs = re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", block, re.DOTALL)
    def flat(html):
        text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
        return re.sub(r"\(\s+", "(", re.sub(r"\s+([,.;:)])", r"\1", text))

    return {dt: flat(dd) for dt, dd in pairs}


@pytest.mark.parametrize("path", ["/archive", "/"])
def test_home_shows_what_the_archive_holds_exactly(client, path):
    page = Page(client.get(path).text)
    assert page.title.strip() == "Press archive of official statements"
    shown = facts(page)
    assert shown["Releases"] == "5 (1 since removed by their publishers, kept here)"
    assert shown["Sources"] == "4 from 3 countries and organisations; 3 with releases in the archive"
    assert shown["Published"] == "2019-07-04 to 2024-06-01"
    assert shown["Languages"] == "English 3 French 1 Chinese 1"
    # the last crawl is run r2 (three sources), not r1
    assert shown["Last crawl"].startswith("started 2024-06-03 00:00:00Z, finished 2024-06-03 00:06:00Z: "
                                          "3 sources, 2 new, 3 changed, 1 removed, 3 errors; 1 failed")
    assert "A source whose site is gone gone_site: broken: 2 failed run(s) in a row" in shown["Broken sources"]
    assert "Global Affairs Canada" not in shown["Broken sources"]
    # one search box, to the releases table; links to recent changes and removals
    boxes = [i for i in page.inputs if i.get("type") == "search"]
    assert [b["name"] for b in boxes] == ["_search"]
    assert '<form class="pa-search" role="search" action="/archive/releases" method="get">' in page.html
    assert "/archive/recent_changes" in page.links and "/archive/removed_releases" in page.links
    assert "Recent changes: 1 edit of archived releases" in " ".join(page.text("pa-changes"))
    assert "Removals: 1 release taken down" in " ".join(page.text("pa-changes"))
    assert "/archive/releases?language=zh" in page.links
    # Datasette's own lists stay reachable below
    below = page.html[page.html.index('class="pa-datasette"'):]
    for table in ("releases", "crawl_runs", "sources", "release_versions"):
        assert f'href="/archive/{table}"' in below


def test_home_follows_the_file_stem(tmp_path, monkeypatch):
    monkeypatch.setenv("PRESSARCHIVE_NOW", "2024-06-03T12:00:00Z")
    c = Client(build(tmp_path / "news-2024.db"))
    try:
        for path in ("/", "/news-2024"):
            page = Page(c.get(path).text)
            assert facts(page)["Releases"].startswith("5 ")
            assert "/news-2024/releases" in page.links and "/news-2024/recent_changes" in page.links
            assert not [link for link in page.links if link.startswith("/archive")], path
    finally:
        c.close()


def results(page: Page) -> list[str]:
    return page.text("pa-title")


def listed_ids(page: Page) -> list[int]:
    return [int(m) for m in re.findall(r'<h2 class="pa-title"[^>]*><a href="/archive/releases/(\d+)"', page.html)]


def test_search_results_page(client):
    page = Page(client.get("/archive/releases", _search="war").text)
    html = page.html
    # the query box first, then the exact total, then the results
    assert html.index('class="pa-q"') < html.index('id="pa-total"') < html.index('class="pa-results"')
    assert page.text("pa-total") == ["2 releases match war."]
    assert page.title.startswith("war: 2 releases")
    json_rows = client.get("/archive/releases.json", _search="war", _shape="objects").json()["rows"]
    assert listed_ids(page) == [row["id"] for row in json_rows] == [3, 4]  # newest first


def test_one_result_per_release_with_what_a_reader_needs(client):
    page = Page(client.get("/archive/releases", _search="war").text)
    assert listed_ids(page) == [3, 4]
    assert results(page) == ["War in the region", "Remarks on trade"]
    assert page.text("pa-publisher") == ["U.S. Department of State", "Global Affairs Canada"]
    assert re.findall(r'<time datetime="([\d-]+)">', page.html) == ["2023-01-01", "2019-07-04"]
    assert page.text("pa-language") == ["English", "English"]
    assert page.text("pa-type") == ["Readout", "Speech"]
    assert page.text("pa-removed") == ["removed 2024-06-03"]
    snippets = re.findall(r'<p class="pa-snippet"[^>]*><span class="snippet">(.*?)</span>', page.html)
    assert snippets[0] == "Officials met on Tuesday. The <mark>war</mark> must end. We support 5G 网络 cooperation."
    assert "<mark>war</mark>" in snippets[1] and "software" not in snippets[1]
    # Chinese: the title carries its language; the match is highlighted
    page = Page(client.get("/archive/releases", _search="网络").text)
    assert listed_ids(page) == [1, 3]
    assert '<h2 class="pa-title" lang="zh"><a href="/archive/releases/1">关于网络安全问题的声明</a></h2>' in page.html
    assert "中国政府高度重视<mark>网络</mark>安全。" in page.html
    assert page.text("pa-total") == ["2 releases match 网络."]


def test_csv_and_json_are_exactly_the_listed_results(client):
    for params in ({"_search": "war"}, {"_search": "the OR texte", "_sort": "published"}, {"_search": "网络", "language": "en"}):
        page = Page(client.get("/archive/releases", **params).text)
        shown = listed_ids(page)
        assert shown, params
        export = re.search(r'<p class="pa-export">These results as <a href="([^"]+)">JSON</a> or '
                           r'<a href="([^"]+)">CSV</a>', page.html)
        json_url, csv_url = (link.replace("&amp;", "&") for link in export.groups())
        data = client.get(json_url + ("&" if "?" in json_url else "?") + "_shape=objects").json()
        assert [row["id"] for row in data["rows"]] == shown, params
        rows = list(csv.DictReader(io.StringIO(client.get(csv_url).text)))
        assert [int(row["id"]) for row in rows] == shown, params
        assert [row["title"] for row in rows] == results(page)


def test_facets_count_every_match_and_filter(client):
    page = Page(client.get("/archive/releases", _search="the OR texte").text)
    assert page.text("pa-total") == ["4 releases match the OR texte."]
    facet = page.html[page.html.index('id="facet-language"'):]
    facet = facet[:facet.index("</section>")]
    assert [" ".join(re.sub("<[^>]+>", " ", li).split()) for li in re.findall(r"<li.*?</li>", facet, re.DOTALL)] == [
        "English 3", "French 1"]
    page = Page(client.get("/archive/releases", _search="the OR texte", language="en").text)
    assert page.text("pa-total") == ["3 releases match the OR texte, where language = en ✖."]
    assert len(listed_ids(page)) == 3


def test_orders_newest_oldest_and_best_match(client):
    page = Page(client.get("/archive/releases", _search="the OR texte").text)
    assert listed_ids(page) == [2, 3, 4, 5]
    order = page.html[page.html.index('class="pa-order"'):]
    assert 'aria-current="page">Newest first' in order[:order.index("</nav>")]
    assert "/archive/search?q=the+OR+texte" in page.links
    oldest = Page(client.get("/archive/releases", _search="the OR texte", _sort="published").text)
    assert listed_ids(oldest) == [5, 4, 3, 2]  # undated first, as SQLite sorts NULL
    # best match: the ranked search, exact bm25 (its own tests: tests/test_search.py)
    best = Page(client.get("/archive/search", q="war").text)
    ranked = [row["id"] for row in client.get("/archive/search.json", q="war", _shape="objects").json()["rows"]]
    assert listed_ids(best) == ranked == [3, 4]  # 3 has the word in its title, which counts ten
    assert '<p class="search-total">2 releases match.</p>' in best.html
    assert best.text("pa-type") == ["Readout", "Speech"]
    assert "<mark>war</mark>" in best.html


def test_ranked_search_is_not_a_sql_form(client):
    page = Page(client.get("/archive/search", q="网络").text)
    assert page.title.strip() == "网络: best matches — Press archive of official statements"
    for sql_form in ("Custom SQL query", "Run SQL", "<textarea", "Query parameters"):
        assert sql_form not in page.html
    assert [i["name"] for i in page.inputs if i.get("type") == "search"] == ["q"]
    html = page.html
    assert html.index('class="pa-q"') < html.index('class="search-total"') < html.index('class="pa-results"')
    export = re.search(r'These results, in this order, as <a href="([^"]+)">JSON</a> or <a href="([^"]+)">CSV</a>',
                       html)
    csv_url = export.group(2).replace("&amp;", "&")
    assert [int(r["id"]) for r in csv.DictReader(io.StringIO(client.get(csv_url).text))] == listed_ids(page)
    # the empty page is a search box, not an error
    empty = Page(client.get("/archive/search").text)
    assert [i["name"] for i in empty.inputs if i.get("type") == "search"] == ["q"]
    assert "Run SQL" not in empty.html


def test_column_descriptions_are_off_the_first_screen_and_columns_reachable(client):
    html = client.get("/archive/releases", _search="war").text
    assert "column-descriptions" not in html
    details = html.index('<details class="pa-columns">')
    assert details > html.index('class="pa-results"')
    assert "Normalised address of the release; the upsert key" in html[details:]
    checked = re.findall(r'name="_col" value="(\w+)" id="[^"]+" checked', html)
    assert checked == ["source_id", "title", "published", "language", "statement_type"]
    # the chooser's table: Datasette's, with exactly the asked columns
    html = client.get("/archive/releases?_search=war&_col=title&_col=url").text
    heads = re.findall(r'<th [^>]*data-column="(\w+)"', html)
    assert heads == ["id", "title", "url"]
    assert "Back to the reading list" in html
    other = client.get("/archive/crawl_runs").text  # other tables keep Datasette's page
    assert 'class="pa-results"' not in other and "rows-and-columns" in other


def test_browse_without_a_search_lists_every_release(client):
    page = Page(client.get("/archive/releases").text)
    assert page.text("pa-total") == ["5 releases."]
    assert listed_ids(page) == [2, 1, 3, 4, 5]
    assert page.title.startswith("Releases")


def matching(path: Path, pattern: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("select id, title, text, published from releases").fetchall()
    finally:
        conn.close()
    regex = re.compile(pattern, re.IGNORECASE)
    return [r for r in rows if regex.search(r["title"] or "") or regex.search(r["text"] or "")]


def test_many_matches_on_the_crawled_archive(generated_archive, tmp_path):
    """More matches than a page: the total is exact, the page is the newest 50, its CSV and JSON are
    those 50, and the "every match" stream holds all of them in the same order."""
    copy = tmp_path / "archive.db"
    source = sqlite3.connect(f"file:{generated_archive.path}?mode=ro", uri=True)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    c = Client(copy)
    try:
        truth = matching(copy, r"(?<!\w)sanctions(?!\w)")
        assert len(truth) > 500
        page = Page(c.get("/archive/releases", _search="sanctions").text)
        assert page.text("pa-total") == [f"{len(truth):,} releases match sanctions."]
        newest = sorted(sorted(truth, key=lambda r: r["id"]), key=lambda r: r["published"] or "", reverse=True)
        assert listed_ids(page) == [r["id"] for r in newest[:50]]
        export = re.search(r'These results as <a href="([^"]+)">JSON</a> or <a href="([^"]+)">CSV</a> \(this page\); '
                           r'every match \(([\d,]+)\), in this order, as <a href="([^"]+)">CSV</a> or '
                           r'<a href="([^"]+)">JSON</a>', page.html)
        this_json, csv_url, total, all_csv, all_json = (g.replace("&amp;", "&") for g in export.groups())
        assert total == f"{len(truth):,}"
        assert [r["id"] for r in c.get(this_json + "&_shape=objects").json()["rows"]] == listed_ids(page)
        assert [int(r["id"]) for r in csv.DictReader(io.StringIO(c.get(csv_url).text))] == listed_ids(page)
        every = [int(r["id"]) for r in csv.DictReader(io.StringIO(c.get(all_csv).text))]
        assert every == [r["id"] for r in newest]
        assert [r["id"] for r in c.get(all_json).json()] == every
        assert '<a href="' in page.html and 'rel="next">Next 50 results</a>' in page.html
    finally:
        c.close()
