"""Unit tests for archive.fetch_state: what a crawl reads back from the archive before it starts.

Every archive here is a real SQLite file in tmp_path, written by the real writer
(:class:`archive.writer.ArchiveWriter`, schema from :mod:`archive.schema`), as a
previous crawl leaves it; :func:`load_state` then reads it as the spider does.
"""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from archive.fetch_state import SourceState, load_state
from archive.items import EntryFetch, ReleaseCheck, ReleaseItem
from archive.writer import ArchiveWriter
from crawler.sources import Source

T0 = "2024-03-01T10:00:00Z"
SOURCES = {sid: Source(id=sid, name=sid.upper(), country="CA", kind="embassy", languages=["en"], article_pattern=".")
           for sid in ("ca", "cn")}
RUN_COUNTS = dict.fromkeys(("requests", "new", "changed", "unchanged", "removed", "empty", "errors"), 0)


def release(source_id: str, n: int, fetched_at: str = T0, *, etag: str | None = None,
            last_modified: str | None = None, text: str | None = None) -> ReleaseItem:
    url = f"https://{source_id}.example/news/{n}.html"
    text = text or f"Statement {n} of {source_id} on maritime cooperation between the two countries."
    return ReleaseItem(source_id=source_id, url=url, fetched_url=url, http_status=200, content_type="text/html",
                       http_charset="utf-8", fetched_at=fetched_at, title=f"Release {n}", text=text,
                       published="2024-02-01", date_source="meta", language="en", word_count=len(text.split()),
                       content_hash=hashlib.sha256(text.encode()).hexdigest(), extractor="test", text_status="text",
                       etag=etag, last_modified=last_modified)


@pytest.fixture
def archive(tmp_path):
    """A factory: write items (and finish runs) with the real writer, return the archive's path."""
    path = tmp_path / "archive.db"
    writers = []

    def write(*items, runs=(), keep_open=False):
        writer = ArchiveWriter(path, sources=SOURCES)
        writers.append(writer)
        if items:
            writer.write(list(items))
        for source_id, status, finished, fetches in runs:
            run_row = writer.start_runs("run", [SOURCES[source_id]], T0)[source_id]
            if finished:
                writer.finish_run(run_row, source_id, RUN_COUNTS, status, None, finished, fetches)
        if not keep_open:
            writer.close()
            writers.remove(writer)
        return path

    yield write
    for writer in writers:
        writer.close()


def test_no_archive_yet_gives_empty_states_and_creates_nothing(tmp_path):
    path = tmp_path / "missing.db"
    states = load_state(path, ["ca", "cn"], T0, 100)
    assert set(states) == {"ca", "cn"}
    assert all(state == SourceState() and not state.complete for state in states.values())
    assert not path.exists()


def test_known_releases_per_source_with_their_last_seen(archive):
    path = archive(release("ca", 1), release("ca", 2, "2024-03-02T08:00:00Z"), release("cn", 1))
    # Seen again later: last_seen moves.
    archive(release("ca", 1, "2024-03-05T09:00:00Z"))
    states = load_state(path, ["ca", "cn", "uk"], T0, 100)
    assert states["ca"].known == {"https://ca.example/news/1.html": "2024-03-05T09:00:00Z",
                                  "https://ca.example/news/2.html": "2024-03-02T08:00:00Z"}
    assert states["cn"].known == {"https://cn.example/news/1.html": T0}
    assert states["uk"] == SourceState()  # a source the archive has never seen


def test_only_the_requested_sources_are_loaded(archive):
    path = archive(release("ca", 1), release("cn", 1))
    assert set(load_state(path, ["cn"], T0, 100)) == {"cn"}


def test_due_rechecks_follow_the_schedule_with_their_validators(archive):
    path = archive(release("ca", 1, etag='"v1"', last_modified="Fri, 01 Mar 2024 09:00:00 GMT"),
                   release("ca", 2, "2024-03-01T10:30:00Z"))
    # The writer's schedule: first recheck 1 hour after first_seen.
    assert load_state(path, ["ca"], "2024-03-01T10:59:59Z", 100)["ca"].due == []
    due = load_state(path, ["ca"], "2024-03-01T11:00:00Z", 100)["ca"].due
    assert due == [("https://ca.example/news/1.html", '"v1"', "Fri, 01 Mar 2024 09:00:00 GMT")]
    due = load_state(path, ["ca"], "2024-03-01T12:00:00Z", 100)["ca"].due
    assert due == [("https://ca.example/news/1.html", '"v1"', "Fri, 01 Mar 2024 09:00:00 GMT"),
                   ("https://ca.example/news/2.html", None, None)]


def test_due_rechecks_most_overdue_first_and_at_most_max_rechecks(archive):
    items = [release("ca", n, f"2024-03-01T{10 + n:02d}:00:00Z") for n in range(5)]
    path = archive(*reversed(items))  # stored newest first: the order must come from next_check
    due = load_state(path, ["ca"], "2024-03-02T00:00:00Z", 3)["ca"].due
    assert [url for url, _, _ in due] == [f"https://ca.example/news/{n}.html" for n in range(3)]
    assert load_state(path, ["ca"], "2024-03-02T00:00:00Z", 0)["ca"].due == []


def test_a_recheck_moves_the_release_to_its_next_step(archive):
    path = archive(release("ca", 1))
    assert len(load_state(path, ["ca"], "2024-03-01T11:00:00Z", 100)["ca"].due) == 1
    # Rechecked (304) at 11:00: next step is first_seen + 6 h.
    archive(ReleaseCheck("ca", "https://ca.example/news/1.html", "not_modified", "2024-03-01T11:00:00Z", 304))
    assert load_state(path, ["ca"], "2024-03-01T15:59:59Z", 100)["ca"].due == []
    assert len(load_state(path, ["ca"], "2024-03-01T16:00:00Z", 100)["ca"].due) == 1


def test_a_removed_release_stays_known_and_is_still_rechecked(archive):
    path = archive(release("ca", 1))
    archive(ReleaseCheck("ca", "https://ca.example/news/1.html", "removed", "2024-03-01T11:00:00Z", 404, "HTTP 404"))
    state = load_state(path, ["ca"], "2024-03-01T16:00:00Z", 100)["ca"]
    assert "https://ca.example/news/1.html" in state.known
    assert [url for url, _, _ in state.due] == ["https://ca.example/news/1.html"]  # so a return is noticed


def test_entry_validators_of_a_clean_run(archive):
    feed, listing = "https://ca.example/feed.xml", "https://ca.example/news/"
    fetches = [EntryFetch("ca", feed, "feed", T0, 200, etag='"f1"'),
               EntryFetch("ca", listing, "listing", T0, 200, last_modified="Fri, 01 Mar 2024 09:00:00 GMT")]
    path = archive(runs=[("ca", "ok", "2024-03-01T10:05:00Z", fetches)])
    state = load_state(path, ["ca", "cn"], T0, 100)
    assert state["ca"].validators == {feed: ('"f1"', None), listing: (None, "Fri, 01 Mar 2024 09:00:00 GMT")}
    assert state["cn"].validators == {}
    # A later 304 keeps the validators; a 200 with new ones replaces them.
    archive(runs=[("ca", "ok", "2024-03-02T10:05:00Z", [EntryFetch("ca", feed, "feed", T0, 304)])])
    assert load_state(path, ["ca"], T0, 100)["ca"].validators[feed] == ('"f1"', None)
    archive(runs=[("ca", "ok", "2024-03-03T10:05:00Z", [EntryFetch("ca", feed, "feed", T0, 200, etag='"f2"')])])
    assert load_state(path, ["ca"], T0, 100)["ca"].validators[feed] == ('"f2"', None)


def test_no_validators_saved_from_a_run_with_errors(archive):
    fetches = [EntryFetch("ca", "https://ca.example/feed.xml", "feed", T0, 200, etag='"f1"')]
    path = archive(runs=[("ca", "partial", "2024-03-01T10:05:00Z", fetches)])
    assert load_state(path, ["ca"], T0, 100)["ca"].validators == {}


@pytest.mark.parametrize(
    "runs, status, complete",
    [
        ([], None, False),
        ([("ok", True)], "ok", True),
        ([("partial", True)], "partial", True),
        ([("failed", True)], "failed", False),
        ([("interrupted", True)], "interrupted", False),
        ([("ok", True), ("interrupted", True)], "interrupted", False),  # the latest finished run counts
        ([("interrupted", True), ("ok", True)], "ok", True),
        ([("ok", True), ("running", False)], "ok", True),  # a run still going (or killed) is not finished
    ],
)
def test_last_finished_run_says_whether_the_source_is_complete(archive, runs, status, complete):
    path = archive(release("cn", 1), runs=[("cn", "ok", "2024-02-01T00:00:00Z", [])] + [
        ("ca", run_status, f"2024-03-0{n + 1}T10:05:00Z" if finished else None, [])
        for n, (run_status, finished) in enumerate(runs)])
    state = load_state(path, ["ca"], T0, 100)["ca"]
    assert (state.last_status, state.complete) == (status, complete)


def test_reads_without_writing(archive):
    path = archive(release("ca", 1), runs=[("ca", "ok", "2024-03-01T10:05:00Z", [])])
    before = path.read_bytes()
    states = load_state(path, ["ca"], "2024-03-02T00:00:00Z", 100)
    assert states["ca"].known and states["ca"].due and states["ca"].complete
    assert path.read_bytes() == before
    # SQLite may leave the WAL index files of a read-only reader behind, but nothing written to them.
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0


def test_reads_what_a_writer_still_open_has_committed(archive):
    path = archive(release("ca", 1), release("ca", 2), keep_open=True)
    assert set(load_state(path, ["ca"], T0, 100)["ca"].known) == {"https://ca.example/news/1.html",
                                                                  "https://ca.example/news/2.html"}


def test_an_archive_from_before_the_recheck_schedule(tmp_path):
    """No next_check column, no fetch_state or crawl_runs table: known releases only."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("create table releases (id integer primary key, source_id text, url text, last_seen text)")
    conn.execute("insert into releases (source_id, url, last_seen) values ('ca', 'https://ca.example/a', ?)", [T0])
    conn.commit()
    conn.close()
    state = load_state(path, ["ca"], "2030-01-01T00:00:00Z", 100)["ca"]
    assert state.known == {"https://ca.example/a": T0}
    assert (state.due, state.validators, state.last_status) == ([], {}, None)


def test_an_empty_sqlite_file_gives_empty_states(tmp_path):
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    assert load_state(path, ["ca"], T0, 100) == {"ca": SourceState()}
