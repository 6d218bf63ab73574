"""Searching and reading the archive through Datasette's JSON API, in-process.

Each test builds a real archive file (``open_archive`` + releases rows +
``index_releases``) and talks to it through ``datasette.client`` as served by
``archive.site.serve.make_datasette``.
"""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from click.testing import CliRunner

from archive.schema import open_archive
from archive.search_index import ensure_search, index_releases, rewrite_query
from archive.site.serve import make_datasette
from crawler.cli.serve import serve_command

RELEASES = [
    # id, source_id, country, language, published, title, text
    (1, "mfa_cn", "cn", "zh", "2024-05-01", "关于网络安全的声明",
     "中国政府高度重视网络安全。\n加强知识产权保护，维护WTO规则。"),
    (2, "state_us", "us", "en", "2024-06-01", "Statement on software exports",
     "The software industry depends on intellectual property rights."),
    (3, "state_us", "us", "en", "2023-01-01", "War in the region",
     "The war must end.\nWe support 5G 网络 cooperation with partners."),
    (4, "mofa_jp", "jp", "ja", "2022-03-03", "外務大臣談話",
     "日本政府は、地域の平和と安定を重視しています。"),
    (5, "mofa_kr", "kr", "ko", "2021-02-02", "대변인 논평",
     "정부는 한반도 평화를 위해 노력하고 있습니다."),
    (6, "mfa_cn", "cn", "zh", "2020-01-01", "知识和产权",
     "本文提到知识，也提到产权，但没有那个四字词。"),
    (7, "state_us", "us", "en", "2019-07-04", "Unsafe <b>markup</b>",
     'Archived page said <script>alert("x")</script> and <img src=x onerror=alert(1)>.'),
]


def add_releases(db, rows):
    with db.conn:
        db["releases"].insert_all(
            {
                "id": rid, "source_id": source, "country": country, "kind": "ministry",
                "language": language, "published": published, "year": int(published[:4]),
                "title": title, "text": text, "url": f"https://example.org/{rid}",
            }
            for rid, source, country, language, published, title, text in rows
        )
        index_releases(db, [row[0] for row in rows])


@pytest.fixture
def archive(tmp_path):
    path = tmp_path / "archive.db"
    db = open_archive(path)
    ensure_search(db)
    add_releases(db, RELEASES)
    yield path, db
    db.close()


@pytest.fixture
def client(archive):
    """``get(path, **params)`` -> (status, JSON) through an in-process Datasette."""
    ds = make_datasette(archive[0])
    loop = asyncio.new_event_loop()

    def get(path, **params):
        response = loop.run_until_complete(ds.client.get(path, params=params))
        return response.status_code, response

    yield get
    loop.close()


def found(client, q, **params) -> list[int]:
    status, response = client("/archive/releases.json", _search=q, _shape="objects", **params)
    assert status == 200, response.text
    return sorted(row["id"] for row in response.json()["rows"])


def test_releases_newest_first_with_facets(client):
    status, response = client("/archive/releases.json", _shape="objects")
    data = response.json()
    assert status == 200
    assert [row["id"] for row in data["rows"]] == [2, 1, 3, 4, 5, 6, 7]
    assert set(data["facet_results"]) == {"source_id", "country", "kind", "language", "year", "statement_type"}
    languages = {f["value"]: f["count"] for f in data["facet_results"]["language"]["results"]}
    assert languages == {"zh": 2, "en": 3, "ja": 1, "ko": 1}
    assert "releases_fts" not in [t["name"] for t in client("/archive.json")[1].json()["tables"] if not t["hidden"]]


def test_english_words_keep_word_semantics(client):
    assert found(client, "war") == [3]  # not "software"
    assert found(client, "software") == [2]
    assert found(client, "WAR") == [3]
    assert found(client, "war cooperation") == [3]
    assert found(client, "war software") == []
    assert found(client, "war OR software") == [2, 3]
    assert found(client, "soft*") == [2]
    assert found(client, "the -war") == [2]


def test_english_phrases(client):
    assert found(client, '"intellectual property"') == [2]
    assert found(client, '"property intellectual"') == []


def test_chinese_two_character_word(client):
    assert found(client, "网络") == [1, 3]


def test_chinese_four_character_string(client):
    assert found(client, "知识产权") == [1]  # release 6 has the characters, not the word
    assert found(client, "知识") == [1, 6]
    assert found(client, '"知识产权 保护"') == [1]


def test_single_chinese_character(client):
    assert found(client, "权") == [1, 6]


def test_mixed_chinese_and_english(client):
    assert found(client, "5G 网络") == [3]
    assert found(client, "WTO规则") == [1]
    assert found(client, "wto 规则") == [1]
    assert found(client, "网络 war") == [3]


def test_japanese_and_korean(client):
    assert found(client, "政府") == [1, 4]
    assert found(client, "平和") == [4]
    assert found(client, "정부") == [5]  # inside 정부는
    assert found(client, "평화") == [5]


def test_nothing_searchable_finds_nothing(client):
    assert found(client, "!!!") == []
    assert found(client, '"') == []


def test_search_with_facet_filter(client):
    assert found(client, "网络", language="en") == [3]
    assert found(client, "网络", country="cn") == [1]
    status, response = client("/archive/releases.json", _search="网络", _facet="source_id")
    assert status == 200


def plugin_module():
    from datasette.plugins import pm

    return next(p for p in pm.get_plugins() if getattr(p, "LITERAL_IDS_MAX", None) is not None)


def table(client, **params):
    status, response = client("/archive/releases.json", _shape="objects", _facet_size="max", **params)
    assert status == 200, response.text
    data = response.json()
    facets = {name: {str(v["value"]): v["count"] for v in f["results"]}
              for name, f in data["facet_results"].items()}
    return data, facets


def every_page(client, **params) -> list[int]:
    """Follow ``next`` to the end, one release a page."""
    ids, after = [], None
    while True:
        extra = {"_next": after} if after else {}
        status, response = client("/archive/releases.json", _shape="objects", _size=1, **params, **extra)
        assert status == 200, response.text
        data = response.json()
        ids += [row["id"] for row in data["rows"]]
        after = data["next"]
        if not after:
            return ids


@pytest.mark.parametrize("literal_max", [2000, 0], ids=["ids-in-sql", "index-in-sql"])
def test_search_counts_facets_and_pages_every_match(archive, client, monkeypatch, literal_max):
    """Count, facets and pages over all matches, in both forms the page's SQL takes.

    The plugin answers Datasette's count and facet SQL from its arrays; the
    same request with a ``_where`` it does not answer runs plain SQL in SQLite:
    both must agree, for every facet filter and sort. With ``literal_max`` 0
    the page is cut from the matches by the plugin (date order) or read
    through the index query (other orders).
    """
    monkeypatch.setattr(plugin_module(), "LITERAL_IDS_MAX", literal_max)
    _, db = archive
    # Ties on the date, and releases without one: pages must neither skip nor repeat them.
    add_releases(db, [(40 + i, "state_us", "us", "en", "2023-01-01", f"Tie {i}", "The tie.") for i in range(3)])
    with db.conn:
        db["releases"].insert_all({"id": 50 + i, "source_id": "state_us", "language": "en", "title": "Undated",
                                   "text": "The date is unknown.", "url": f"https://example.org/u{i}"}
                                  for i in range(2))
        index_releases(db, [50, 51])
    for q, filters in [("the", {}), ("网络", {}), ("the", {"language": "en"}), ("网络", {"country": "cn"}),
                       ("政府", {"year": "2022"}), ("the", {"statement_type": "other"}), ("the", {"year": "x"})]:
        answered = dict(plugin_module().ANSWERED)
        data, facets = table(client, _search=q, **filters)
        after = dict(plugin_module().ANSWERED)
        # the count and all six facets came from the plugin's arrays, not from SQL over release rows
        # ("year=x" is left to SQLite: it converts such text its own way)
        answerable = filters.get("year") != "x"
        assert after.get("count", 0) == answered.get("count", 0) + answerable
        assert after.get("facet", 0) == answered.get("facet", 0) + 6 * answerable
        truth, truth_facets = table(client, _search=q, _where="1 = 1", **filters)
        assert dict(plugin_module().ANSWERED) == after  # plain SQL
        assert data["filtered_table_rows_count"] == truth["filtered_table_rows_count"], (q, filters)
        assert facets == truth_facets, (q, filters)
        assert [r["id"] for r in data["rows"]] == [r["id"] for r in truth["rows"]]
        for sort in ({}, {"_sort": "title"}, {"_sort_desc": "published"}, {"_sort": "id"}):
            pages = every_page(client, _search=q, **filters, **sort)
            assert len(pages) == len(set(pages)) == data["filtered_table_rows_count"], (q, filters, sort)
            assert sorted(pages) == sorted(r["id"] for r in truth["rows"])
    data, facets = table(client, _search="the")
    assert data["filtered_table_rows_count"] == 7  # releases 2 and 3, the three ties, two undated
    assert facets["source_id"] == {"state_us": 7} and facets["year"] == {"2024": 1, "2023": 4}
    assert every_page(client, _search="the") == [2, 3, 40, 41, 42, 50, 51]
    assert every_page(client, _search="the", _sort="published") == [50, 51, 3, 40, 41, 42, 2]
    status, response = client("/archive/releases", _search="the", _size=2)
    assert status == 200 and "<strong>7</strong> releases match <q>the</q>" in response.text
    data, facets = table(client, _search="the", language="zh")
    assert data["filtered_table_rows_count"] == 0 and facets["language"] == {}


def test_facet_on_another_column_is_plain_sql(client, monkeypatch):
    """A facet the plugin keeps no arrays for is counted by SQLite, over every match."""
    monkeypatch.setattr(plugin_module(), "LITERAL_IDS_MAX", 0)
    data, facets = table(client, _search="网络 OR the", _facet="date_source")
    assert data["filtered_table_rows_count"] == 3
    assert sum(facets.get("date_source", {}).values()) == 0  # no release here has a date_source
    status, response = client("/archive/releases.json", _search="网络 OR the", _facet_date="published")
    dates = {v["value"]: v["count"] for v in response.json()["facet_results"]["published"]["results"]}
    assert dates == {"2024-06-01": 1, "2024-05-01": 1, "2023-01-01": 1}
    data, facets = table(client, _search="网络 OR the", _facet="url")
    assert sorted(facets["url"]) == ["https://example.org/1", "https://example.org/2", "https://example.org/3"]


def test_older_index_format_is_rebuilt_while_served(archive, client):
    """An archive indexed by an older version is re-indexed (bm25 lengths, facet log) and a
    running site notices the new log instead of reading on from the old one's position."""
    path, db = archive
    data, facets = table(client, _search="the")  # the site has read the log
    with db.conn:
        db.execute("update _pressarchive set value = '1' where key = 'search_version'")
        db["releases"].update(2, {"language": "ko"})
    ensure_search(db)
    assert db.execute("select count(*), count(distinct release_id) from release_facets").fetchone() == (7, 7)
    data, facets = table(client, _search="the")
    assert data["filtered_table_rows_count"] == 2 and facets["language"] == {"ko": 1, "en": 1}
    assert found(client, "网络") == [1, 3]


def test_a_forgotten_page_plan_is_refused_not_counted(client, monkeypatch):
    """A page cut by the plugin has a WHERE holding only that page: if its plan is gone (many
    searches at once), Datasette's count must fail loudly rather than count the page."""
    plugin = plugin_module()
    monkeypatch.setattr(plugin, "LITERAL_IDS_MAX", 0)
    remember = plugin._remember

    def forget(plan):
        token = remember(plan)
        plugin.PLANS.pop(token)
        return token

    monkeypatch.setattr(plugin, "_remember", forget)
    status, response = client("/archive/releases.json", _search="the")
    assert status == 500 and "too many searches at once" in response.text


def test_csv_stream_lists_every_match(client, monkeypatch):
    import csv
    import io

    monkeypatch.setattr(plugin_module(), "LITERAL_IDS_MAX", 0)
    status, response = client("/archive/releases.csv", _search="网络 OR the OR 政府", _stream="on", _size=1)
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert sorted(int(r["id"]) for r in rows) == [1, 2, 3, 4]


def test_json_stream_lists_every_match(client, monkeypatch):
    import json

    monkeypatch.setattr(plugin_module(), "LITERAL_IDS_MAX", 0)
    status, response = client("/archive/releases.json", _search="网络 OR the OR 政府", _stream="on")
    assert status == 200 and response.headers["content-type"].startswith("application/json")
    assert sorted(row["id"] for row in json.loads(response.text)) == [1, 2, 3, 4]
    status, response = client("/archive/releases.json", _search="网络", _stream="on", _nl="on")
    assert [json.loads(line)["id"] for line in response.text.splitlines()] == [1, 3]
    status, response = client("/archive/releases.json", _search="nothingmatches", _stream="on")
    assert status == 200 and json.loads(response.text) == []
    status, response = client("/archive/nosuchtable.json", _stream="on")
    assert status == 404


def test_search_facets_follow_an_edit(archive, client):
    """The facet arrays read only what changed since: a changed language moves the count."""
    _, db = archive
    data, facets = table(client, _search="网络")
    assert facets["language"] == {"zh": 1, "en": 1}
    with db.conn:
        db["releases"].update(3, {"language": "zh"})
        index_releases(db, [3])
    data, facets = table(client, _search="网络")
    assert facets["language"] == {"zh": 2}
    add_releases(db, [(8, "mfa_cn", "cn", "ko", "2025-01-01", "새 성명", "网络 협력")])
    data, facets = table(client, _search="网络")
    assert facets["language"] == {"zh": 2, "ko": 1} and data["filtered_table_rows_count"] == 3


def test_canned_search_ranks_and_highlights(client):
    status, response = client("/archive/search.json", q="知识产权", _shape="objects")
    rows = response.json()["rows"]
    assert status == 200
    assert [row["id"] for row in rows] == [1]
    assert "⟦知识产权⟧" in rows[0]["snippet"]
    status, response = client("/archive/search.json", q="war", _shape="objects")
    assert [row["id"] for row in response.json()["rows"]] == [3]
    assert "⟦war⟧" in response.json()["rows"][0]["snippet"]
    assert "software" not in response.json()["rows"][0]["snippet"]
    status, response = client("/archive/search", q="网络")
    assert "<mark>网络</mark>" in response.text
    assert '<p class="search-total">2 releases match.</p>' in response.text
    status, response = client("/archive/search", q="知识产权")
    assert '<p class="search-total">1 release matches.</p>' in response.text
    status, response = client("/archive/search.json", q="", _shape="objects")
    assert status == 200 and response.json()["rows"] == []


@pytest.mark.parametrize("halves", [False, True], ids=["one-pass", "two-halves"])
def test_canned_search_ranks_by_relevance_not_date(archive, client, monkeypatch, halves):
    """BM25: how often the word occurs for the text's length, a title hit counting ten; never substrings.

    On a large index the plugin scores two halves of it at once: the ranking must be the same.
    """
    if halves:
        monkeypatch.setattr(plugin_module(), "RANK_SPLIT_MIN", 1)
        monkeypatch.setattr(plugin_module(), "RANK_SPLITS", {})
    path, db = archive
    filler = " ".join(["The delegation discussed trade and investment."] * 12)
    add_releases(db, [
        (20, "gov_ca", "ca", "en", "2010-01-01", "Sanctions on arms exports", "Short note. " + filler),
        (21, "gov_ca", "ca", "en", "2011-01-01", "Readout", "Sanctions, sanctions and again sanctions."),
        (22, "gov_ca", "ca", "en", "2024-12-01", "Readout of a call", filler + " It also touched on sanctions."),
        (23, "gov_ca", "ca", "en", "2024-12-02", "Trade mission",
         "Sanctionsregime sanctionsless presanctions: substrings only. " + filler + " One mention: sanctions."),
    ])
    status, response = client("/archive/search.json", q="sanctions", _shape="objects")
    assert status == 200
    # 21: three times in a short text; 20: in the title of a long one; 22 and 23: once each, 23 in a
    # longer text (its "Sanctionsregime", "presanctions" are not the word). Newest (22, 23) come last.
    assert [row["id"] for row in response.json()["rows"]] == [21, 20, 22, 23]
    # Chinese: the string occurring more often in a shorter text ranks first, whatever the date.
    add_releases(db, [
        (30, "mfa_cn", "cn", "zh", "2009-01-01", "声明", "气候变化。应对气候变化。气候变化合作。"),
        (31, "mfa_cn", "cn", "zh", "2024-11-11", "声明", "各方讨论了很多问题，" * 20 + "包括气候变化。"),
    ])
    status, response = client("/archive/search.json", q="气候变化", _shape="objects")
    assert [row["id"] for row in response.json()["rows"]] == [30, 31]


def test_html_in_archived_text_is_inert(client):
    status, response = client("/archive/releases/7")
    assert status == 200
    assert "<script>alert" not in response.text
    assert "&lt;script&gt;alert" in response.text
    assert "<img src=x" not in response.text
    assert "<b>markup</b>" not in response.text
    status, response = client("/archive/search", q="archived")
    assert "<script>alert" not in response.text and "&lt;script&gt;" in response.text
    status, response = client("/archive/releases", _search="archived")
    assert "<script>alert" not in response.text


def test_text_shown_as_paragraphs_and_url_as_link(client):
    status, response = client("/archive/releases/3")
    assert "<p>The war must end.</p>" in response.text
    assert '<a href="https://example.org/3"' in response.text


def test_served_archive_is_read_only(archive, client):
    path, _ = archive
    for sql in ("insert into releases (id, url) values (99, 'x')", "delete from releases"):
        status, response = client("/archive.json", sql=sql)
        assert status == 400
    ds = make_datasette(path)
    with pytest.raises(sqlite3.OperationalError):
        asyncio.run(ds.get_database("archive").execute_write("delete from releases"))
    assert sqlite3.connect(path).execute("select count(*) from releases").fetchone()[0] == len(RELEASES)


def test_reading_while_a_crawl_writes(archive, client):
    path, _ = archive
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("begin immediate")
    writer.execute("update releases set title = 'changing' where id = 1")
    try:
        assert found(client, "网络") == [1, 3]  # no "database is locked"
        status, response = client("/archive/releases/1.json", _shape="objects")
        assert status == 200 and response.json()["rows"][0]["title"] == "关于网络安全的声明"
    finally:
        writer.execute("rollback")
        writer.close()
    db = open_archive(path)
    add_releases(db, [(8, "mfa_cn", "cn", "zh", "2025-01-01", "新声明", "网络空间合作。")])
    assert found(client, "网络") == [1, 3, 8]


def test_updates_leave_no_stale_tokens(archive, client):
    _, db = archive
    with db.conn:
        db["releases"].update(3, {"text": "Peace talks resume.", "published": "2025-02-02"})
        db["releases"].upsert({"id": 2, "title": "Statement on hardware"}, pk="id")
        index_releases(db, [3, 2])
    assert found(client, "war") == [3]  # still in the title
    assert found(client, "cooperation") == []
    assert found(client, "peace") == [3]
    assert found(client, "exports") == []
    assert found(client, "hardware") == [2]
    assert found(client, "software") == [2]  # still in its text
    status, response = client("/archive/search.json", q="peace", _shape="objects")
    assert response.json()["rows"][0]["published"] == "2025-02-02"


def test_ensure_search_catches_up_on_unindexed_changes(archive, client):
    path, db = archive
    with db.conn:  # a writer that never calls index_releases
        db["releases"].insert({"id": 9, "title": "Late", "text": "数字经济", "url": "u9"})
        db["releases"].update(1, {"text": "全新内容"})
        db["releases"].delete(4)
    ensure_search(db)
    assert found(client, "经济") == [9]
    assert found(client, "网络") == [1, 3]  # title of 1 still says 网络
    assert found(client, "知识产权") == []
    assert found(client, "政府") == []
    ensure_search(db)  # idempotent
    assert found(client, "内容") == [1]


def test_insert_or_replace_is_reindexed(archive, client):
    _, db = archive
    with db.conn:
        db["releases"].insert(
            {"id": 3, "title": "Replaced", "text": "Entirely new words.", "url": "https://example.org/3"},
            replace=True,
        )
        index_releases(db, [3])
    assert found(client, "war") == []
    assert found(client, "entirely") == [3]


def test_rewrite_query():
    assert rewrite_query("war") == '"war"'
    assert rewrite_query("网络") == '"网络"'
    assert rewrite_query("知识产权") == '"知识 识产 产权"'
    assert rewrite_query('a OR b -c') == '("a" OR "b") NOT "c"'
    assert rewrite_query('a b -c -d') == '("a" AND "b") NOT "c" NOT "d"'
    assert rewrite_query("") is None


def test_serve_without_archive_is_one_line_error(tmp_path):
    result = CliRunner().invoke(serve_command, ["--db", str(tmp_path / "missing.db")])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "missing.db" in result.output
