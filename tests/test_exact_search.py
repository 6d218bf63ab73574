"""Search is exact on an archive-sized archive made by a real crawl.

The archive is ``generated_archive`` (tests/conftest.py): the ~2,400 releases of the
four sites of ``tests/gensite.py``, served on 127.0.0.1 and crawled by
``pressarchive crawl``. Each query below matches more than 500 releases (the old
table search listed only the newest 500).

The truth is computed from the archive's own ``releases`` rows with Python (never
from the search index): English words as whole words, any case; a phrase as its
words with only non-word characters between them; Chinese as a substring after
NFKC. Title and text are matched each on its own, as the index keeps them apart.
Everything is asked of a real in-process Datasette (``archive.site.serve.make_datasette``).

Contract checked, for each query:

- ``filtered_table_rows_count`` is the exact number of matching releases;
- every facet (source_id, country, kind, language, year, statement_type) counts all matches;
- following ``next`` lists every match once, newest first (also with a facet filter,
  and with ``_sort=title``);
- ``releases.csv?_search=...&_stream=on`` and ``releases.json?..._stream=on`` (the plugin's:
  Datasette 0.65 streams only CSV) have every match, and so do ``next`` pages of 50 and of
  ``_size=max``;
- the ranked ``search`` query ranks all matches (the old dense statement of 2017 is
  first although ~1,000 newer releases match), lists the best 50, and its HTML page
  shows the total of matching releases in ``.search-total``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import sqlite3
import unicodedata
from collections import Counter
from html.parser import HTMLParser
from urllib.parse import urlsplit

import gensite
import pytest

from archive.site.serve import make_datasette

FACETS = ("source_id", "country", "kind", "language", "year", "statement_type")
MIN_MATCHES = 500  # the old table search's limit: every query here must exceed it
RANKED_QUERY = "China Canada cyber theft intellectual property"


# --- the truth, from the rows --------------------------------------------------------------

def nfkc(value: str | None) -> str:
    return unicodedata.normalize("NFKC", value or "")


def english(*words: str):
    """Whole words (a phrase: the words with only non-word characters between), any case."""
    pattern = re.compile(r"(?<!\w)" + r"\W+".join(map(re.escape, words)) + r"(?!\w)", re.IGNORECASE)
    return lambda field: bool(pattern.search(nfkc(field)))


def chinese(string: str):
    return lambda field: string in nfkc(field)


def all_of(*tests):
    """Every term in the title or the text (each term may be in either)."""
    return lambda row: all(test(row["title"]) or test(row["text"]) for test in tests)


def one(test):
    return all_of(test)


QUERIES = {
    # id: (what is typed, truth)
    "word": ("sanctions", one(english("sanctions"))),
    "chinese": ("网络", one(chinese("网络"))),
    "phrase": ('"intellectual property"', one(english("intellectual", "property"))),
}
RANKED_TRUTH = all_of(*(english(w) for w in RANKED_QUERY.split()))


@pytest.fixture(scope="module")
def rows(generated_archive) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{generated_archive.path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(
            "select id, url, source_id, country, kind, language, year, statement_type, published, title, text "
            "from releases"
        ).fetchall()
    finally:
        conn.close()


def newest_first(matches) -> list[int]:
    """Datasette's order for ``sort_desc: published``: published descending, then id."""
    by_id = sorted(matches, key=lambda r: r["id"])
    return [r["id"] for r in sorted(by_id, key=lambda r: r["published"], reverse=True)]  # stable


def by_title(matches) -> list[int]:
    """Datasette's order for ``_sort=title``: title (binary, i.e. code point order), then id."""
    return [r["id"] for r in sorted(matches, key=lambda r: (r["title"], r["id"]))]


@pytest.fixture(scope="module")
def truth(rows) -> dict[str, list[sqlite3.Row]]:
    return {name: [r for r in rows if test(r)] for name, (_, test) in QUERIES.items()}


# --- Datasette, in process -----------------------------------------------------------------

@pytest.fixture(scope="module")
def client(generated_archive):
    """``get(path, **params)`` -> httpx response, through the app ``pressarchive serve`` runs."""
    ds = make_datasette(generated_archive.path)
    loop = asyncio.new_event_loop()

    def get(path, **params):
        response = loop.run_until_complete(ds.client.get(path, params=params or None))
        assert response.status_code == 200, (path, params, response.status_code, response.text[:2000])
        return response

    yield get
    loop.close()


def all_pages(client, path: str, max_pages: int, **params) -> tuple[list[int], int]:
    """Follow ``next_url`` from the first page to the last; (ids in order listed, pages read)."""
    data = client(path, _shape="objects", **params).json()
    ids, pages = [row["id"] for row in data["rows"]], 1
    while data.get("next_url"):
        assert pages < max_pages, f"still a next link after {pages} pages ({len(ids)} rows)"
        parts = urlsplit(data["next_url"])
        data = client(parts.path + "?" + parts.query).json()
        ids += [row["id"] for row in data["rows"]]
        pages += 1
    return ids, pages


def assert_same_listing(listed: list[int], expected: list[int]) -> None:
    duplicates = [i for i, n in Counter(listed).items() if n > 1]
    assert not duplicates, f"{len(duplicates)} releases listed twice, e.g. {duplicates[:5]}"
    missing = set(expected) - set(listed)
    extra = set(listed) - set(expected)
    assert not missing and not extra, (
        f"listed {len(listed)} of {len(expected)} matches: {len(missing)} missing (e.g. {sorted(missing)[:5]}), "
        f"{len(extra)} not matches (e.g. {sorted(extra)[:5]})"
    )
    assert listed == expected, "every match listed once, but not in the expected order"


# --- the generated archive is what the sites published ----------------------------------------

def test_generated_archive_holds_every_release_as_published(generated_archive, rows):
    """The crawl stored each generated release once, with its title, date, language and
    article text, and no page chrome: so the truth below is about the articles."""
    want = generated_archive.site.by_url(generated_archive.bases)
    stored = {row["url"]: row for row in rows}
    assert len(rows) == len(stored)
    assert set(stored) == set(want)
    squash = lambda t: " ".join(nfkc(t).split())
    for url, release in want.items():
        row = stored[url]
        assert (row["source_id"], row["title"], row["published"], row["language"]) == (
            release.source_id, release.title, release.published, release.language), url
        assert row["year"] == int(release.published[:4])
        text = squash(row["text"])
        for paragraph in release.paragraphs:
            assert squash(paragraph) in text, (url, paragraph)
        assert len(text) <= len(squash(" ".join(release.paragraphs))) + len(release.paragraphs), (url, row["text"])


def test_truth_is_what_was_planted_and_large(generated_archive, rows, truth):
    """The row-based truth finds exactly the releases the generator planted each query in,
    more than 500 each, spread over every year and (for English and the phrase) sources."""
    release_of = generated_archive.site.by_url(generated_archive.bases)
    planted = {"word": "sanctions", "chinese": "wangluo", "phrase": "phrase"}
    for name, flag in planted.items():
        found = {r["url"] for r in truth[name]}
        assert found == {url for url, rel in release_of.items() if rel.flags[flag]}, name
        assert len(found) > MIN_MATCHES, name
        assert {r["year"] for r in truth[name]} == set(range(2015, 2026)), name
    assert {r["source_id"] for r in truth["word"]} == {s for s, _, _ in gensite.SOURCES.values()}
    assert {r["language"] for r in truth["chinese"]} == {"zh"}
    # Near misses exist and are not matches: the truth is whole words / adjacent words.
    ids = {name: {r["id"] for r in found} for name, found in truth.items()}
    near = [r for r in rows if re.search(r"\bsanction(ed)?\b", r["text"]) and r["id"] not in ids["word"]]
    assert len(near) > 50
    apart = [r for r in rows if RANKED_TRUTH(r) and r["id"] not in ids["phrase"]]
    assert len(apart) > 100
    assert len([r for r in rows if "互联网" in r["text"] and r["id"] not in ids["chinese"]]) > 20
    ranked = [r for r in rows if RANKED_TRUTH(r)]
    assert len(ranked) > 1000 and len(ranked) == sum(1 for rel in release_of.values() if rel.flags["six"])


# --- the table view: count, facets, pages, CSV --------------------------------------------------

@pytest.fixture(autouse=True, params=["ids-in-sql", "page-cut-by-plugin"])
def page_form(request, monkeypatch):
    """Each test twice: as shipped (up to 2,000 matches go into the page's SQL as ids), and
    with that limit at 100, so these ~1,000-match searches take the paths a million-release
    archive takes (the page cut from the matches by the plugin, or the index query in the SQL;
    the ranked search in two halves)."""
    if request.param == "page-cut-by-plugin" and "client" in request.fixturenames:
        from datasette.plugins import pm

        plugin = next(p for p in pm.get_plugins() if getattr(p, "LITERAL_IDS_MAX", None) is not None)
        monkeypatch.setattr(plugin, "LITERAL_IDS_MAX", 100)
        # and the ranked search scores the two halves of the index at once, as on a large archive
        monkeypatch.setattr(plugin, "RANK_SPLIT_MIN", 1)
        monkeypatch.setattr(plugin, "RANK_SPLITS", {})
    return request.param


@pytest.mark.parametrize("name", QUERIES)
def test_count_is_exact(client, truth, name):
    q = QUERIES[name][0]
    expected = len(truth[name])
    data = client("/archive/releases.json", _search=q, _size="1").json()
    assert data["filtered_table_rows_count"] == expected > MIN_MATCHES


@pytest.mark.parametrize("name", QUERIES)
def test_every_facet_counts_every_match(client, truth, name):
    q = QUERIES[name][0]
    data = client("/archive/releases.json", _search=q, _facet_size="max", _size="1").json()
    assert not data.get("facets_timed_out")
    assert set(data["facet_results"]) == set(FACETS)
    for column in FACETS:
        facet = data["facet_results"][column]
        assert not facet["truncated"], column
        shown = {item["value"]: item["count"] for item in facet["results"]}
        expected = Counter(r[column] for r in truth[name] if r[column] is not None)
        assert shown == dict(expected), column
    # The year facet alone says the matches span 2015-2025, not only the newest years.
    years = {item["value"] for item in data["facet_results"]["year"]["results"]}
    assert years == set(range(2015, 2026))


@pytest.mark.parametrize("name", QUERIES)
def test_next_pages_reach_the_last_match_newest_first(client, truth, name):
    q = QUERIES[name][0]
    expected = newest_first(truth[name])
    listed, pages = all_pages(client, "/archive/releases.json", max_pages=len(expected) // 50 + 3, _search=q)
    assert_same_listing(listed, expected)


@pytest.mark.parametrize("name", QUERIES)
def test_max_size_pages_reach_the_last_match(client, truth, name):
    q = QUERIES[name][0]
    expected = newest_first(truth[name])
    listed, pages = all_pages(client, "/archive/releases.json", max_pages=10, _search=q, _size="max")
    assert_same_listing(listed, expected)


FILTERED = [
    ("word", "language", "en"),
    ("word", "source_id", "gen-mfa-cn"),
    ("word", "year", "2019"),
    ("chinese", "source_id", "gen-embassy-ca-zh"),
    ("chinese", "country", "CN"),
    ("phrase", "kind", "head_of_government"),
    ("phrase", "statement_type", "press_release"),
]


@pytest.mark.parametrize("name, column, value", FILTERED, ids=[f"{n}-{c}" for n, c, _ in FILTERED])
def test_next_pages_with_a_facet_filter(client, truth, name, column, value):
    q = QUERIES[name][0]
    matches = [r for r in truth[name] if str(r[column]) == value]
    expected = newest_first(matches)
    assert expected, "the filter must leave matches"
    data = client("/archive/releases.json", _search=q, _size="1", **{column: value}).json()
    assert data["filtered_table_rows_count"] == len(expected)
    listed, _ = all_pages(client, "/archive/releases.json", max_pages=len(expected) // 50 + 3,
                          _search=q, **{column: value})
    assert_same_listing(listed, expected)


def test_a_facet_filter_keeps_more_than_500_matches(truth):
    """At least one filtered listing above is larger than the old 500 limit."""
    assert len([r for r in truth["word"] if r["language"] == "en"]) > MIN_MATCHES


@pytest.mark.parametrize("name", QUERIES)
def test_next_pages_sorted_by_title(client, truth, name):
    q = QUERIES[name][0]
    expected = by_title(truth[name])
    listed, _ = all_pages(client, "/archive/releases.json", max_pages=len(expected) // 50 + 3,
                          _search=q, _sort="title")
    assert_same_listing(listed, expected)


@pytest.mark.parametrize("name", QUERIES)
def test_csv_stream_has_every_match(client, truth, name):
    q = QUERIES[name][0]
    response = client("/archive/releases.csv", _search=q, _stream="on", _size="max")
    csv.field_size_limit(10**8)
    table = list(csv.reader(io.StringIO(response.text, newline="")))
    header, body = table[0], table[1:]
    assert "id" in header and "text" in header, header
    assert all(len(line) == len(header) for line in body), "a broken CSV row (an error written into the stream?)"
    listed = [int(line[header.index("id")]) for line in body]
    expected = len(truth[name])
    assert len(body) == expected
    assert_same_listing(listed, newest_first(truth[name]))
    texts = {int(line[header.index("id")]): line[header.index("text")] for line in body}
    sample = truth[name][len(truth[name]) // 2]
    assert texts[sample["id"]] == sample["text"]  # whole texts, newlines and all


@pytest.mark.parametrize("name", QUERIES)
def test_json_stream_has_every_match(client, truth, name):
    """``.json?_stream=on``: every match as one JSON array (pages of 1,000 followed inside)."""
    import json

    q = QUERIES[name][0]
    response = client("/archive/releases.json", _search=q, _stream="on")
    assert response.status_code == 200
    rows = json.loads(response.text)
    listed = [row["id"] for row in rows]
    assert len(listed) == len(truth[name]) > MIN_MATCHES
    assert listed == newest_first(truth[name])
    assert all("error" not in row for row in rows)


def test_whole_words_only(client, rows):
    """'war' is a word: releases saying only "software", "warfare", "Warsaw" or "award" are not found."""
    is_war = one(english("war"))
    expected = newest_first([r for r in rows if is_war(r)])
    software_only = [r for r in rows if re.search(r"software", r["text"]) and not is_war(r)]
    lookalikes = [r for r in rows if re.search(r"warfare|Warsaw|award|warning", r["title"] + r["text"]) and not is_war(r)]
    assert len(software_only) > 100 and len(lookalikes) > 100
    data = client("/archive/releases.json", _search="war", _size="1").json()
    assert data["filtered_table_rows_count"] == len(expected)
    listed, _ = all_pages(client, "/archive/releases.json", max_pages=10, _search="war", _size="max")
    assert_same_listing(listed, expected)


# --- the ranked canned query -------------------------------------------------------------------

def test_ranked_search_finds_the_old_dense_statement_first(client, rows):
    """One 2017 statement is dense in the six words; ~1,000 newer releases say each once.
    BM25 over ALL matches puts the old statement first; the 50 best are listed."""
    dense = [r for r in rows if r["title"] == gensite.DENSE_TITLE]
    assert len(dense) == 1 and dense[0]["published"] == gensite.DENSE_DAY.isoformat()
    matches = [r for r in rows if RANKED_TRUTH(r)]
    newer = [r for r in matches if r["published"] > dense[0]["published"]]
    assert len(newer) == len(matches) - 1 > MIN_MATCHES  # the old code ranked only the newest 500
    data = client("/archive/search.json", q=RANKED_QUERY, _shape="objects").json()
    ids = [row["id"] for row in data["rows"]]
    assert ids and ids[0] == dense[0]["id"], f"first: {data['rows'][0]['title'] if ids else None!r}"
    assert len(ids) == min(50, len(matches))
    assert len(set(ids)) == len(ids)
    assert set(ids) <= {r["id"] for r in matches}


class _SearchTotal(HTMLParser):
    """Text of every element whose class list holds ``search-total``."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []
        self._depth = 0  # >0 while inside a search-total element

    def handle_starttag(self, tag, attrs):
        if self._depth:
            self._depth += 1
        elif "search-total" in (dict(attrs).get("class") or "").split():
            self.found.append("")
            self._depth = 1

    def handle_endtag(self, tag):
        if self._depth:
            self._depth -= 1

    def handle_data(self, data):
        if self._depth:
            self.found[-1] += data


def search_totals(html: str) -> list[str]:
    parser = _SearchTotal()
    parser.feed(html)
    return [" ".join(text.split()) for text in parser.found]


RANKED_TOTALS = {
    "six-words": (RANKED_QUERY, RANKED_TRUTH),
    **{name: QUERIES[name] for name in QUERIES},
}


@pytest.mark.parametrize("name", RANKED_TOTALS)
def test_ranked_search_page_shows_the_exact_total(client, rows, name):
    q, test = RANKED_TOTALS[name]
    total = sum(1 for r in rows if test(r))
    assert total > MIN_MATCHES
    html = client("/archive/search", q=q).text
    totals = search_totals(html)
    assert len(totals) == 1, f"expected one .search-total element, found {totals}"
    # The number as a whole, with thousands separators: "1,072", not "1072" or the "72" of "1,072".
    assert re.search(rf"(?<![\d,]){re.escape(f'{total:,}')}(?!,?\d)", totals[0]), (totals[0], total)


def test_the_six_word_total_needs_a_thousands_separator(rows):
    assert sum(1 for r in rows if RANKED_TRUTH(r)) >= 1000
