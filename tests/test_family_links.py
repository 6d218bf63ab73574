"""Statement families (issue 23): reposts found by MinHash, families, ``pressarchive link``.

Unit tests write releases through the archive's real writer (archive/writer.py) into real
SQLite files; the crawl test crawls fixture sites (tests/sites/family_*) served on 127.0.0.1
with the real CLI in a child process.
"""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import numpy as np
from conftest import SITES, write_sources
from datasketch import MinHash

from archive import families
from archive.items import ReleaseItem
from archive.schema import open_archive
from archive.writer import ArchiveWriter
from pipelines.extraction import content_hash

STATEMENT = [
    "Canada and China held their first High-Level National Security and Rule of Law Dialogue in Ottawa.",
    ("The two sides agreed that neither country would conduct or knowingly support cyber-enabled theft of "
    "intellectual property, including trade secrets or other confidential business information, with the "
    "intent of providing competitive advantages to companies or commercial sectors."),
    ("Both countries committed to work together to combat transnational crime, including the trafficking of "
    "synthetic drugs such as fentanyl and the laundering of the proceeds of crime across the Pacific."),
    ("The next round of the dialogue will be held in Beijing next year, at a date agreed through diplomatic "
    "channels, and officials will meet before then to review the progress of the working groups."),
    ("Counter-terrorism cooperation, consular matters and the return of fugitives were also discussed at "
    "length by the delegations, which were led by senior officials of both governments."),
]
OTHER_STATEMENT = [
    "The Foreign Minister welcomed the ceasefire announced yesterday and called on all parties to respect it.",
    ("Humanitarian access to the affected regions must be restored without delay so that food, water and "
    "medical supplies reach the civilians who have been cut off for weeks by the fighting."),
    ("Norway stands ready to support a political process led by the people of the region, together with the "
    "United Nations envoy and neighbouring states, and will host talks in Oslo if asked to."),
    ("An additional forty million kroner will be made available this year for emergency relief through the "
    "Red Cross movement and the World Food Programme."),
]
FOOTER = [
    ("The Embassy of Canada in the People's Republic of China provides consular services to Canadians in "
    "Beijing, Tianjin, Shandong, Shanxi, Hebei, Henan, Hubei, Hunan, Jiangxi, Inner Mongolia and Xinjiang."),
    ("For media inquiries please contact the Public Affairs Section of the Embassy by telephone during "
    "office hours, Monday to Friday, or by writing to the press office at the address given on this page."),
    ("Follow the Embassy on social media for the latest news, travel advice and information about visas, "
    "study permits, trade missions and cultural events taking place across the consular district."),
    ("Disclaimer: links to websites not under the control of the Government of Canada are provided solely "
    "for the convenience of users; the Government is not responsible for the accuracy of their content."),
]
UNRELATED = [
    ["The Ambassador visited a school in Tianjin and met students learning French and English."],
    ["The visa office will be closed on Monday for a public holiday and will reopen on Tuesday morning."],
    ["A trade mission of Canadian seafood exporters will tour three cities in the consular district."],
]


def item(url, text, source="gac", published="2017-06-22", title="Statement", language="en",
         fetched_at="2017-06-23T00:00:00Z"):
    return ReleaseItem(
        source_id=source, url=url, fetched_url=url, http_status=200, content_type="text/html",
        http_charset="utf-8", fetched_at=fetched_at, title=title, text=text, published=published,
        date_source="meta", language=language, word_count=len(text.split()), content_hash=content_hash(text),
        encoding="utf-8", extractor="test", text_status="text",
    )


def write(path, items, batch=1):
    writer = ArchiveWriter(path, background_checkpoints=False)
    try:
        for start in range(0, len(items), batch):
            writer.write(items[start : start + batch])
    finally:
        writer.close()


def rows(path, sql):
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def band_pairs(path):
    """The (band key, release) pairs of the archive's band index."""
    db = open_archive(path)
    try:
        return families.band_index(db).pairs()
    finally:
        db.close()


def family_rows(path):
    return {
        "families": rows(path, "select id, first_release_id, first_source_id, first_published, member_count, "
                               "languages, sources from families order by id"),
        "members": rows(path, "select release_id, family_id, relation from family_members order by release_id"),
        "releases": rows(path, "select id, family_id from releases order by id"),
    }


def repost(lines, header, footer, edit=None):
    """An embassy's copy: its own header and footer, the first line changed, maybe a sentence edited."""
    body = [f"{header} {lines[0]}", *lines[1:]]
    if edit:
        body = [line.replace(*edit) for line in body]
    return "\n".join([header, *body, *footer])


# --- Shingles and MinHash ----------------------------------------------------------------------

def test_word_shingles_ignore_case_punctuation_and_spacing():
    a = families.shingles(families.normal_lines("The two sides agreed, in Ottawa, to meet again."))
    b = families.shingles(families.normal_lines("the  two sides agreed in OTTAWA to meet again"))
    assert len(a) == 7  # 9 words, 3-word shingles
    assert np.array_equal(a, b)


def test_chinese_is_shingled_by_characters():
    [words] = families._line_tokens(families.normal_lines("中方愿同加方加强对话与合作"))
    assert words == list("中方愿同加方加强对话与合作")
    assert families.shingle_size(words) == families.CJK_SHINGLE
    one = families.shingles(["中方愿同加方加强对话与合作"])
    other = families.shingles(["中方愿同加方加强对话与交流"])
    assert len(one) == 13 - families.CJK_SHINGLE + 1
    assert 0.5 < families.jaccard(one, other) < 1.0  # two characters changed at the end


def test_signature_is_datasketch_minhash():
    hashes = families.shingles(families.normal_lines(" ".join(STATEMENT)))
    reference = MinHash(num_perm=families.NUM_PERM, seed=families.SEED, scheme="affine32", hashfunc=int)
    reference.update_batch([int(h) for h in hashes])
    assert np.array_equal(families.signature(hashes), reference.hashvalues)


def test_a_texts_minhash_is_the_minimum_of_its_lines():
    """What the cleaning workers sign line by line gives, for any choice of lines (the ones that
    are not boilerplate), exactly the shingles and MinHash values of those lines' text."""
    text = "\n".join(["Statement issued by the Embassy:", *STATEMENT, *FOOTER, "ENDS"])
    signed = families.sign(text)
    lines = families.normal_lines(text)
    assert len(signed.keys) == len(lines) == len(signed.values)
    for own in ([True] * len(lines), [n not in (0, 6, 7) for n in range(len(lines))], [n < 3 for n in range(len(lines))]):
        own = np.array(own)
        kept = [line for line, keep in zip(lines, own) if keep]
        exact = families.shingles(kept)
        assert np.array_equal(np.unique(signed.shingles[own[signed.line_of]]), exact)
        assert np.array_equal(signed.values[own].min(axis=0), families.signature(exact))
    # a line repeated elsewhere (boilerplate) has the same key in every process: not Python's hash()
    assert families.line_key("follow us") == families.line_key(families.normal_lines("Follow  US")[0])
    assert signed.keys[-1] == families.line_key("ends")


def test_texts_signed_by_the_workers_link_as_texts_signed_by_the_writer(tmp_path):
    texts = ["\n".join(STATEMENT), "\n".join(UNRELATED[0] + FOOTER), repost(STATEMENT, "Repost:", FOOTER),
             "\n".join(UNRELATED[1] + FOOTER), repost(STATEMENT, "Copy:", [], ("Ottawa", "Toronto")),
             "\n".join(UNRELATED[2] + FOOTER), "\n".join(OTHER_STATEMENT)]
    tables = {"release_links": "release_id, other_id, relation, score, evidence",  # (not when: linked_at)
              "families": "id, first_release_id, first_source_id, first_published, member_count, languages, sources",
              "family_members": "*", "minhash_releases": "*"}
    found = []
    for signed in (False, True):
        items = [item(f"https://s{n % 3}.example/{n}", text, source=f"s{n % 3}", published=f"2017-06-{10 + n}")
                 for n, text in enumerate(texts)]
        for one in items:
            one.minhash = families.sign(one.text) if signed else None  # as pipelines/cleaning.py does
        path = tmp_path / f"signed-{signed}.db"
        write(path, items, batch=3)
        found.append({t: rows(path, f"select {columns} from {t} order by 1, 2") for t, columns in tables.items()})
        found[-1]["bands"] = band_pairs(path)
    assert found[0]["release_links"] and found[0]["families"] and found[0]["bands"]
    assert found[0] == found[1]


# --- Reposts and families through the writer ---------------------------------------------------

def test_planted_reposts_linked_and_footer_pairs_not(tmp_path):
    path = tmp_path / "archive.db"
    ministry = "\n".join(STATEMENT)
    embassy = [
        # the embassy's earlier notices carry its footer: it is the embassy's boilerplate
        item("https://emb.example/n1", "\n".join(UNRELATED[0] + FOOTER), source="embassy", published="2017-06-01"),
        item("https://emb.example/s", repost(STATEMENT, "Statement issued by the Ministry of Foreign Affairs:", FOOTER,
                                              ("synthetic drugs", "illegal drugs")),
             source="embassy", published="2017-06-23"),
        item("https://emb.example/n2", "\n".join(UNRELATED[1] + FOOTER), source="embassy", published="2017-06-24"),
        item("https://emb.example/n3", "\n".join(UNRELATED[2] + FOOTER), source="embassy", published="2017-06-25"),
    ]
    write(path, [item("https://gac.example/s", ministry, published="2017-06-22"), *embassy])
    links = rows(path, "select release_id, other_id, relation, evidence from release_links")
    assert [(a, b, relation) for a, b, relation, _ in links] == [(1, 3, "repost")]
    assert links[0][3].startswith("minhash ")
    assert family_rows(path)["members"] == [(1, 1, "first"), (3, 1, "repost")]
    # the footer pairs really are alike when the footer is not recognised as boilerplate
    footer_pair = [families.shingles(families.normal_lines("\n".join(UNRELATED[n] + FOOTER))) for n in (1, 2)]
    assert families.jaccard(*footer_pair) > families.THRESHOLD


def test_family_id_is_smallest_member_first_copy_by_date_and_diff(tmp_path):
    path = tmp_path / "archive.db"
    write(path, [
        item("https://emb-a.example/s", repost(STATEMENT, "From the Ministry:", [], ("Beijing", "Ottawa")),
             source="emb-a", published="2017-06-23"),
        item("https://emb-b.example/s", repost(STATEMENT, "Statement by the spokesperson:", []),
             source="emb-b", published="2017-06-24"),
        item("https://gac.example/s", "\n".join(STATEMENT), published="2017-06-22"),
    ])
    got = family_rows(path)
    assert got["families"] == [(1, 3, "gac", "2017-06-22", 3, '["en"]', '["emb-a", "emb-b", "gac"]')]
    assert got["members"] == [(1, 1, "repost"), (2, 1, "repost"), (3, 1, "first")]
    assert got["releases"] == [(1, 1), (2, 1), (3, 1)]
    diff = rows(path, "select diff from family_members where release_id = 1")[0][0]
    assert diff.splitlines()[:2] == ["--- release 3 (gac, first copy)", "+++ release 1 (emb-a)"]
    assert "-The next round of the dialogue will be held in Beijing next year" in diff
    assert "+The next round of the dialogue will be held in Ottawa next year" in diff
    assert rows(path, "select diff from family_members where release_id = 3") == [(None,)]


def test_first_copy_ties_broken_by_first_seen_then_id(tmp_path):
    path = tmp_path / "archive.db"
    write(path, [
        item("https://b.example/s", repost(STATEMENT, "Repost:", []), source="b", published=None,
             fetched_at="2017-06-20T00:00:00Z"),
        item("https://c.example/s", "\n".join(STATEMENT), source="c", published="2017-06-22",
             fetched_at="2017-06-24T00:00:00Z"),
        item("https://d.example/s", repost(STATEMENT, "Copy:", []), source="d", published="2017-06-22",
             fetched_at="2017-06-23T00:00:00Z"),
    ])
    # same date: d was seen first; b has no date: last whatever its first_seen
    assert rows(path, "select first_release_id, first_source_id from families") == [(3, "d")]


def test_merging_families_keeps_the_smaller_id(tmp_path):
    path = tmp_path / "archive.db"
    other = OTHER_STATEMENT
    write(path, [
        item("https://gac.example/s", "\n".join(STATEMENT)),
        item("https://emb.example/s", repost(STATEMENT, "Repost:", []), source="emb"),
        item("https://nor.example/s", "\n".join(other), source="nor"),
        item("https://nor-emb.example/s", repost(other, "Copy:", []), source="nor-emb"),
    ])
    assert [r[:2] for r in family_rows(path)["families"]] == [(1, 1), (3, 3)]
    db = open_archive(path)
    with db.conn:
        families.add_link(db, 4, 2, "translation", 1.0, "hreflang", "2017-06-25T00:00:00Z")
        families.add_link(db, 2, 4, "translation", 1.0, "hreflang", "2017-06-25T00:00:00Z")  # idempotent
        families.refresh_families(db, [2, 4])
    db.close()
    got = family_rows(path)
    assert rows(path, "select release_id, other_id, relation from release_links where relation = 'translation'") \
        == [(2, 4, "translation")]
    assert [r[:5] for r in got["families"]] == [(1, 1, "gac", "2017-06-22", 4)]
    assert got["releases"] == [(1, 1), (2, 1), (3, 1), (4, 1)]
    assert got["members"] == [(1, 1, "first"), (2, 1, "repost"), (3, 1, "translation"), (4, 1, "translation")]


def test_an_edit_that_ends_the_likeness_splits_the_family(tmp_path):
    path = tmp_path / "archive.db"
    write(path, [item("https://gac.example/s", "\n".join(STATEMENT)),
                 item("https://emb.example/s", repost(STATEMENT, "Repost:", []), source="emb")])
    assert len(family_rows(path)["families"]) == 1
    write(path, [item("https://emb.example/s", "\n".join(l for u in UNRELATED for l in u) * 2, source="emb",
                      fetched_at="2017-06-30T00:00:00Z")])
    assert family_rows(path) == {"families": [], "members": [], "releases": [(1, None), (2, None)]}
    assert rows(path, "select count(*) from release_links") == [(0,)]
    assert rows(path, "select count(*) from release_versions where release_id = 2") == [(2,)]  # text kept


def test_rebuild_gives_identical_tables(tmp_path):
    path = tmp_path / "archive.db"
    items = [item(f"https://s{n % 3}.example/{n}", text, source=f"s{n % 3}", published=f"2017-06-{10 + n}")
             for n, text in enumerate([
                 "\n".join(STATEMENT), "\n".join(UNRELATED[0] + FOOTER), repost(STATEMENT, "Repost:", FOOTER),
                 "\n".join(UNRELATED[1] + FOOTER), repost(STATEMENT, "Copy:", [], ("Ottawa", "Toronto")),
                 "\n".join(UNRELATED[2] + FOOTER)])]
    write(path, items, batch=2)
    tables = ("release_links", "families", "family_members", "minhash_releases")
    before = {t: rows(path, f"select * from {t} order by 1, 2") for t in tables}
    bands = band_pairs(path)
    assert before["families"] and before["release_links"] and len(bands) == 6 * families.BANDS
    db = open_archive(path)
    with db.conn:
        families.rebuild(db)
    db.close()
    assert {t: rows(path, f"select * from {t} order by 1, 2") for t in tables} == before
    assert band_pairs(path) == bands


# --- A real crawl of fixture sites -------------------------------------------------------------

FAMILY_SITES = ("family_ministry", "family_embassy_a", "family_embassy_b")


def test_crawl_links_a_ministry_statement_and_its_two_reposts(tmp_path, site_server, cli):
    servers = {name: site_server(name) for name in FAMILY_SITES}
    sources = write_sources(SITES / "family_links.toml", servers, tmp_path / "sources.toml")
    db = tmp_path / "archive.db"
    first = cli(["crawl", "--sources", sources, "--db", db], tmp_path, when="2017-06-27T00:00:00Z")
    assert first.returncode == 0, first.stderr
    by_path = {Path(url).name: release_id for release_id, url in rows(db, "select id, url from releases")}
    assert len(by_path) == 6
    statement, repost_a, repost_b = (by_path[name] for name in (
        "statement-canada-china-dialogue.html", "t1.html", "news-2017-06-24.html"))
    family = min(statement, repost_a, repost_b)
    assert rows(db, "select id, first_release_id, first_source_id, first_published, member_count, languages, "
                    "sources from families") == [
        (family, statement, "fam-ministry", "2017-06-22", 3, '["en"]',
         '["fam-embassy-a", "fam-embassy-b", "fam-ministry"]')]
    assert set(rows(db, "select release_id, family_id, relation from family_members")) == {
        (statement, family, "first"), (repost_a, family, "repost"), (repost_b, family, "repost")}
    assert rows(db, "select count(*) from releases where family_id is null") == [(3,)]
    diff = rows(db, f"select diff from family_members where release_id = {repost_a}")[0][0]
    assert "+Both countries committed to strengthen cooperation against transnational crime, including the " \
           "trafficking of synthetic drugs, in particular fentanyl and its precursors, and the laundering of " \
           "the proceeds of crime." in diff.splitlines()
    # the two notices of embassy A share its long footer: alike as texts, not linked
    notices = [rows(db, f"select text from releases where id = {by_path[name]}")[0][0] for name in ("t2.html", "t3.html")]
    assert families.jaccard(*(families.shingles(families.normal_lines(text)) for text in notices)) > families.THRESHOLD
    assert sorted(rows(db, "select release_id, other_id, relation from release_links")) == sorted(
        (*sorted(pair), "repost") for pair in ((statement, repost_a), (statement, repost_b), (repost_a, repost_b)))

    tables = ("release_links", "families", "family_members", "minhash_releases")
    before = {t: rows(db, f"select * from {t} order by 1, 2") for t in tables}
    bands = band_pairs(db)
    assert {release for _, release in bands} == set(by_path.values())
    second = cli(["crawl", "--sources", sources, "--db", db], tmp_path, when="2017-06-28T00:00:00Z")
    assert second.returncode == 0, second.stderr
    assert {t: rows(db, f"select * from {t} order by 1, 2") for t in tables} == before
    assert band_pairs(db) == bands

    rebuilt = cli(["link", "--rebuild", "--db", db], tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.strip() == ("6 releases looked at (all, rebuilt); 3 of 6 releases in 1 families; "
                                      "3 links (3 reposts, 0 translations)")
    assert {t: rows(db, f"select * from {t} order by 1, 2") for t in tables} == before
    assert band_pairs(db) == bands
    again = cli(["link", "--db", db], tmp_path)
    assert again.stdout.strip() == ("0 releases looked at (not linked before); 3 of 6 releases in 1 families; "
                                    "3 links (3 reposts, 0 translations)")

    # An older extractor kept only a menu of repost B: it is out of the family. Re-extracting it from
    # its raw capture gives its text back, and the writer's linking puts it back in the family.
    with sqlite3.connect(db) as conn:
        conn.execute("update releases set text = 'Home\nNews\nContact us' where id = ?", [repost_b])
    assert cli(["link", "--rebuild", "--db", db], tmp_path).returncode == 0
    assert rows(db, "select member_count from families") == [(2,)]
    reextracted = cli(["reextract", "--db", db], tmp_path)
    assert reextracted.returncode == 0, reextracted.stderr
    assert rows(db, "select member_count from families") == [(3,)]
    assert sorted(rows(db, "select release_id, other_id, relation from release_links")) == sorted(
        (*sorted(pair), "repost") for pair in ((statement, repost_a), (statement, repost_b), (repost_a, repost_b)))


def test_link_refuses_a_file_that_is_not_an_archive(tmp_path, cli):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a database\n", encoding="utf-8")
    result = cli(["link", "--db", bad], tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "notes.txt" in result.stderr
    assert bad.read_text(encoding="utf-8") == "not a database\n"


def test_an_archive_signed_with_another_configuration_is_signed_again_by_link(tmp_path, cli):
    """Band rows of an older MinHash configuration would never meet the new ones: opening the
    archive drops them (links stay) and says so; ``pressarchive link`` signs every release again."""
    path = tmp_path / "archive.db"
    texts = ["\n".join(STATEMENT), repost(STATEMENT, "Repost:", FOOTER), "\n".join(OTHER_STATEMENT)]
    write(path, [item(f"https://s{n}.example/s", text, source=f"s{n}", published=f"2017-06-{10 + n}")
                 for n, text in enumerate(texts)])
    links = rows(path, "select release_id, other_id, relation from release_links")
    signed = rows(path, "select * from minhash_releases order by 1")
    assert links == [(1, 2, "repost")] and len(signed) == 3
    with sqlite3.connect(path) as conn:
        conn.execute("update _pressarchive set value = 'perm=60 bands=20x3' where key = 'minhash'")
        conn.execute("update minhash_releases set bands = zeroblob(160)")  # as an older version left them
    result = cli(["link", "--db", path], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "another MinHash configuration (perm=60 bands=20x3" in result.stderr and "3 releases" in result.stderr
    assert rows(path, "select * from minhash_releases order by 1") == signed  # signed again, as before
    assert rows(path, "select release_id, other_id, relation from release_links") == links
    assert rows(path, "select value from _pressarchive where key = 'minhash'") == [(families.MINHASH_CONFIG,)]
    again = cli(["link", "--db", path], tmp_path)
    assert again.returncode == 0 and "another MinHash configuration" not in again.stderr


# --- The band index: segments, merges, changed texts, old archives, rollbacks ------------------------

def stored_band_pairs(path):
    """What the index must hold: each release's current band hashes, as minhash_releases keeps them."""
    return {(band << families.BAND_SHIFT | int(value), release_id)
            for release_id, bands in rows(path, "select release_id, bands from minhash_releases where bands is not null")
            for band, value in enumerate(np.frombuffer(bands, dtype="<i8"))}


def many_texts(count):
    """Distinct statements of 3 lines (each written for its own source: nothing is boilerplate)."""
    words = ["ministry", "embassy", "statement", "dialogue", "security", "cooperation", "trade", "visa", "consular",
             "treaty", "summit", "minister", "delegation", "agreement", "partners", "climate", "energy", "health"]
    texts = []
    for n in range(count):
        lines = [" ".join(words[(n * 7 + k * 3 + j) % len(words)] + f"{n}x{k}x{j}" for j in range(14))
                 for k in range(3)]
        texts.append("\n".join(lines))
    return texts


def test_band_index_merges_segments_and_forgets_the_keys_of_changed_texts(tmp_path):
    path = tmp_path / "archive.db"
    texts = many_texts(40)
    items = [item(f"https://s{n}.example/r", text, source=f"s{n}", published="2017-06-20") for n, text in enumerate(texts)]
    items.append(item("https://copy.example/r", "Copy of the statement:\n" + texts[0], source="copy"))
    write(path, items, batch=1)
    segments = rows(path, "select entries from minhash_segments order by id")
    # 41 batches, one segment each, merged while the older is not more than twice the newer: a few left
    assert 2 <= len(segments) <= 6 and sum(n for (n,) in segments) == 41 * families.BANDS, segments
    assert all(older > 2 * newer for (older,), (newer,) in itertools.pairwise(segments)), segments
    assert band_pairs(path) == stored_band_pairs(path) and len(band_pairs(path)) == 41 * families.BANDS
    assert rows(path, "select release_id, other_id from release_links") == [(1, 41)]

    # Release 1's text changes: its old keys are dropped (listed until a merge removes them), its new ones found
    old = {pair for pair in band_pairs(path) if pair[1] == 1}
    write(path, [item("https://s0.example/r", texts[1].replace("x", "y"), source="s0", fetched_at="2017-06-24T00:00:00Z")])
    assert band_pairs(path) == stored_band_pairs(path) and not old & band_pairs(path)
    assert set(rows(path, "select key, release_id from minhash_dropped")) == old  # still in their segments
    assert rows(path, "select release_id, other_id from release_links") == []  # no longer a copy of 41
    more = [item(f"https://t{n}.example/r", text, source=f"t{n}") for n, text in enumerate(many_texts(120)[50:])]
    write(path, more, batch=10)
    assert band_pairs(path) == stored_band_pairs(path)
    held = {pair for (keys, ids) in rows(path, "select keys, ids from minhash_segments")
            for pair in zip(np.frombuffer(keys, "<u8").tolist(), np.frombuffer(ids, "<u4").tolist())}
    # merged away: no segment holds the old keys, and nothing is listed as dropped any more
    assert not old & held and rows(path, "select count(*) from minhash_dropped") == [(0,)]
    # the text changes back: its first keys count again
    write(path, [item("https://s0.example/r", texts[0], source="s0", fetched_at="2017-06-25T00:00:00Z")])
    assert band_pairs(path) == stored_band_pairs(path) and old <= band_pairs(path)
    assert rows(path, "select release_id, other_id from release_links") == [(1, 41)]


def test_an_archive_with_band_rows_gets_them_as_one_segment(tmp_path):
    """An older version kept a row per band (minhash_bands): opening the archive makes them one
    segment, and a repost written afterwards is found through it."""
    path = tmp_path / "archive.db"
    write(path, [item("https://s0.example/s", "\n".join(STATEMENT), source="s0"),
                 item("https://s1.example/o", "\n".join(OTHER_STATEMENT), source="s1")])
    pairs = band_pairs(path)
    with sqlite3.connect(path) as conn:
        conn.execute("create table minhash_bands (band INTEGER NOT NULL, hash INTEGER NOT NULL, "
                     "release_id INTEGER NOT NULL, PRIMARY KEY (band, hash, release_id)) without rowid")
        conn.executemany("insert into minhash_bands values (?, ?, ?)",
                         [(key >> families.BAND_SHIFT, key & ((1 << families.BAND_SHIFT) - 1), release)
                          for key, release in pairs])
        conn.execute("delete from minhash_segments")
    assert band_pairs(path) == pairs
    assert "minhash_bands" not in {name for (name,) in rows(path, "select name from sqlite_master")}
    assert rows(path, "select count(*) from minhash_segments") == [(1,)]
    write(path, [item("https://s2.example/r", repost(STATEMENT, "Repost:", FOOTER), source="s2")])
    assert rows(path, "select release_id, other_id, relation from release_links") == [(1, 3, "repost")]


def test_a_rolled_back_batch_leaves_nothing_in_the_index_a_writer_holds(tmp_path):
    path = tmp_path / "archive.db"
    write(path, [item("https://s0.example/s", "\n".join(STATEMENT), source="s0")])
    db = open_archive(path)
    try:
        index = families.band_index(db)
        before = index.pairs()
        db.conn.execute("begin")
        db.conn.execute("insert into releases (id, source_id, url, text) values (2, 's1', 'https://s1.example/r', ?)",
                        [repost(STATEMENT, "Repost:", FOOTER)])
        families.link_reposts(db, [2])
        assert families.band_index(db).pairs() > before and rows(path, "select count(*) from releases") == [(1,)]
        db.conn.execute("rollback")
        assert families.band_index(db) is index and index.pairs() == before  # read again: its stamp went back
    finally:
        db.close()
    write(path, [item("https://s1.example/r", repost(STATEMENT, "Repost:", FOOTER), source="s1")])
    assert rows(path, "select release_id, other_id, relation from release_links") == [(1, 2, "repost")]


def test_a_writer_sees_what_another_writer_stored_between_its_batches(tmp_path):
    """The writer keeps each source's newest ids between batches; releases another writer stored
    meanwhile are in the next contexts as they are in the archive: the same shingles and links as a
    rebuild."""
    path = tmp_path / "archive.db"
    footer = [line.replace("Embassy", "Consulate") for line in FOOTER]  # a new template from now on
    body = [text.split("\n") for text in many_texts(4)]
    first, other = ArchiveWriter(path, background_checkpoints=False), ArchiveWriter(path, background_checkpoints=False)
    try:
        first.write([item(f"https://s0.example/{n}", "\n".join([*body[n], *FOOTER]), source="s0") for n in range(2)])
        # another writer stores a release of s0 with the new footer, then a statement of s2
        other.write([item("https://s0.example/2", "\n".join([*body[2], *footer]), source="s0")])
        other.write([item("https://s2.example/s", "\n".join(STATEMENT), source="s2")])
        # the first writer's next releases: the new footer is boilerplate (release 3 is in the context), and
        # the copy of the other writer's statement is found
        first.write([item("https://s0.example/3", "\n".join([*body[3], *footer]), source="s0"),
                     item("https://s1.example/copy", repost(STATEMENT, "Repost:", FOOTER), source="s1")])
    finally:
        first.close()
        other.close()
    queries = ("select release_id, shingles, bands, signature from minhash_releases order by 1",
               "select release_id, other_id, relation, score from release_links order by 1, 2")
    tables = [rows(path, sql) for sql in queries]
    assert [link[:3] for link in tables[1]] == [(4, 6, "repost")]
    shingles = dict(rows(path, "select release_id, shingles from minhash_releases"))
    assert shingles[5] == shingles[2] == 3 * 12  # 3 lines of 14 words: the footers left out
    db = open_archive(path)
    with db.conn:
        families.rebuild(db)
    db.close()
    assert [rows(path, sql) for sql in queries] == tables


def test_lines_held_by_a_context_are_found_for_a_whole_batch_at_once():
    """families._held (a batch's own lines in one sorted lookup) says what a set of each release's
    context keys says, for batches larger than the release numbers packed above the keys, and for
    keys that differ only in their top or bottom bits."""
    rng = np.random.default_rng(7)
    top = 1 << families.KEY_BITS
    common = rng.integers(0, top, 40, dtype=np.uint64)  # footer lines shared by many releases
    near = np.array([0, 1, top - 1, top - 2, 1 << (families.KEY_BITS - 1)], dtype=np.uint64)
    for releases in (1, 3, 5000):
        own = [np.concatenate((rng.choice(common, 3), rng.choice(near, 2), rng.integers(0, top, 4, dtype=np.uint64)))
               for _ in range(releases)]
        contexts = [[np.concatenate((rng.choice(keys_of, 1), rng.choice(np.concatenate((common, near)), 5)))
                     for _ in range(int(rng.integers(0 if releases > 1 else 1, 4)))] for keys_of in own]
        expected = [key in {k for keys in held for k in keys.tolist()} for keys_of, held in zip(own, contexts)
                    for key in keys_of.tolist()]
        lines = np.array([len(keys) for keys in own])
        found = families._held(np.concatenate(own), lines, contexts)
        assert found.tolist() == expected and 0 < sum(expected) < len(expected)


def test_a_changed_text_loses_its_old_keys_in_a_writer_that_read_the_index_afresh(tmp_path):
    """A writer skips looking up old band rows for releases above every id the index holds (new
    ones); a writer that reads the index from the file (another process, a new run) must know
    that bound from the segments, or a changed text's old keys would stay findable."""
    path = tmp_path / "archive.db"
    texts = many_texts(3)
    write(path, [item(f"https://s{n}.example/r", text, source=f"s{n}") for n, text in enumerate(texts)], batch=3)
    old = {pair for pair in band_pairs(path) if pair[1] == 3}
    assert len(old) == families.BANDS
    families._INDEXES.clear()  # as in a new process: the index is read from the archive
    write(path, [item("https://s2.example/r", texts[0].replace("a", "o"), source="s2",
                      fetched_at="2017-06-24T00:00:00Z")])
    assert band_pairs(path) == stored_band_pairs(path) and not old & band_pairs(path)
    assert set(rows(path, "select key, release_id from minhash_dropped")) == old
