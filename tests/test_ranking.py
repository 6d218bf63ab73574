"""The ranked search from cached postings (``archive.ranking``) is exactly FTS5's bm25() order.

On the real archive of ``generated_archive`` (~2,400 releases crawled from the generated
sites on 127.0.0.1, tests/conftest.py), with the postings threshold lowered so that every
phrase gets postings: the scores recomputed from the postings are the same doubles as
``bm25(releases_fts, 10.0, 1.0, 0.0)`` for every match, and the best 50 (and the whole
order) are the ones ``order by bm25(...), rowid desc`` gives. Then on a copy that is
written while a ranker reads it: new, edited and deleted releases are followed.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3

import numpy as np
import pytest
import sqlite_utils

from archive import ranking
from archive.search_index import ID_BITS, index_releases, user_match
from archive.site.serve import make_datasette

BM25 = "bm25(releases_fts, 10.0, 1.0, 0.0)"
QUERIES = [
    "government", "the", "China", "cyber", "网络", "合作", "网络安全", "的", "外交部", '"intellectual property"',
    "China Canada cyber theft intellectual property", "the government", "网络 安全",
]


def fts_order(conn, match: str, top: int = 50) -> list[int]:
    return [r[0] for r in conn.execute(
        f"select rowid, {BM25} as s from releases_fts where releases_fts match ? "
        f"order by s, rowid desc limit ?", [match, top])]


def fts_scores(conn, match: str) -> dict[int, float]:
    return dict(conn.execute(f"select rowid, {BM25} from releases_fts where releases_fts match ?", [match]))


def read_only(path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.execute("pragma query_only = 1")
    return conn


@pytest.fixture
def archive(generated_archive, tmp_path):
    """A copy of the generated archive, to write to."""
    copy = tmp_path / "archive.db"
    source = sqlite3.connect(generated_archive.path)
    target = sqlite3.connect(copy)
    source.backup(target)
    source.close()
    target.execute("pragma journal_mode = wal")
    target.close()
    return copy


def test_postings_give_bm25s_own_scores_and_order(generated_archive):
    conn = read_only(generated_archive.path)
    ranker = ranking.Ranker(min_matches=1)
    for q in QUERIES:
        match = user_match(q)
        truth = fts_scores(conn, match)
        assert len(truth) > 20, q  # a real ranking, not a handful
        assert ranker.best(conn, match, 50) == fts_order(conn, match), q
        phrases = ranking.plain_phrases(match)
        assert phrases and all(ranker.builds[p] == 1 for p in phrases), q  # ranked from postings
        rowids, scores = ranking.scored([ranker.entries[p] for p in phrases], len(ranker.rowids),
                                        ranker.n_tokens)
        assert sorted(rowids.tolist()) == sorted(truth)
        expected = np.array([truth[r] for r in rowids.tolist()])
        assert np.abs(scores - expected).max() <= 1e-9 * np.abs(expected).max()
        assert np.array_equal(scores, expected), q  # the same doubles: ties fall the same way
        # the whole order, not only the best 50 (ties: the higher rowid, newer, first)
        assert ranker.best(conn, match, len(truth)) == fts_order(conn, match, len(truth)), q
    # the old, dense 2017 statement is first
    best = ranker.best(conn, user_match("China Canada cyber theft intellectual property"), 50)
    title = conn.execute("select title from releases where id = ?", [best[0] % ID_BITS]).fetchone()[0]
    assert "cyber-enabled theft" in title


def test_other_queries_are_left_to_fts5(generated_archive):
    conn = read_only(generated_archive.path)
    ranker = ranking.Ranker(min_matches=1)
    for q in ("china OR canada", "government -china", "gov*", "网络 OR 合作"):
        assert ranker.best(conn, user_match(q), 50) is None, q
    common = ranking.Ranker(min_matches=10**6)  # no phrase matches that many: FTS5 ranks
    assert common.best(conn, user_match("government"), 50) is None
    assert not common.entries and common.rowids is None


def test_memory_is_capped(generated_archive):
    conn = read_only(generated_archive.path)
    ranker = ranking.Ranker(min_matches=1, max_bytes=1)
    for q in ("government", "China", "government"):
        match = user_match(q)
        assert ranker.best(conn, match, 50) == fts_order(conn, match)
        assert list(ranker.entries) == ranking.plain_phrases(match)  # only the query's own
    assert ranker.builds['"government"'] == 2  # dropped, then built again


def _copy_release(db, release_id: int, new_id: int, **changes) -> None:
    row = next(db.query("select * from releases where id = ?", [release_id]))
    row.update(id=new_id, url=f"{row['url']}?copy={new_id}", **changes)
    db["releases"].insert(row)


def test_follows_an_archive_being_written(archive):
    reader = read_only(archive)
    ranker = ranking.Ranker(min_matches=1)
    word, pair = user_match("government"), user_match("the government")
    assert ranker.best(reader, word, 50) == fts_order(reader, word)
    before = ranker.best(reader, pair, 50)
    assert before == fts_order(reader, pair)
    assert ranker.builds["reset"] == 1

    db = sqlite_utils.Database(archive)
    new_id = db.execute("select max(id) + 1 from releases").fetchone()[0]
    edited = before[0] % ID_BITS  # the best match of "the government" loses the words
    with db.conn:
        _copy_release(db, edited, new_id, title="The government, the government",
                      text="The government and the government. " * 3, published="2001-02-03")
        db.execute("update releases set text = 'Nothing about it.', title = 'Other' where id = ?", [edited])
        index_releases(db, [new_id, edited])
    db.conn.commit()

    for match in (word, pair):
        got = ranker.best(reader, match, 50)
        assert got == fts_order(reader, match)
        assert got[0] % ID_BITS == new_id  # indexed after the ranker started: ranked, first
        assert edited not in {r % ID_BITS for r in got}  # re-indexed: its new score
    assert ranker.builds['"government"'] == 1 and ranker.builds["refresh"] == 1  # followed, not rebuilt
    assert ranker.builds["reset"] == 1

    # A release deleted (the log does not say): the row and token counts tell, the ranker starts again
    with db.conn:
        db.execute("delete from releases where id = ?", [new_id])
        index_releases(db, [new_id])
    db.conn.commit()
    got = ranker.best(reader, pair, 50)
    assert got == fts_order(reader, pair) and new_id not in {r % ID_BITS for r in got}
    assert ranker.builds["reset"] == 2


def test_the_ranked_search_page_uses_postings(generated_archive, monkeypatch):
    monkeypatch.setattr(ranking, "CACHE_MIN_MATCHES", 1)
    monkeypatch.setattr(ranking, "RANKERS", {})
    ds = make_datasette(generated_archive.path)
    conn = read_only(generated_archive.path)
    loop = asyncio.new_event_loop()
    try:
        for q in ("government", "网络", "China Canada cyber theft intellectual property"):
            for _ in range(2):  # built, then from the postings
                response = loop.run_until_complete(
                    ds.client.get("/archive/search.json", params={"q": q, "_shape": "objects"}))
                assert response.status_code == 200, response.text[:500]
                ids = [row["id"] for row in response.json()["rows"]]
                assert ids == [r % ID_BITS for r in fts_order(conn, user_match(q))]
            (ranker,) = ranking.RANKERS.values()
            assert all(ranker.builds[p] == 1 for p in ranking.plain_phrases(user_match(q)))
        # A visitor's own SQL calling pressarchive_best(): the postings built above, the same list
        response = loop.run_until_complete(ds.client.get(
            "/archive.json", params={"sql": "select pressarchive_best(:q) as best", "q": "government",
                                     "_shape": "array"}))
        assert response.status_code == 200, response.text[:500]
        assert json.loads(response.json()[0]["best"]) == fts_order(conn, user_match("government"))
        assert ranker.builds['"government"'] == 1
    finally:
        loop.close()
