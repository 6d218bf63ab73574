"""Edit and removal history: versions with diffs, removal events, the recheck schedule.

The store pipeline (and ``pressarchive reextract``) call :func:`apply_release`
for every cleaned page and :func:`apply_check` for a conditional check that
answered "not modified" or "gone". Archived text is never deleted or
overwritten without a version: ``releases`` holds the latest text,
``release_versions`` every text the archive has held, with a unified diff.

A change counts only when the *comparable* form of title or text differs:
Unicode-normalised, typographic quotes and dashes folded, whitespace
collapsed. Re-wrapped lines, a changed nbsp or curly quotes are noise, not
edits (the NewsDiffs "boring change" idea).
"""

from __future__ import annotations

import difflib
import hashlib
import unicodedata
from datetime import datetime, timedelta

from archive.clock import iso, parse_iso
from archive.urls import scheme_twin

# Hours after first_seen at which a release is fetched again; after the last
# step it is rechecked every RECHECK_OLD_DAYS days.
RECHECK_HOURS = (1, 6, 24, 72, 168, 720)
RECHECK_OLD_DAYS = 180

_FOLD = str.maketrans({"‘": "'", "’": "'", "‚": "'", "“": '"', "”": '"', "„": '"',
                       "–": "-", "—": "-", "‐": "-", "\u00a0": " ", "\u200b": ""})


def comparable(title: str | None, text: str | None) -> str:
    joined = f"{title or ''}\n{text or ''}"
    joined = unicodedata.normalize("NFKC", joined).translate(_FOLD)
    return "\n".join(" ".join(line.split()) for line in joined.splitlines() if line.strip())


def comparable_hash(title, text) -> str:
    return hashlib.sha256(comparable(title, text).encode("utf-8")).hexdigest()


def unified_diff(old_title, old_text, new_title, new_text, old_version: int, new_version: int) -> str:
    before = [f"# {old_title or ''}", *(old_text or "").splitlines()]
    after = [f"# {new_title or ''}", *(new_text or "").splitlines()]
    return "\n".join(
        difflib.unified_diff(before, after, f"version {old_version}", f"version {new_version}", lineterm="")
    )


def next_check(first_seen: str, now: datetime, schedule=RECHECK_HOURS, old_days=RECHECK_OLD_DAYS) -> str:
    """The next step of the decaying schedule that lies in the future of ``now``."""
    start = parse_iso(first_seen)
    for hours in schedule:
        due = start + timedelta(hours=hours)
        if due > now:
            return iso(due)
    return iso(now + timedelta(days=old_days))


def _event(db, release_id, event, at, http_status=None, detail=None):
    db.execute(
        "insert into removals (release_id, event, at, http_status, detail) values (?, ?, ?, ?, ?)",
        [release_id, event, at, http_status, detail],
    )


VERSION_INSERT = """insert into release_versions (release_id, version, fetched_at, title, published, text,
    content_hash, diff, change, extractor, warc_file, warc_offset, warc_length)
    values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""


def _version_row(release_id, version, values, at, diff, change) -> list:
    return [release_id, version, at, values.get("title"), values.get("published"), values.get("text"),
            values.get("content_hash"), diff, change, values.get("extractor"), values.get("warc_file"),
            values.get("warc_offset"), values.get("warc_length")]


def _add_version(db, release_id, version, values, at, diff, change):
    db.execute(VERSION_INSERT, _version_row(release_id, version, values, at, diff, change))


def first_version_row(values: dict) -> tuple:
    """Version 1 of a new release (``values``: its whole row), without the release id that
    comes first in :data:`VERSION_INSERT`'s parameters."""
    return tuple(_version_row(None, 1, values, values["last_changed"], None, "first")[1:])


def new_release_row(values: dict, at: str, now: datetime, schedule=RECHECK_HOURS) -> dict:
    """The row a release the archive has never seen starts with: ``values`` first, then the
    columns only a new release sets (live, version 1, first seen ``at`` unless ``values`` says
    when, its first recheck due)."""
    first_seen = values.get("first_seen") or at
    return dict(values, status="live", version_count=1, last_changed=at, last_checked=at, first_seen=first_seen,
                next_check=next_check(first_seen, now, schedule))


def apply_release(db, values: dict, *, now: datetime, change: str = "edit",
                  schedule=RECHECK_HOURS, at: str | None = None) -> tuple[str, int]:
    """Insert or update one release; return (outcome, release id).

    ``values`` holds ``releases`` columns (``url`` and ``last_seen`` at least).
    Outcomes: ``new``, ``changed``, ``unchanged``; plus ``restored`` events are
    written when a removed release answers again. ``change`` labels a new
    version: ``edit`` for the publisher's edits, ``extraction`` when our
    extractor's output changed on the same bytes. ``at`` is when the bytes were
    fetched; by default ``values["last_seen"]``. Without ``last_seen`` in
    ``values`` (re-extraction from the raw capture) the fetch bookkeeping
    (``last_checked``, ``next_check``) is left alone.
    """
    refetched = "last_seen" in values
    # One release linked as http and as https is one row, under the URL first seen.
    row = db.execute(
        "select id, title, text, version_count, status, first_seen from releases where url in (?, ?) "
        "order by id limit 1", [values["url"], scheme_twin(values["url"])],
    ).fetchone()
    at = at or values["last_seen"]
    if row is None:
        values = new_release_row(values, at, now, schedule)
        columns = ", ".join(f"[{k}]" for k in values)
        cursor = db.execute(
            f"insert into releases ({columns}) values ({', '.join('?' for _ in values)})", list(values.values())
        )
        _add_version(db, cursor.lastrowid, 1, values, at, None, "first")
        return "new", cursor.lastrowid

    release_id, old_title, old_text, version_count, status, first_seen = row
    update = {k: v for k, v in values.items() if k not in ("url", "source_id", "first_seen", "summary",
                                                           "country", "kind")}
    if refetched:
        update.update(last_checked=at, next_check=next_check(first_seen, now, schedule))
    if status == "removed" and refetched:
        _event(db, release_id, "restored", at, values.get("http_status"), "answers again")
        update.update(status="live", removed_at=None)
    if comparable_hash(old_title, old_text) == comparable_hash(values.get("title"), values.get("text")):
        # Same release: keep the archived wording, refresh what describes the fetch.
        # The raw capture of the archived wording stays the one the row points at.
        for key in ("title", "text", "content_hash", "word_count", "warc_file", "warc_offset", "warc_length"):
            update.pop(key, None)
        outcome = "unchanged"
    else:
        version = (version_count or 1) + 1
        diff = unified_diff(old_title, old_text, values.get("title"), values.get("text"), version - 1, version)
        _add_version(db, release_id, version, values, at, diff, change)
        update.update(version_count=version, last_changed=at)
        outcome = "changed"
    assignments = ", ".join(f"[{k}] = ?" for k in update)
    db.execute(f"update releases set {assignments} where id = ?", [*update.values(), release_id])
    return outcome, release_id


def apply_check(db, url: str, *, outcome: str, at: str, now: datetime, http_status: int | None = None,
                detail: str | None = None, schedule=RECHECK_HOURS) -> tuple[str, int | None]:
    """Record a recheck that did not produce a page: ``not_modified`` or ``removed``."""
    row = db.execute("select id, status, first_seen from releases where url in (?, ?) order by id limit 1",
                     [url, scheme_twin(url)]).fetchone()
    if row is None:
        return "unknown", None
    release_id, status, first_seen = row
    due = next_check(first_seen, now, schedule)
    if outcome == "not_modified":
        restored = status == "removed"
        if restored:
            _event(db, release_id, "restored", at, http_status, "answers again (not modified)")
        db.execute(
            "update releases set last_seen = ?, last_checked = ?, next_check = ?, status = 'live', "
            "removed_at = null where id = ?", [at, at, due, release_id],
        )
        return ("restored" if restored else "unchanged"), release_id
    if outcome == "removed":
        if status != "removed":
            _event(db, release_id, "removed", at, http_status, detail)
            db.execute(
                "update releases set status = 'removed', removed_at = ?, last_checked = ?, next_check = ? "
                "where id = ?", [at, at, due, release_id],
            )
            return "removed", release_id
        db.execute("update releases set last_checked = ?, next_check = ? where id = ?", [at, due, release_id])
        return "still_removed", release_id
    raise ValueError(f"unknown check outcome {outcome!r}")
