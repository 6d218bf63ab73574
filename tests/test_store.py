"""The archive writer on real SQLite files: the bulk path for new releases and the one-by-one path.

``ArchiveWriter.write`` inserts a batch's new releases with a few
``executemany`` calls (insert trigger paused inside the transaction for bulk
loads, PAUSE_TRIGGER_ROWS) and sends everything else through
``history.apply_release``. Both must leave the same archive: rows, versions,
counts and a search index that finds exactly the current text.
"""

from __future__ import annotations

import pickle
import shutil
import sqlite3
import threading
import time

import pytest
import yaml

from archive import search_index
from archive.items import ReleaseItem
from archive.schema import PAGE_SIZE
from archive.site.serve import CONFIG_DIR
from archive.writer import PAUSE_TRIGGER_ROWS, ArchiveWriter, Preparer
from crawler.sources import Source

SOURCES = {"ca": Source(id="ca", name="Canada", country="CA", kind="foreign_ministry", languages=["en"],
                        article_pattern=".")}


def release(n: int, text: str | None = None, *, url: str | None = None, title: str | None = None,
            fetched_at: str = "2024-03-01T10:00:00Z", parent_url: str | None = None) -> ReleaseItem:
    url = url or f"https://www.example.gc.ca/news/{n}.html"
    text = text or f"Statement number {n} on maritime cooperation.\nSecond paragraph of release {n}."
    return ReleaseItem(
        source_id="ca", url=url, fetched_url=url, http_status=200, content_type="text/html",
        http_charset="utf-8", fetched_at=fetched_at, title=title or f"Release {n}", text=text,
        published=f"2024-02-{1 + n % 28:02d}", date_source="meta", language="en", word_count=len(text.split()),
        content_hash=f"{n:064x}", extractor="test", text_status="text", parent_url=parent_url,
    )


def matches(db, query: str) -> set[int]:
    expr = search_index.rewrite_query(query)
    return {row[0] % search_index.ID_BITS
            for row in db.execute(f"select rowid from {search_index.FTS_TABLE} where {search_index.FTS_TABLE} "
                                  "match ?", [expr])}


def integrity(db):
    assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
    db.execute(f"insert into {search_index.FTS_TABLE} ({search_index.FTS_TABLE}) values ('integrity-check')")
    indexed = db.execute(f"select count(*) from {search_index.ROWS_TABLE}").fetchone()[0]
    assert indexed == db.execute("select count(*) from releases").fetchone()[0]
    trigger = db.execute("select 1 from sqlite_master where type = 'trigger' and name = 'releases_fts_on_insert'")
    assert trigger.fetchone(), "the insert trigger is there after a bulk insert"


@pytest.fixture
def writer(tmp_path):
    w = ArchiveWriter(tmp_path / "archive.db", sources=SOURCES)
    yield w
    w.close()


def test_bulk_batch_of_new_releases(writer):
    items = [release(n) for n in range(PAUSE_TRIGGER_ROWS)]  # a bulk load: the insert trigger paused
    writer.write(items)
    db = writer.db
    assert db.execute("select count(*) from releases").fetchone()[0] == PAUSE_TRIGGER_ROWS
    assert db.execute("select count(*) from release_versions where version = 1 and change = 'first'").fetchone()[0] == PAUSE_TRIGGER_ROWS
    row = db.execute("select country, kind, status, version_count, first_seen, next_check, statement_type "
                     "from releases where url = ?", [items[7].url]).fetchone()
    assert row == ("CA", "foreign_ministry", "live", 1, "2024-03-01T10:00:00Z", "2024-03-01T11:00:00Z",
                   "other")
    assert writer.counts[("ca", "new")] == PAUSE_TRIGGER_ROWS
    ids = dict(db.execute("select url, id from releases").fetchall())
    assert matches(db, '"release 42"') == {ids[items[42].url]}
    assert len(matches(db, "maritime")) == PAUSE_TRIGGER_ROWS
    integrity(db)


def test_writing_never_changes_the_schema_readers_parse(tmp_path):
    """A reader (Datasette, sqlite3) parses the schema again after any schema change, and one that
    opens the search index meanwhile can fail ("vtable constructor failed"): once the archive
    exists, neither opening it again nor writing, bulk batches included, changes its schema."""
    path = tmp_path / "archive.db"
    first = ArchiveWriter(path, sources=SOURCES)
    first.write([release(0)])
    first.close()
    reader = sqlite3.connect(path)
    before = reader.execute("pragma schema_version").fetchone()[0]
    writer = ArchiveWriter(path, sources=SOURCES)
    writer.write([release(n) for n in range(1, 201)])  # the bulk path, a batch of `pressarchive ingest`
    writer.write([release(n, f"Edited statement {n} about fisheries.") for n in range(1, 5)])  # one by one
    assert reader.execute("pragma schema_version").fetchone()[0] == before
    assert reader.execute("select count(*) from releases").fetchone()[0] == 201
    assert len(matches(writer.db, "maritime")) == 197 and len(matches(writer.db, "fisheries")) == 4
    integrity(writer.db)
    writer.close()
    reader.close()


def test_searches_never_fail_while_writers_create_and_open_the_archive(tmp_path):
    """Readers searching in a loop from before the archive exists, while it is created and then
    opened by 50 writers in turn (each crawl opens it): not one search fails."""
    path = tmp_path / "archive.db"
    stop, errors, searches = threading.Event(), [], []

    def search():
        while not stop.wait(0.001):
            if not path.exists():
                continue
            try:
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
                conn.execute(f"select count(*) from {search_index.FTS_TABLE} where {search_index.FTS_TABLE} "
                             "match 'maritime'").fetchone()
                conn.close()
                searches.append(1)
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):  # (before the index exists)
                    errors.append(str(exc))

    readers = [threading.Thread(target=search) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        for n in range(50):
            writer = ArchiveWriter(path, sources=SOURCES)
            writer.write([release(n)])
            writer.close()
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert not errors, errors[:3]
    assert len(searches) > 100


def test_bulk_and_one_by_one_paths_in_one_batch(writer):
    first = [release(n) for n in range(120)]
    writer.write(first)
    url = first[3].url
    batch = [
        release(3, "Statement number 3 was corrected: naval cooperation.", fetched_at="2024-03-02T10:00:00Z"),
        release(4, fetched_at="2024-03-02T10:00:00Z"),  # same text: unchanged
        *[release(n) for n in range(200, 320)],  # new: bulk
        release(500, url="https://www.example.gc.ca/news/twin.html"),
        release(500, url="http://www.example.gc.ca/news/twin.html", text="The http twin says something else."),
        release(501, url="https://www.example.gc.ca/news/dup.html"),
        release(501, url="https://www.example.gc.ca/news/dup.html", text="Second copy in the same batch, edited."),
        release(600, url="https://www.example.gc.ca/docs/annex.pdf", parent_url="https://www.example.gc.ca/news/200.html"),
    ]
    writer.write(batch)
    db = writer.db
    count = db.execute("select count(*) from releases").fetchone()[0]
    assert count == 120 + 120 + 2  # the twin and the duplicate are one release each
    versions = db.execute("select version, change from release_versions v join releases r on r.id = v.release_id "
                          "where r.url = ? order by version", [url]).fetchall()
    assert versions == [(1, "first"), (2, "edit")]
    twin = db.execute("select version_count, text from releases where url like '%twin.html'").fetchall()
    assert twin == [(2, "The http twin says something else.")]
    dup = db.execute("select version_count, text from releases where url like '%dup.html'").fetchone()
    assert dup == (2, "Second copy in the same batch, edited.")
    attached = db.execute("select r.url from release_files f join releases r on r.id = f.release_id").fetchall()
    assert attached == [("https://www.example.gc.ca/news/200.html",)]
    assert writer.counts[("ca", "changed")] == 3 and writer.counts[("ca", "unchanged")] == 1
    ids = dict(db.execute("select url, id from releases").fetchall())
    assert matches(db, "naval") == {ids[url]}
    assert ids[url] not in matches(db, "maritime")  # the old wording is gone from the index
    assert matches(db, "twin") == {ids["https://www.example.gc.ca/news/twin.html"]}
    integrity(db)


def test_prepared_in_another_process_gives_the_same_archive(tmp_path):
    items = [release(n) for n in range(130)] + [release(5, "Edited text of five.", fetched_at="2024-03-05T00:00:00Z")]
    for item in items:
        item.search_form = (search_index.search_form(item.title), search_index.search_form(item.text))
    shipped = pickle.loads(pickle.dumps(Preparer(SOURCES).prepare(items)))  # as from a worker process
    a = ArchiveWriter(tmp_path / "a.db", sources=SOURCES)
    a.write_prepared(shipped)  # the items themselves never reach the writer
    b = ArchiveWriter(tmp_path / "b.db", sources=SOURCES)
    for item in items:
        item.search_form = None
    b.write(items)
    columns = "id, url, title, text, published, version_count, country, kind, statement_type, next_check"
    dump = "select {} from releases order by url"
    assert a.db.execute(dump.format(columns)).fetchall() == b.db.execute(dump.format(columns)).fetchall()
    versions = "select release_id, version, title, text, change from release_versions order by 1, 2"
    assert a.db.execute(versions).fetchall() == b.db.execute(versions).fetchall()
    assert a.db.execute("select version_count from releases where url like '%/5.html'").fetchone() == (2,)
    assert a.counts == b.counts and a.counts[("ca", "new")] == 130 and a.counts[("ca", "changed")] == 1
    fts = f"select fts_rowid, fingerprint from {search_index.ROWS_TABLE} order by 1"
    assert a.db.execute(fts).fetchall() == b.db.execute(fts).fetchall()
    assert matches(a.db, "edited") == {a.db.execute("select id from releases where url like '%/5.html'").fetchone()[0]}
    integrity(a.db)
    integrity(b.db)
    with pytest.raises(ValueError, match="releases only"):  # an attachment has no prepared row
        a.write_prepared(Preparer(SOURCES).prepare([release(900, parent_url=items[0].url)]))
    a.close()
    b.close()


def test_bulk_transaction_commits_once_and_rolls_back_whole(tmp_path):
    writer = ArchiveWriter(tmp_path / "archive.db", sources=SOURCES)
    reader = sqlite3.connect(tmp_path / "archive.db")
    preparer = Preparer(SOURCES)
    segments = f"select count(*) from {search_index.FTS_TABLE}_data"
    before = writer.db.execute(segments).fetchone()[0]
    with writer.transaction():
        writer.write_prepared(preparer.prepare([release(n) for n in range(150)]))
        writer.write_prepared(preparer.prepare([release(n) for n in range(150, 300)]))
        assert reader.execute("select count(*) from releases").fetchone()[0] == 0  # not committed yet
        # Index entries wait for the end, to go in in one rowid order (and no savepoint per
        # write): FTS5 writes its pending tokens out as a segment at each of those.
        assert writer.db.execute(segments).fetchone()[0] == before
        # A known release changed in the same transaction: its entry is there to replace.
        writer.write([release(7, "Rewritten inside the bulk transaction: naval talks.")])
    assert writer.db.execute(segments).fetchone()[0] > before
    assert reader.execute("select count(*) from releases").fetchone()[0] == 300
    assert len(matches(writer.db, "maritime")) == 299
    seven = writer.db.execute("select id from releases where url like '%/7.html'").fetchone()[0]
    assert matches(writer.db, "naval") == {seven} and seven not in matches(writer.db, "maritime")
    integrity(writer.db)
    with pytest.raises(RuntimeError, match="boom"), writer.transaction():
        writer.write_prepared(preparer.prepare([release(n) for n in range(300, 400)]))
        raise RuntimeError("boom")
    assert reader.execute("select count(*) from releases").fetchone()[0] == 300  # all of it rolled back
    assert len(matches(writer.db, "maritime")) == 299
    with pytest.raises(RuntimeError, match="does not nest"), writer.transaction():
        with writer.transaction():
            pass
    writer.write([release(400)])  # plain writes still commit on their own
    assert reader.execute("select count(*) from releases").fetchone()[0] == 301
    integrity(writer.db)
    reader.close()
    writer.close()


def test_wal_is_copied_into_the_file_by_the_background_checkpointer(tmp_path):
    path = tmp_path / "archive.db"
    writer = ArchiveWriter(path, sources=SOURCES)
    assert writer.checkpointer.is_alive()
    writer.write([release(n, "Background checkpoint text. " * 40) for n in range(200)])
    deadline = time.monotonic() + 10
    while writer.checkpointer.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.checkpointer.checkpoints >= 1
    # The archive file alone (without its -wal) already holds the batch: the thread copied it.
    shutil.copyfile(path, tmp_path / "file-only.db")
    copy = sqlite3.connect(tmp_path / "file-only.db")
    assert copy.execute("select count(*) from releases").fetchone()[0] == 200
    assert copy.execute("pragma integrity_check").fetchone()[0] == "ok"
    copy.close()
    thread = writer.checkpointer
    writer.close()
    assert not thread.is_alive()
    quiet = ArchiveWriter(path, sources=SOURCES, background_checkpoints=False)
    assert quiet.checkpointer is None
    quiet.write([release(500)])
    quiet.close()
    assert sqlite3.connect(path).execute("select count(*) from releases").fetchone()[0] == 201


def test_same_text_index_new_archives_compact_old_ones_keep_theirs(tmp_path):
    new = ArchiveWriter(tmp_path / "new.db", sources=SOURCES)
    indexes = {index.name for index in new.db["releases"].indexes}
    assert "idx_releases_content_key" in indexes and "idx_releases_content_hash" not in indexes
    joint = [release(1, "Joint statement text."), release(2, "Joint statement text."), release(3)]
    joint[1].content_hash = joint[0].content_hash  # the same text on a second site
    new.write(joint)
    metadata = yaml.safe_load((CONFIG_DIR / "metadata.yaml").read_text())
    same_text = metadata["databases"]["archive"]["queries"]["same_text"]["sql"]
    assert [row[0] for row in new.db.execute(same_text, {"id": 2})] == [1, 2]
    assert [row[0] for row in new.db.execute(same_text, {"id": 3})] == [3]
    plan = " ".join(row[3] for row in new.db.execute("explain query plan " + same_text, {"id": 1}))
    assert "USING INDEX idx_releases_content_key" in plan, plan
    # Per-row token counts: the ranked search's bm25() needs each row's length.
    assert new.db[f"{search_index.FTS_TABLE}_docsize"].exists()
    new.close()
    conn = sqlite3.connect(tmp_path / "old.db")  # an archive made when the full hash was indexed
    conn.execute("create table releases (id integer primary key, url text, content_hash text)")
    conn.execute("create index idx_releases_content_hash on releases (content_hash)")
    conn.commit()
    conn.close()
    old = ArchiveWriter(tmp_path / "old.db", sources=SOURCES)
    indexes = {index.name for index in old.db["releases"].indexes}
    assert "idx_releases_content_hash" in indexes and "idx_releases_content_key" not in indexes
    old.close()


def test_fts_merge_settings_are_set_on_new_and_existing_archives(tmp_path):
    path = tmp_path / "archive.db"
    writer = ArchiveWriter(path, sources=SOURCES)
    config = f"select k, v from {search_index.FTS_TABLE}_config where k in ('automerge', 'hashsize')"
    assert dict(writer.db.execute(config).fetchall()) == {
        "automerge": search_index.AUTOMERGE, "hashsize": search_index.HASH_SIZE}
    assert search_index.AUTOMERGE != 4  # not FTS5's default
    # An archive made before (FTS5's defaults) gets them when it is next opened, keeping its rows.
    writer.db.execute(f"insert into {search_index.FTS_TABLE} ({search_index.FTS_TABLE}, rank) values ('automerge', 4)")
    writer.write([release(n) for n in range(120)])
    writer.close()
    writer = ArchiveWriter(path, sources=SOURCES)
    assert dict(writer.db.execute(config).fetchall())["automerge"] == search_index.AUTOMERGE
    assert len(matches(writer.db, "maritime")) == 120
    integrity(writer.db)
    writer.close()


def test_full_rebuild_indexes_every_release_once_a_chunk_at_a_time(writer, monkeypatch):
    monkeypatch.setattr(search_index, "REBUILD_CHUNK", 7)  # 40 releases: 6 chunks
    writer.write([release(n) for n in range(40)])
    ids = dict(writer.db.execute("select url, id from releases").fetchall())
    changed = ids["https://www.example.gc.ca/news/5.html"]
    with writer.db.atomic():  # a change behind the triggers' back: the index can only be rebuilt
        writer.db.execute("drop trigger releases_fts_on_update")
        writer.db.execute("update releases set text = 'Sudden wording about fisheries.' where id = ?", [changed])
    with writer.db.atomic():
        search_index.index_releases(writer.db, [changed])
    search_index.ensure_search(writer.db)  # puts the trigger back
    assert matches(writer.db, "fisheries") == {changed}
    assert len(matches(writer.db, "maritime")) == 39
    keys = writer.db.execute(f"select release_id, fts_rowid from {search_index.ROWS_TABLE}").fetchall()
    assert sorted(key % search_index.ID_BITS for _, key in keys) == sorted(ids.values())
    assert all(key == search_index.fts_rowid(i, writer.db["releases"].get(i)["published"]) for i, key in keys)
    integrity(writer.db)


def test_insert_or_replace_by_another_writer_is_still_reindexed(writer):
    writer.write([release(n) for n in range(110)])
    url = "https://www.example.gc.ca/news/9.html"
    writer.db.execute("insert or replace into releases (url, source_id, title, text, published) "
                      "values (?, 'ca', 'Replaced', 'Entirely replaced wording about fisheries.', '2024-02-10')", [url])
    search_index.ensure_search(writer.db)
    ids = dict(writer.db.execute("select url, id from releases").fetchall())
    assert matches(writer.db, "fisheries") == {ids[url]}
    assert len(matches(writer.db, "maritime")) == 109
    integrity(writer.db)


def test_new_archive_gets_large_pages_and_an_old_one_keeps_its_own(tmp_path):
    new = ArchiveWriter(tmp_path / "new.db", sources=SOURCES)
    new.write([release(1, "A long text. " * 400)])
    assert new.db.execute("pragma page_size").fetchone()[0] == PAGE_SIZE == 32768
    assert new.db.execute("pragma journal_mode").fetchone()[0] == "wal"
    new.close()
    # An archive made before (SQLite's default 4 KB pages) is opened as it is, never rewritten.
    conn = sqlite3.connect(tmp_path / "old.db")
    conn.execute("create table notes (x)")
    conn.commit()
    conn.close()
    old = ArchiveWriter(tmp_path / "old.db", sources=SOURCES)
    old.write([release(2)])
    assert old.db.execute("pragma page_size").fetchone()[0] == 4096
    assert old.db.execute("select count(*) from releases").fetchone()[0] == 1
    assert matches(old.db, "maritime") == {1}
    old.close()
