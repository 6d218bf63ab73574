"""Translations (from the pages' own evidence and the registry), related statements, and the
release page's Family, Translations and Related statements sections.

``tests/sites/translations_site`` mirrors a ministry with English and Chinese news sections
and an embassy on a TRS CMS: an English/Chinese pair linked by ``hreflang``, one by a
language switcher, one whose Chinese page names the English one as canonical, an embassy
pair linked only by the registry's ``translations = { "/eng/" = "/chn/" }``, an English page
whose switcher leads to a French page never archived, and an en-GB / en-US pair pointing at
each other (the same language: no translation). It is served on 127.0.0.1 and crawled by
``python -m crawler crawl`` in a child: first the English sources alone, then everything
(the Chinese side arrives later and is linked then), then again (nothing new).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import textwrap
from pathlib import Path

import pytest
from conftest import run_cli
from lxml import html
from parsel import Selector

from archive.items import ReleaseItem
from archive.related import related, release_terms
from archive.site.serve import make_datasette
from archive.writer import ArchiveWriter
from crawler.sources import Source, SourceError, load_sources
from pipelines.extraction import content_hash, word_count
from pipelines.extraction.alternates import find_alternates

SITE = Path(__file__).parent / "sites" / "translations_site"
T0, T1, T2 = "2024-03-20T10:00:00Z", "2024-03-21T10:00:00Z", "2024-03-22T10:00:00Z"

SOURCES = """
[[sources]]
id = "tr-en"
name = "Ministry of Foreign Affairs of Northland"
country = "GB"
kind = "foreign_ministry"
languages = ["en"]
listings = ["{base}/en/news/index.html"]
article_pattern = '/en/news/\\d+\\.html$'
delay = 0

[[sources]]
id = "tr-zh"
name = "北地国外交部"
country = "GB"
kind = "foreign_ministry"
languages = ["zh"]
listings = ["{base}/zh/news/index.html"]
article_pattern = '/zh/news/\\d+\\.html$'
delay = 0

[[sources]]
id = "tr-embassy-en"
name = "Embassy of Northland"
country = "GB"
kind = "embassy"
languages = ["en"]
listings = ["{base}/eng/xwdt/index.htm"]
article_pattern = '/eng/xwdt/\\d{{6}}/t\\d{{8}}_\\d+\\.htm$'
translations = {{ "/eng/" = "/chn/" }}
delay = 0

[[sources]]
id = "tr-embassy-zh"
name = "北地国大使馆"
country = "GB"
kind = "embassy"
languages = ["zh"]
listings = ["{base}/chn/xwdt/index.htm"]
article_pattern = '/chn/xwdt/\\d{{6}}/t\\d{{8}}_\\d+\\.htm$'
delay = 0
"""

# (English page, Chinese page, evidence): every translation the crawl must link, and no other.
TRANSLATIONS = {
    ("en/news/101.html", "zh/news/201.html", "hreflang"),
    ("en/news/103.html", "zh/news/203.html", "language switcher"),
    ("en/news/106.html", "zh/news/206.html", "canonical"),
    ("eng/xwdt/202403/t20240311_11.htm", "chn/xwdt/202403/t20240311_11.htm", "registry /eng/ -> /chn/"),
}
# What the pages declare (page, declared address, hreflang, evidence): kept whether archived or not.
ALTERNATES = {
    ("en/news/101.html", "zh/news/201.html", "zh-Hans", "hreflang"),
    ("zh/news/201.html", "en/news/101.html", "en", "hreflang"),
    ("en/news/102.html", "fr/news/302.html", "fr", "language switcher"),
    ("en/news/103.html", "zh/news/203.html", "zh", "language switcher"),
    ("zh/news/203.html", "en/news/103.html", "en", "language switcher"),
    ("en/news/104.html", "en/news/105.html", "en-US", "hreflang"),
    ("en/news/105.html", "en/news/104.html", "en-GB", "hreflang"),
    ("zh/news/206.html", "en/news/106.html", None, "canonical"),
}


# --- the crawled archive -------------------------------------------------------------------------


class Crawled:
    def __init__(self, folder: Path, base: str):
        self.folder, self.base, self.path = folder, base, folder / "archive.db"

    def query(self, sql, params=()):
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def ids(self) -> dict[str, int]:
        prefix = len(self.base) + 1
        return {url[prefix:]: i for i, url in self.query("select id, url from releases")}

    def links(self, relation="translation") -> set[tuple[str, str, str]]:
        names = {i: name for name, i in self.ids().items()}
        return {(names[a], names[b], evidence) for a, b, evidence in self.query(
            "select release_id, other_id, evidence from release_links where relation = ?", [relation])}

    def snapshot(self):
        return (self.query("select * from release_links order by release_id, other_id, relation"),
                self.query("select * from release_alternates order by release_id, url"),
                self.query("select * from family_members order by release_id"),
                self.query("select * from families order by id"))


def crawl(folder: Path, when: str, *ids: str):
    result = run_cli(["crawl", "--sources", folder / "sources.toml", "--db", "archive.db", "--log-level", "WARNING",
                      *ids], folder, 180, when=when)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def crawled(tmp_path_factory):
    """The site crawled three times: English sources, everything, everything again. Yields
    (Crawled, links after the first crawl, snapshot after the second crawl)."""
    from crawler.demo.server import SiteServer

    folder = tmp_path_factory.mktemp("translations")
    root = folder / "site"
    shutil.copytree(SITE, root)
    server = SiteServer(root).start()
    try:
        (folder / "sources.toml").write_text(SOURCES.format(base=server.base_url), encoding="utf-8")
        archive = Crawled(folder, server.base_url)
        crawl(folder, T0, "tr-en", "tr-embassy-en")
        english_only = archive.links()
        crawl(folder, T1)
        after_second = archive.snapshot()
        crawl(folder, T2)
        yield archive, english_only, after_second
    finally:
        server.stop()


def test_translations_linked_from_page_evidence_and_registry(crawled):
    archive, english_only, _ = crawled
    assert english_only == set(), "the Chinese pages were not archived yet"
    assert archive.links() == TRANSLATIONS
    rows = archive.query("select release_id < other_id, score from release_links where relation = 'translation'")
    assert rows == [(1, 1.0)] * len(TRANSLATIONS), "stored once per pair, smaller id first, declared (1.0)"


def test_page_evidence_is_kept_even_when_it_leads_nowhere(crawled):
    archive, _, _ = crawled
    names = {i: name for name, i in archive.ids().items()}
    prefix = len(archive.base) + 1
    stored = {(names[i], url[prefix:], hreflang, evidence) for i, url, hreflang, evidence in archive.query(
        "select release_id, url, hreflang, evidence from release_alternates")}
    assert stored == ALTERNATES
    french = archive.query("select count(*) from releases where url like '%/fr/%'")
    assert french == [(0,)], "the French page was never archived: declared, not linked"


def test_same_language_versions_are_not_translations(crawled):
    archive, _, _ = crawled
    pairs = {frozenset(link[:2]) for link in archive.links()}
    assert frozenset({"en/news/104.html", "en/news/105.html"}) not in pairs
    assert not [link for link in archive.links() if "102.html" in link[0] or "t20240312_12" in link[0]]


REPOST = "eng/xwdt/202403/t20240309_14.htm"  # the embassy's repost of en/news/106.html, a day later


def test_translation_families(crawled):
    archive, _, _ = crawled
    ids = archive.ids()
    for english, chinese, _ in TRANSLATIONS:
        reposts = [REPOST] if english == "en/news/106.html" else []
        members = [english, chinese, *reposts]
        family = min(ids[name] for name in members)
        rows = archive.query("select release_id, family_id, relation from family_members "
                             "where family_id = ? order by release_id", [family])
        # the English pages were archived first (the Chinese ones a crawl later): first copies
        assert sorted(rows) == sorted([(ids[english], family, "first"), (ids[chinese], family, "translation"),
                                       *[(ids[name], family, "repost") for name in reposts]])
        assert archive.query(f"select distinct family_id from releases where id in ({', '.join('?' * len(members))})",
                             [ids[name] for name in members]) == [(family,)]
        (row,) = archive.query("select first_release_id, member_count, languages from families where id = ?", [family])
        assert row[:2] == (ids[english], len(members))
        assert json.loads(row[2]) == ["en", "zh"]
    diffs = archive.query("select release_id, diff from family_members where diff is not null")
    assert [release for release, _ in diffs] == [ids[REPOST]], "translations get no text diff"


def test_second_crawl_adds_nothing(crawled):
    archive, _, after_second = crawled
    assert archive.snapshot() == after_second


def test_registry_key_reaches_the_archive(crawled):
    archive, _, _ = crawled
    stored = dict(archive.query("select id, translations from sources"))
    assert json.loads(stored["tr-embassy-en"]) == {"/eng/": "/chn/"}
    assert json.loads(stored["tr-en"]) == {}


# --- the registry key ----------------------------------------------------------------------------

GOOD = """
[[sources]]
id = "demo-a"
name = "Demo A"
country = "CA"
kind = "embassy"
languages = ["en"]
listings = ["http://127.0.0.1:8000/eng/"]
article_pattern = '/eng/\\d+'
"""


def test_translations_key_loads_and_round_trips(tmp_path):
    path = tmp_path / "sources.toml"
    path.write_text(GOOD + 'translations = { "/eng/" = "/chn/", "/en/" = "/zh/" }\n', encoding="utf-8")
    (source,) = load_sources(path)
    assert source.translations == {"/eng/": "/chn/", "/en/": "/zh/"}
    assert Source.from_row(source.as_row()) == source
    path.write_text(GOOD, encoding="utf-8")
    assert load_sources(path)[0].translations == {}


@pytest.mark.parametrize(("value", "problem"), [
    ('"/eng/"', "key 'translations': expected a table"),
    ('{ "/eng/" = 3 }', "key 'translations': '/eng/' = 3: expected a piece of an address in quotes, got int"),
    ('{ "/eng/" = "" }', "key 'translations': '/eng/' = '': each side must be 1 to 200 characters of an address"),
    ('{ "/eng/" = "/eng/" }', "key 'translations': '/eng/' = '/eng/': both sides are the same"),
    ('{ "/eng/" = "/c hn/" }', "key 'translations': '/c hn/' has spaces or control characters"),
])
def test_bad_translations_key_is_one_line_naming_source_and_key(tmp_path, value, problem):
    path = tmp_path / "sources.toml"
    path.write_text(GOOD + f"translations = {value}\n", encoding="utf-8")
    with pytest.raises(SourceError) as error:
        load_sources(path)
    message = str(error.value)
    assert message.startswith(f"{path}: source 'demo-a': ") and problem in message
    assert "\n" not in message
    result = run_cli(["sources", "--sources", path], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"Error: {message}"]


# --- evidence in markup --------------------------------------------------------------------------

PAGE = "http://example.org/en/news/7.html"


def alternates(body: str, canonical=None) -> list[tuple]:
    tree = html.fromstring(f"<html><head>{body}</head><body>{body}</body></html>")
    return [(a["url"], a["hreflang"], a["evidence"]) for a in find_alternates(tree, PAGE, canonical)]


@pytest.mark.parametrize(("markup", "expected"), [
    # hreflang in the head: relative addresses resolved and normalised, x-default and the page itself skipped
    (('<link rel="alternate" hreflang="zh-Hans" href="../../zh/news/7.html#top">'
      '<link rel="alternate" hreflang="x-default" href="/en/news/7.html"><link rel="alternate" hreflang="en" href="7.html">'),
     [("http://example.org/zh/news/7.html", "zh-Hans", "hreflang")]),
    # a marked switcher: names, codes and the current page
    ('<div class="language-selector"><a href="/en/news/7.html">EN</a><a href="/fr/news/7.html">FR</a></div>',
     [("http://example.org/fr/news/7.html", "fr", "language switcher")]),
    # an unmarked list naming two languages
    ('<ul><li><a href="/es/7">Español</a></li><li><a href="/en/news/7.html">English</a></li></ul>',
     [("http://example.org/es/7", "es", "language switcher")]),
    # codes in an unmarked list are not language names
    ('<p><a href="/fr/7">FR</a> <a href="/de/7">DE</a></p>', []),
    # a lone "中文" in the main menu: the other language's home page, no switcher
    ('<nav><ul><li><a href="/">Home</a></li><li><a href="/news/">News</a></li><li><a href="/zh/">中文</a></li></ul></nav>',
     []),
    # ... unless the link says which language it leads to
    ('<nav><a href="/">Home</a> <a href="/news/">News</a> <a href="/zh/7" hreflang="zh">中文</a></nav>',
     [("http://example.org/zh/7", "zh", "language switcher")]),
    # not followable
    ('<div class="lang"><a href="javascript:void(0)">中文</a><a href="#zh">English</a></div>', []),
])
def test_alternates_found_in_markup(markup, expected):
    assert alternates(markup) == expected


def test_canonical_elsewhere_is_evidence_and_own_canonical_is_not():
    assert alternates("", canonical="/en/news/1.html") == [("http://example.org/en/news/1.html", None, "canonical")]
    assert alternates("", canonical=PAGE) == []


# --- related statements ----------------------------------------------------------------------------

FILLER = "The ministry said that the government will continue to work closely with its partners on these issues."


def item(source_id: str, n: int, published: str, words: str) -> ReleaseItem:
    text = f"{FILLER}\n{words}."
    release = ReleaseItem(source_id=source_id, url=f"http://127.0.0.1/{source_id}/{n}.html",
                          fetched_url=f"http://127.0.0.1/{source_id}/{n}.html", http_status=200,
                          content_type="text/html", http_charset="utf-8", fetched_at="2024-04-01T00:00:00Z")
    release.title, release.text, release.published, release.language = "Statement on cooperation", text, published, "en"
    release.content_hash, release.word_count = content_hash(text), word_count(text)
    return release


# name -> (source, published, its subject words). X is the release asked about (source a, 10 March).
RELATED_ARCHIVE = {
    "X": ("a", "2024-03-10", "desalination aquifer glacier moraine"),
    "Y": ("b", "2024-03-20", "desalination aquifer glacier"),  # 3 shared
    "T": ("d", "2024-02-26", "glacier moraine"),  # 2 shared, 13 days before
    "V": ("c", "2024-03-24", "desalination aquifer"),  # 2 shared, 14 days after (the window's edge)
    "Z": ("a", "2024-03-10", "desalination aquifer glacier moraine"),  # same source as X
    "W": ("c", "2024-03-25", "desalination aquifer glacier moraine"),  # 15 days after
    "U": ("b", "2024-02-25", "moraine tundra"),  # 1 shared
    **{f"F{n}": (f"f{n}", f"2024-03-{10 + n:02d}", "harbour") for n in range(1, 9)},  # the window's common words
}


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory):
    path = tmp_path_factory.mktemp("related") / "archive.db"
    writer = ArchiveWriter(path, background_checkpoints=False)
    names = list(RELATED_ARCHIVE)
    writer.write([item(source, n, published, words)
                  for n, (source, published, words) in enumerate(RELATED_ARCHIVE.values())])
    writer.close()
    conn = sqlite3.connect(path)
    ids = {names[n]: i for n, i in enumerate(i for (i,) in conn.execute("select id from releases order by id"))}
    yield conn, ids
    conn.close()


def test_related_exact_list(small_archive):
    conn, ids = small_archive
    names = {i: name for name, i in ids.items()}
    found = related(conn, ids["X"])
    # df in X's window (25 February - 24 March: X Y T V Z U F1-F8, 14 releases): each subject word 4,
    # so equal weights; Y shares 3, T and V 2 each (T is closer), U 1 (too few), Z is X's own source.
    assert [names[r.id] for r in found] == ["Y", "T", "V"]
    assert [r.terms for r in found] == [("aquifer", "desalination", "glacier"), ("glacier", "moraine"),
                                        ("aquifer", "desalination")]
    assert found[0].score > found[1].score == found[2].score
    assert [r.source_id for r in found] == ["b", "d", "c"]
    assert [names[r.id] for r in related(conn, ids["X"], limit=1)] == ["Y"]
    assert related(conn, ids["X"], days=9) == [], "Y is 10 days away, T 13, V 14"


def test_related_needs_a_date_and_other_sources(small_archive):
    conn, ids = small_archive
    assert related(conn, 10**6) == []
    conn.execute("update releases set published = null where id = ?", [ids["U"]])
    try:
        assert related(conn, ids["U"]) == []
    finally:
        conn.rollback()
    found = {r.id for r in related(conn, ids["Z"])}
    assert ids["X"] not in found and ids["Z"] not in found


def test_release_terms_follow_the_index():
    assert release_terms("Café in 2024", "the CAFÉ's 知识产权 a") == ["cafe", "in", "the", "知识", "识产", "产权"]


# --- the release page ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(crawled):
    archive = crawled[0]
    ds = make_datasette(archive.path)
    loop = asyncio.new_event_loop()

    def get(name) -> Selector:
        response = loop.run_until_complete(ds.client.get(f"/archive/releases/{archive.ids()[name]}"))
        assert response.status_code == 200, response.text[:2000]
        return Selector(text=response.text)

    yield get
    loop.close()


def text_of(selection) -> str:
    return " ".join("".join(selection.css("::text").getall()).split())


def test_release_page_lists_family_translations_and_related(page, crawled):
    archive = crawled[0]
    ids = archive.ids()
    english = page("en/news/101.html")
    members = english.css("#family ol.family > li")
    assert [text_of(m.css(".family-relation")) for m in members] == ["First copy", "Translation"]
    assert text_of(members[0]).startswith("First copy: Foreign Minister meets the Southland delegation on fisheries "
                                          "(this release) Ministry of Foreign Affairs of Northland, English, 4 March 2024")
    assert members[1].css("a::attr(href)").get() == f"/archive/releases/{ids['zh/news/201.html']}"
    assert members[1].css("a::attr(lang)").get() == "zh"
    assert "北地国外交部, Chinese, 4 March 2024" in text_of(members[1])
    (translation,) = english.css("#translations ul.translations li")
    assert translation.css("a::text").get() == "外交大臣会见南地国渔业代表团"
    assert text_of(translation).endswith("北地国外交部, 4 March 2024; evidence: hreflang")
    related_links = english.css("#related ol.related a::attr(href)").getall()
    conn = sqlite3.connect(archive.path)
    try:
        expected = [f"/archive/releases/{r.id}" for r in related(conn, ids["en/news/101.html"])]
    finally:
        conn.close()
    assert related_links == expected
    assert related_links[0] == f"/archive/releases/{ids['eng/xwdt/202403/t20240311_13.htm']}", \
        "the embassy's note on the same fisheries meeting, a week later"
    chinese = page("chn/xwdt/202403/t20240311_11.htm")
    assert text_of(chinese.css("#translations li")).endswith("evidence: registry /eng/ -> /chn/")


def test_release_page_family_shows_the_reposts_diff_against_the_first_copy(page, crawled):
    ids = crawled[0].ids()
    english = page("en/news/106.html")
    members = english.css("#family ol.family > li")
    assert [text_of(m.css(".family-relation")) for m in members] == ["First copy", "Translation", "Repost"]
    assert [m.css("a::attr(href)").get() for m in members[1:]] == [
        f"/archive/releases/{ids['zh/news/206.html']}", f"/archive/releases/{ids[REPOST]}"]
    assert "Embassy of Northland, English, 9 March 2024, Jaccard similarity to the first copy 0." in text_of(members[2])
    assert not members[1].css(".family-diff"), "a translation has no word diff"
    diff = members[2].css(".family-diff .diff")
    assert diff.css(".diff-added ins::text").getall() == [
        "The following statement was issued by the Ministry of Foreign Affairs on 8 March.", "three"]
    assert diff.css(".diff-removed del::text").getall() == ["two"]
    intro = text_of(english.css("#family > p"))
    family_id = min(ids[name] for name in ("en/news/106.html", "zh/news/206.html", REPOST))  # (crawl order)
    assert intro.startswith("This statement is one of 3 copies and language versions in the archive (family "
                            f"{family_id}). The first copy was published on 8 March 2024 by "
                            "Ministry of Foreign Affairs of Northland.")
    repost = page(REPOST)
    assert [text_of(m.css(".family-relation")) for m in repost.css("#family ol.family > li")] == \
        ["First copy", "Translation", "Repost"]
    assert repost.css("#family li.family-this .family-here::text").get() == "(this release)"


def test_release_page_without_family_or_translation_says_so(page):
    lonely = page("eng/xwdt/202403/t20240312_12.htm")
    assert text_of(lonely.css("#family p")) == "No repost or translation of this release is in the archive."
    assert text_of(lonely.css("#translations p")) == ("No translation of this release is in the archive: no archived "
                                                      "page and no registry entry declares one.")


def test_sources_fixture_is_valid(tmp_path):
    path = tmp_path / "sources.toml"
    path.write_text(textwrap.dedent(SOURCES.format(base="http://127.0.0.1:1")), encoding="utf-8")
    assert [s.id for s in load_sources(path)] == ["tr-en", "tr-zh", "tr-embassy-en", "tr-embassy-zh"]


# --- the demo --------------------------------------------------------------------------------------


def test_demo_canada_statement_relates_to_the_embassy_remarks_and_their_translation(tmp_path, demo_sources):
    result = run_cli(["crawl", "--sources", demo_sources, "--db", "archive.db", "--log-level", "WARNING"], tmp_path,
                     180, when="2017-07-01T10:00:00Z")
    assert result.returncode == 0, result.stderr[-3000:]
    conn = sqlite3.connect(tmp_path / "archive.db")
    try:
        def release(like):
            (found,) = conn.execute("select id from releases where url like ?", [like]).fetchall()
            return found[0]

        canada = release("%/canada-china-high-level-national-security-and-rule-of-law-dialogue.html")
        english, chinese = release("%/eng/sgxw/201706/t20170623_1234567.htm"), release("%/chn/sgxw/201706/t20170623_1234568.htm")
        assert [r.id for r in related(conn, canada)][:1] == [english]
        assert {"cyber", "theft", "intellectual", "property"} <= set(release_terms(*conn.execute(
            "select title, text from releases where id = ?", [canada]).fetchone()))
        assert conn.execute("select release_id, other_id, evidence from release_links where relation = 'translation'"
                            ).fetchall() == [(min(english, chinese), max(english, chinese), "hreflang")]
    finally:
        conn.close()
    ds = make_datasette(tmp_path / "archive.db")
    loop = asyncio.new_event_loop()
    try:
        response = loop.run_until_complete(ds.client.get(f"/archive/releases/{canada}"))
    finally:
        loop.close()
    assert response.status_code == 200
    first = Selector(text=response.text).css("#related ol.related > li")[0]
    assert first.css("a::attr(href)").getall() == [f"/archive/releases/{english}", f"/archive/releases/{chinese}"]
    assert text_of(first.css(".related-translations")) == \
        "Translation: 驻加拿大使馆发言人就首轮中加高级别国家安全与法治对话答记者问 (Chinese)"
    assert first.css(".related-translations a::attr(lang)").get() == "zh"
