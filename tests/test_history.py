"""Unit tests for archive.history: versions, removals, reappearance and the recheck schedule.

Each test writes a real SQLite archive in tmp_path with the real schema
(:func:`archive.schema.open_archive`) through :func:`history.apply_release` and
:func:`history.apply_check`, as the writer does, or through the writer itself
(:class:`archive.writer.ArchiveWriter`) where its counts matter. The end-to-end
story (a site edited and pruned between crawls) is ``tests/test_incremental.py``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest

from archive import history
from archive.clock import parse_iso
from archive.items import ReleaseCheck, ReleaseItem
from archive.schema import open_archive
from archive.writer import ArchiveWriter
from crawler.sources import Source

URL = "https://www.example.gc.ca/en/news/2024/03/statement.html"
T0, T1, T2, T3 = "2024-03-01T10:00:00Z", "2024-03-01T11:00:00Z", "2024-03-01T16:00:00Z", "2024-03-02T10:00:00Z"
TITLE = "Statement on maritime cooperation"
TEXT = ("Ottawa, Ontario - The Minister issued the following statement today.\n"
        "Canada and its partners reaffirm their commitment to the freedom of navigation.\n"
        "We will continue to work with our partners on this matter.")


def values(at: str | None = T0, title: str = TITLE, text: str = TEXT, url: str = URL, **extra) -> dict:
    row = {"url": url, "source_id": "ca", "title": title, "text": text, "published": "2024-03-01", "language": "en",
           "content_hash": hashlib.sha256(text.encode()).hexdigest(), "word_count": len(text.split()),
           "extractor": "test/1", **extra}
    if at is not None:
        row["last_seen"] = at
    return row


def apply(db, at: str | None = T0, **kwargs):
    change = kwargs.pop("change", "edit")
    when = kwargs.pop("at_override", None)
    return history.apply_release(db, values(at, **kwargs), now=parse_iso(at or T3), change=change, at=when)


def check(db, outcome: str, at: str, url: str = URL, **kwargs):
    return history.apply_check(db, url, outcome=outcome, at=at, now=parse_iso(at), **kwargs)


def row(db, url: str = URL) -> dict:
    return next(db.query("select * from releases where url = ?", [url]))


def versions(db) -> list[dict]:
    return list(db.query("select * from release_versions order by release_id, version"))


def events(db) -> list[tuple]:
    return [(r["event"], r["at"], r["http_status"], r["detail"])
            for r in db.query("select * from removals order by id")]


@pytest.fixture
def db(tmp_path):
    archive = open_archive(tmp_path / "archive.db")
    yield archive
    archive.close()


# --- new releases and unchanged re-fetches ----------------------------------------------------------


def test_a_new_release_gets_version_1_and_its_schedule(db):
    assert apply(db) == ("new", 1)
    stored = row(db)
    assert (stored["status"], stored["version_count"], stored["first_seen"], stored["last_seen"],
            stored["last_changed"], stored["last_checked"], stored["next_check"], stored["removed_at"]) == (
        "live", 1, T0, T0, T0, T0, "2024-03-01T11:00:00Z", None)
    (first,) = versions(db)
    assert (first["release_id"], first["version"], first["fetched_at"], first["title"], first["text"],
            first["diff"], first["change"], first["extractor"]) == (1, 1, T0, TITLE, TEXT, None, "first", "test/1")


def test_first_version_row_matches_what_apply_release_writes(db):
    apply(db)
    new = dict(values(), status="live", version_count=1, last_changed=T0, last_checked=T0, first_seen=T0)
    stored = versions(db)[0]
    columns = ("version", "fetched_at", "title", "published", "text", "content_hash", "diff", "change",
               "extractor", "warc_file", "warc_offset", "warc_length")
    assert history.first_version_row(new) == tuple(stored[c] for c in columns)


def test_unchanged_refetch_adds_no_version_and_moves_the_fetch_bookkeeping(db):
    apply(db)
    assert apply(db, T1) == ("unchanged", 1)
    stored = row(db)
    assert (stored["version_count"], stored["last_changed"], stored["last_seen"], stored["last_checked"],
            stored["first_seen"], stored["next_check"]) == (1, T0, T1, T1, T0, "2024-03-01T16:00:00Z")
    assert len(versions(db)) == 1


@pytest.mark.parametrize(
    "noisy",
    [
        TEXT.replace("statement today.\n", "statement today.\n\n"),  # blank line
        TEXT.replace("Canada and its", "Canada  and\tits"),  # whitespace
        "  " + TEXT.replace("\n", "  \n") + "\n",  # trailing spaces, final newline
        TEXT.replace(" - ", " \u2014 "),  # a dash
        TEXT.replace("Canada and", "Canada\u00a0and"),  # nbsp
        TEXT.replace("freedom", "free\u200bdom"),  # zero-width space
        TEXT.replace("Ottawa", "\uff2f\uff54\uff54\uff41\uff57\uff41"),  # full-width letters (NFKC)
    ],
)
def test_boring_changes_are_not_edits_and_keep_the_archived_wording(db, noisy):
    apply(db)
    assert apply(db, T1, text=noisy) == ("unchanged", 1)
    assert (row(db)["text"], row(db)["version_count"], len(versions(db))) == (TEXT, 1, 1)


def test_curly_quotes_in_the_title_are_not_an_edit(db):
    apply(db, title="Minister's \"statement\"")
    assert apply(db, T1, title="Minister\u2019s \u201cstatement\u201d") == ("unchanged", 1)
    assert row(db)["title"] == "Minister's \"statement\""


def test_unchanged_refetch_refreshes_what_describes_the_fetch(db):
    apply(db, warc_file="a.warc.gz", warc_offset=0, warc_length=100, etag='"v1"')
    apply(db, T1, published="2024-02-29", warc_file="b.warc.gz", warc_offset=5, warc_length=99, etag='"v2"')
    stored = row(db)
    assert (stored["published"], stored["etag"]) == ("2024-02-29", '"v2"')
    # The raw capture stays the one holding the archived wording.
    assert (stored["warc_file"], stored["warc_offset"], stored["warc_length"]) == ("a.warc.gz", 0, 100)


# --- edits ------------------------------------------------------------------------------------------


def test_an_edit_becomes_version_2_with_a_diff_and_version_1_is_kept(db):
    apply(db)
    edited = TEXT.replace("We will continue", "We will keep working")
    assert apply(db, T1, text=edited) == ("changed", 1)
    stored = row(db)
    assert (stored["text"], stored["version_count"], stored["last_changed"], stored["first_seen"]) == (
        edited, 2, T1, T0)
    first, second = versions(db)
    assert (first["text"], first["change"]) == (TEXT, "first")
    assert (second["version"], second["text"], second["fetched_at"], second["change"]) == (2, edited, T1, "edit")
    assert second["diff"].splitlines()[:2] == ["--- version 1", "+++ version 2"]
    changed = [line for line in second["diff"].splitlines() if line[:1] in "+-" and line[:3] not in ("---", "+++")]
    assert changed == ["-We will continue to work with our partners on this matter.",
                       "+We will keep working to work with our partners on this matter."]


def test_a_title_change_alone_is_a_version(db):
    apply(db)
    assert apply(db, T1, title=TITLE + " (updated)") == ("changed", 1)
    diff = versions(db)[1]["diff"]
    assert f"-# {TITLE}" in diff.splitlines() and f"+# {TITLE} (updated)" in diff.splitlines()


def test_each_edit_numbers_on_and_an_edit_back_is_a_version_too(db):
    texts = [TEXT, TEXT + "\nAddendum.", TEXT + "\nAddendum, corrected.", TEXT]
    for n, (text, at) in enumerate(zip(texts, (T0, T1, T2, T3))):
        assert apply(db, at, text=text) == ("new" if n == 0 else "changed", 1)
    assert [(v["version"], v["text"], v["fetched_at"]) for v in versions(db)] == list(
        zip((1, 2, 3, 4), texts, (T0, T1, T2, T3)))
    assert [v["diff"].splitlines()[:2] for v in versions(db)[1:]] == [
        ["--- version 1", "+++ version 2"], ["--- version 2", "+++ version 3"], ["--- version 3", "+++ version 4"]]
    assert row(db)["version_count"] == 4


def test_reextraction_labels_the_version_and_leaves_the_fetch_bookkeeping(db):
    apply(db)
    better = TEXT + "\nThe caption the old extractor missed."
    # Re-extraction from the raw capture: no last_seen, ``at`` is when the bytes were fetched.
    assert apply(db, None, text=better, change="extraction", at_override=T0) == ("changed", 1)
    stored = row(db)
    assert (stored["text"], stored["last_seen"], stored["last_checked"], stored["next_check"]) == (
        better, T0, T0, "2024-03-01T11:00:00Z")
    assert (versions(db)[1]["change"], versions(db)[1]["fetched_at"]) == ("extraction", T0)


def test_a_refetch_never_changes_where_and_when_the_release_was_first_seen(db):
    apply(db, summary="Feed teaser", country="CA", kind="foreign_ministry")
    apply(db, T1, text=TEXT + "\nMore.", source_id="other", summary="Other teaser", country="XX", kind="embassy",
          first_seen=T3)
    stored = row(db)
    assert (stored["source_id"], stored["summary"], stored["country"], stored["kind"], stored["first_seen"]) == (
        "ca", "Feed teaser", "CA", "foreign_ministry", T0)


# --- removals and reappearance -------------------------------------------------------------------------


def test_removal_is_recorded_once_and_the_text_is_kept(db):
    apply(db)
    assert check(db, "removed", T1, http_status=404, detail="HTTP 404") == ("removed", 1)
    stored = row(db)
    assert (stored["status"], stored["removed_at"], stored["last_checked"], stored["last_seen"]) == (
        "removed", T1, T1, T0)
    assert (stored["title"], stored["text"], len(versions(db))) == (TITLE, TEXT, 1)
    assert events(db) == [("removed", T1, 404, "HTTP 404")]
    # Still gone at the next check: no second event, the first removal time stays.
    assert check(db, "removed", T2, http_status=410, detail="HTTP 410") == ("still_removed", 1)
    stored = row(db)
    assert (stored["status"], stored["removed_at"], stored["last_checked"]) == ("removed", T1, T2)
    assert stored["next_check"] > T2
    assert len(events(db)) == 1
    assert list(db.query("select url, detail from removed_releases")) == [{"url": URL, "detail": "HTTP 404"}]


def test_reappearance_with_the_same_text(db):
    apply(db)
    check(db, "removed", T1, http_status=404, detail="HTTP 404")
    assert apply(db, T2) == ("unchanged", 1)
    stored = row(db)
    assert (stored["status"], stored["removed_at"], stored["last_seen"], stored["version_count"]) == (
        "live", None, T2, 1)
    assert events(db) == [("removed", T1, 404, "HTTP 404"), ("restored", T2, None, "answers again")]


def test_reappearance_with_new_text_is_restored_and_changed(db):
    apply(db)
    check(db, "removed", T1, http_status=404, detail="HTTP 404")
    assert apply(db, T2, text=TEXT + "\nCorrected.", http_status=200) == ("changed", 1)
    assert (row(db)["status"], row(db)["version_count"]) == ("live", 2)
    assert events(db)[-1] == ("restored", T2, 200, "answers again")


def test_not_modified_moves_last_seen_and_restores_a_removed_release(db):
    apply(db)
    assert check(db, "not_modified", T1, http_status=304) == ("unchanged", 1)
    assert (row(db)["last_seen"], row(db)["last_checked"], row(db)["next_check"]) == (T1, T1, "2024-03-01T16:00:00Z")
    check(db, "removed", T2, http_status=404, detail="HTTP 404")
    assert check(db, "not_modified", T3, http_status=304) == ("restored", 1)
    assert (row(db)["status"], row(db)["removed_at"], row(db)["last_seen"]) == ("live", None, T3)
    assert events(db)[-1] == ("restored", T3, 304, "answers again (not modified)")
    assert len(versions(db)) == 1


def test_reextraction_of_a_removed_release_does_not_restore_it(db):
    apply(db)
    check(db, "removed", T1, http_status=404, detail="HTTP 404")
    assert apply(db, None, text=TEXT + "\nFixed by the extractor.", change="extraction", at_override=T0) == (
        "changed", 1)
    assert (row(db)["status"], len(events(db))) == ("removed", 1)


def test_checks_of_unknown_urls_and_unknown_outcomes(db):
    assert check(db, "removed", T1) == ("unknown", None)
    assert check(db, "not_modified", T1) == ("unknown", None)
    assert events(db) == [] and db["releases"].count == 0
    apply(db)
    with pytest.raises(ValueError, match="unknown check outcome 'gone'"):
        check(db, "gone", T1)
    assert row(db)["status"] == "live"


def test_the_scheme_twin_is_the_same_release_through_edits_and_checks(db):
    apply(db, url=URL.replace("https://", "http://"))
    assert apply(db, T1, text=TEXT + "\nMore.") == ("changed", 1)
    assert check(db, "removed", T2, url=URL, http_status=404) == ("removed", 1)
    assert db["releases"].count == 1 and row(db, URL.replace("https://", "http://"))["status"] == "removed"


# --- the same through the writer -----------------------------------------------------------------------


SOURCES = {"ca": Source(id="ca", name="Canada", country="CA", kind="foreign_ministry", languages=["en"],
                        article_pattern=".")}


def item(url: str, at: str, text: str = TEXT) -> ReleaseItem:
    return ReleaseItem(source_id="ca", url=url, fetched_url=url, http_status=200, content_type="text/html",
                       http_charset="utf-8", fetched_at=at, title=TITLE, text=text, published="2024-03-01",
                       date_source="meta", language="en", word_count=len(text.split()),
                       content_hash=hashlib.sha256(text.encode()).hexdigest(), extractor="test/1",
                       text_status="text")


def test_writer_counts_edits_removals_and_returns(tmp_path):
    writer = ArchiveWriter(tmp_path / "archive.db", sources=SOURCES)
    try:
        writer.write([item(URL, T0)])
        writer.write([item(URL, T1)])
        writer.write([item(URL, T2, TEXT + "\nMore.")])
        writer.write([ReleaseCheck("ca", URL, "removed", T3, 404, "HTTP 404")])
        writer.write([ReleaseCheck("ca", URL, "removed", "2024-03-03T10:00:00Z", 404, "HTTP 404")])
        writer.write([item(URL, "2024-03-04T10:00:00Z", TEXT + "\nMore.")])
        counts = {key: n for (source, key), n in writer.counts.items() if source == "ca"}
        assert counts == {"new": 1, "unchanged": 2, "changed": 1, "removed": 1, "restored": 1}
        assert writer.db.execute("select text from releases").fetchone()[0] == TEXT + "\nMore."
    finally:
        writer.close()


def test_writer_counts_a_return_under_the_other_scheme(tmp_path):
    writer = ArchiveWriter(tmp_path / "archive.db", sources=SOURCES)
    try:
        http = URL.replace("https://", "http://")
        writer.write([item(http, T0)])
        writer.write([ReleaseCheck("ca", http, "removed", T1, 404, "HTTP 404")])
        writer.write([item(URL, T2)])
        assert [r[0] for r in writer.db.execute("select event from removals order by id")] == ["removed", "restored"]
        assert writer.counts[("ca", "restored")] == 1
    finally:
        writer.close()


# --- the recheck schedule and the comparable form ---------------------------------------------------------


@pytest.mark.parametrize(
    "hours_since_first_seen, due",
    [
        (0, "2024-03-01T11:00:00Z"),  # +1 h
        (0.99, "2024-03-01T11:00:00Z"),
        (1, "2024-03-01T16:00:00Z"),  # a step due exactly now is past: the next one
        (5, "2024-03-01T16:00:00Z"),  # +6 h
        (6, "2024-03-02T10:00:00Z"),  # +24 h
        (24, "2024-03-04T10:00:00Z"),  # +72 h
        (72, "2024-03-08T10:00:00Z"),  # +168 h
        (168, "2024-03-31T10:00:00Z"),  # +720 h
        (720, "2024-09-27T10:00:00Z"),  # then every 180 days from now
        (1000, "2024-10-09T02:00:00Z"),
    ],
)
def test_next_check_schedule(hours_since_first_seen, due):
    now = parse_iso(T0) + timedelta(hours=hours_since_first_seen)
    assert history.next_check(T0, now) == due
    assert parse_iso(due) > now


def test_next_check_with_a_custom_schedule():
    now = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
    assert history.next_check(T0, now, schedule=(1, 4)) == "2024-03-01T14:00:00Z"
    assert history.next_check(T0, now, schedule=(1,), old_days=2) == "2024-03-03T12:00:00Z"
    assert history.next_check(T0, now, schedule=()) == "2024-08-28T12:00:00Z"


def test_a_custom_schedule_reaches_the_archive(db):
    history.apply_release(db, values(), now=parse_iso(T0), schedule=(2, 48))
    assert row(db)["next_check"] == "2024-03-01T12:00:00Z"
    check(db, "not_modified", "2024-03-01T12:00:00Z", schedule=(2, 48))
    assert row(db)["next_check"] == "2024-03-03T10:00:00Z"


def test_comparable_form():
    assert history.comparable("  A  title ", "Line one\n\n  wrapped   text\u00a0here \n\u201cq\u201d \u2014 x") == (
        'A title\nLine one\nwrapped text here\n"q" - x')
    assert history.comparable(None, None) == ""
    # Line breaks inside a paragraph still count: two paragraphs are not one.
    assert history.comparable("T", "a b") != history.comparable("T", "a\nb")
    # Title and text are kept apart.
    assert history.comparable_hash("A", "B") != history.comparable_hash("A B", "")
    assert history.comparable_hash("T", "x  y") == history.comparable_hash("T", "x y")


def test_unified_diff_names_versions_and_marks_the_title():
    diff = history.unified_diff("T", "a\nb\nc", "T2", "a\nB\nc", 3, 4).splitlines()
    assert diff == ["--- version 3", "+++ version 4", "@@ -1,4 +1,4 @@", "-# T", "+# T2", " a", "-b", "+B", " c"]
    assert history.unified_diff("T", "same", "T", "same", 1, 2) == ""
